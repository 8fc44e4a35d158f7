"""``structlearn report RUN_DIR``: the structure a run discovered, as a table.

Prints ``structure.json`` (per layer: density, conv channels, kernel size, stride, pooling,
coverage, equivalence error, Gabor R^2, tile containment), recomputing it when it is missing,
when ``--recompute`` is given, or when ``--threshold`` differs from the one it was computed
with; and the density sweep's table and knee when ``sweep.json`` exists. ``structlearn
export`` reads the same file with the same options.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "print the structure a run discovered (structure.json; recomputed if missing) as a table; --html: report.html"


def add_readout_arguments(p: argparse.ArgumentParser) -> None:
    """The read-out options that ``report`` and ``export`` share."""
    p.add_argument("--threshold", type=float, metavar="NCC",
                   help="conv read-out: cosine a unit needs to join a channel, in (0, 1] (default 0.9)")
    p.add_argument("--recompute", action="store_true", help="recompute structure.json even if it exists")


def readout_options(args: argparse.Namespace) -> dict:
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold={args.threshold} out of range; allowed: (0, 1]")
    return {} if args.threshold is None else {"threshold": args.threshold}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `structlearn discover` (or, with --html, "
                                                       "a search folder)")
    add_readout_arguments(p)
    p.add_argument("--json", action="store_true", help="print structure.json itself instead of the table")
    p.add_argument("--html", action="store_true", help="also write RUN_DIR/report.html: one self-contained page")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"],
                   help="when the read-out is (re)computed, log it into the run's own W&B run, reopened by its id "
                        "(default: the run's wandb.mode if it has a W&B run, else disabled)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from structlearn.io import read_json
    from structlearn.prune.sweep import format_sweep_table
    from structlearn.runs import Run
    from structlearn.runs.html import write_report
    from structlearn.runs.readout import ensure_structure
    from structlearn.runs.wandb_run import log_artifacts, log_later, log_readout
    from structlearn.structure.readout import format_structure_table

    conv_kwargs = readout_options(args)
    if args.html and (Path(args.run_dir) / "search.yaml").is_file():
        print(f"wrote {write_report(args.run_dir)}")
        return 0
    run = Run(args.run_dir)
    with run.lock():  # it may (re)write structure.json
        before = run.structure()
        structure = ensure_structure(run, conv_kwargs, recompute=args.recompute)
        if args.html:
            print(f"wrote {write_report(run)}", file=sys.stderr)
        if args.recompute or before is None or before.get("conv_kwargs", {}) != conv_kwargs:  # computed now
            def log(wb) -> None:
                log_readout(wb, run, structure)
                log_artifacts(wb, run)

            line = log_later(run, "report", args.wandb, "the read-out", log)
            if line:
                print(line, file=sys.stderr)
    if args.json:
        print(json.dumps(structure, indent=2))
        return 0
    print(f"# {structure.get('run', run.name)}: {structure.get('kind')} input {structure.get('input_shape')}")
    print(format_structure_table(structure))
    if run.file("sweep.json").is_file():
        print()
        print(format_sweep_table(read_json(run.file("sweep.json"))))
    return 0
