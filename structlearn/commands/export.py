"""``structlearn export RUN_DIR``: the discovered architecture as a versioned spec for NAS.

The spec is built from the run's read-out (``structure.json``), with the same ``--threshold``
as ``structlearn report``: both commands read, and if needed write, one result."""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from structlearn.commands.report import add_readout_arguments, readout_options

HELP = "write the discovered architecture (conv/pool/dense stages) as a spec for NAS pipelines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("--format", default="json",
                   help="exporter name (json, onnx; the NAS plugin adds optuna, syne, ray, optuna_space)")
    p.add_argument("--out", help="output path (default: RUN_DIR/architecture.json or RUN_DIR/<format>.json)")
    add_readout_arguments(p)
    p.add_argument("--sharing", choices=["full", "strict"], default="full",
                   help="first layer as every unit on shared kernels (full coverage; default) or as the exact "
                        "cosine read-out's conv (strict)")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"],
                   help="log the exported files as an artifact of the run's own W&B run, reopened by its id "
                        "(default: the run's wandb.mode if it has a W&B run, else disabled)")


def run(args: argparse.Namespace) -> int:
    from structlearn.export import EXPORTERS
    from structlearn.io import atomic_torch_save
    from structlearn.loggers import artifact_name
    from structlearn.runs import Run
    from structlearn.runs.export import spec_from_run
    from structlearn.runs.readout import ensure_structure
    from structlearn.runs.wandb_run import log_later

    write = EXPORTERS.create(args.format)  # unknown formats fail before any work
    conv_kwargs = readout_options(args)
    run = Run(args.run_dir)
    with run.lock():  # the read-out may be (re)written
        if args.recompute:
            ensure_structure(run, conv_kwargs, recompute=True)
        spec, kernels = spec_from_run(run, conv_kwargs, args.sharing)
    default = {"json": "architecture.json", "onnx": "architecture.onnx"}.get(args.format, f"{args.format}.json")
    out = Path(args.out) if args.out else run.file(default)
    if "kernels" in inspect.signature(write).parameters:
        write(spec, out, kernels=kernels)  # type: ignore[call-arg]
    else:
        write(spec, out)
    if kernels:
        atomic_torch_save(out.with_name(out.stem + "_kernels.pt"), {"kernels": kernels})
    for st in spec["stages"]:
        desc = {k: v for k, v in st.items() if k not in ("type", "evidence")}
        print(f"{st['type']:<10} {desc}  {st.get('evidence', {})}")
    print(f"wrote {out}", file=sys.stderr)
    files = [out] + ([out.with_name(out.stem + "_kernels.pt")] if kernels else [])
    line = log_later(run, "export", args.wandb, "the export", lambda wb: wb.log_artifact(
        f"architecture-{artifact_name(run.name)}", "architecture", files, {"format": args.format}))
    if line:
        print(line, file=sys.stderr)
    return 0
