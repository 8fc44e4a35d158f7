"""``structlearn export RUN_DIR``: the discovered architecture as a versioned spec for NAS."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write the discovered architecture (conv/pool/dense stages) as a spec for NAS pipelines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("--format", default="json", help="exporter name (json; plugins add more, e.g. optuna_space)")
    p.add_argument("--out", help="output path (default: RUN_DIR/architecture.json or RUN_DIR/<format>.json)")


def run(args: argparse.Namespace) -> int:
    from structlearn.export import EXPORTERS
    from structlearn.export.from_run import spec_from_run
    from structlearn.io import atomic_torch_save

    write = EXPORTERS.create(args.format)  # unknown formats fail before any work
    run_dir = Path(args.run_dir)
    spec, kernels = spec_from_run(run_dir)
    out = Path(args.out) if args.out else run_dir / ("architecture.json" if args.format == "json" else f"{args.format}.json")
    write(spec, out)
    if kernels:
        atomic_torch_save(out.with_name(out.stem + "_kernels.pt"), {"kernels": kernels})
    for st in spec["stages"]:
        desc = {k: v for k, v in st.items() if k not in ("type", "evidence")}
        print(f"{st['type']:<10} {desc}  {st.get('evidence', {})}")
    print(f"wrote {out}", file=sys.stderr)
    return 0
