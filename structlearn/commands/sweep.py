"""``structlearn sweep RUN_DIR``: held-out error and locality of layer 0 against density, and the knee.

From the run's dense layer (``layer0_dense.pt``, written when the trainer first prunes):
``--mode oneshot`` prunes a fresh copy to each density, ``--mode imp`` walks the densities
iteratively; each point is fine-tuned ``--finetune-steps`` with the run's fine-tuning
hyperparameters. ``--mode trajectory`` tabulates the IMP trajectory the run itself recorded.
Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into the run folder.
"""
from __future__ import annotations

import argparse
import sys

HELP = "density sweep of a run's first layer: error and locality vs density, and the knee (sweep.json/.md/.png)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.prune.sweep import DEFAULT_DENSITIES

    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `structlearn discover`")
    p.add_argument("--mode", choices=["oneshot", "imp", "trajectory"], default="oneshot",
                   help="oneshot: prune copies of the dense layer; imp: prune iteratively; "
                        "trajectory: the run's own IMP rounds (default: oneshot)")
    p.add_argument("--densities", type=float, nargs="+", default=list(DEFAULT_DENSITIES), metavar="D",
                   help=f"densities in (0, 1] (default: {' '.join(map(str, DEFAULT_DENSITIES))})")
    p.add_argument("--finetune-steps", type=int, default=100, help="fine-tuning steps per density (default: 100)")
    p.add_argument("--scope", choices=["unit", "global"], help="pruning scope (default: the run's)")
    p.add_argument("--pruner", help="a registered pruner with a density (default: the run's, if it has one, else magnitude)")
    p.add_argument("--n-eval", type=int, default=512, help="held-out samples for the metrics (default: 512)")


def run(args: argparse.Namespace) -> int:
    from structlearn.commands import set_threads
    from structlearn.prune.sweep import format_sweep_table
    from structlearn.runs import Run
    from structlearn.runs.sweep import run_sweep

    if args.finetune_steps < 0:
        raise ValueError(f"--finetune-steps={args.finetune_steps} out of range; allowed: integers >= 0")
    if args.n_eval < 1:
        raise ValueError(f"--n-eval={args.n_eval} out of range; allowed: integers >= 1")

    def show(row):
        print(f"density {row['density']:.4g}: " + ", ".join(
            f"{k} {row[k]:.4g}" for k in ("recon_rel_error", "loss", "median_spread", "tile_purity_mean") if k in row),
            file=sys.stderr)

    run = Run(args.run_dir)
    set_threads(run.cfg.threads)
    with run.lock():
        out = run_sweep(run, densities=args.densities, mode=args.mode, scope=args.scope, pruner=args.pruner,
                        finetune_steps=args.finetune_steps, n_eval=args.n_eval, on_point=show)
    print(format_sweep_table(out))
    print(f"wrote {args.run_dir}/sweep.json, sweep.md, sweep.png", file=sys.stderr)
    return 0
