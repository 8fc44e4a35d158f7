"""``structlearn report RUN_DIR``: the structure a run discovered, as a table.

Prints ``structure.json`` (per layer: density, conv channels, kernel size, stride, pooling,
coverage, equivalence error, Gabor R^2, tile containment), recomputing it when it is missing
or with ``--recompute``, and the density sweep's table and knee when ``sweep.json`` exists.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "print the structure a run discovered (structure.json; recomputed if missing) as a table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `structlearn discover`")
    p.add_argument("--recompute", action="store_true", help="recompute structure.json even if it exists")
    p.add_argument("--json", action="store_true", help="print structure.json itself instead of the table")
    p.add_argument("--threshold", type=float, metavar="NCC",
                   help="conv read-out: cosine a unit needs to join a channel, in (0, 1] (default 0.9); implies --recompute")


def run(args: argparse.Namespace) -> int:
    from structlearn.io import read_json
    from structlearn.structure.readout import STRUCTURE_VERSION, format_structure_table, run_structure

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} does not exist")
    path = run_dir / "structure.json"
    structure = None
    conv_kwargs = {} if args.threshold is None else {"threshold": args.threshold}
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold={args.threshold} out of range; allowed: (0, 1]")
    if path.is_file() and not args.recompute and not conv_kwargs:
        structure = read_json(path)
        if not isinstance(structure, dict) or structure.get("version") != STRUCTURE_VERSION:
            structure = None  # an older or foreign file: recompute
    if structure is None:
        structure = run_structure(run_dir, conv_kwargs=conv_kwargs)
    if args.json:
        print(json.dumps(structure, indent=2))
        return 0
    print(f"# {structure.get('run', run_dir.name)}: {structure.get('kind')} input {structure.get('input_shape')}")
    print(format_structure_table(structure))
    sweep = run_dir / "sweep.json"
    if sweep.is_file():
        from structlearn.prune.sweep import format_sweep_table

        print()
        print(format_sweep_table(read_json(sweep)))
    return 0
