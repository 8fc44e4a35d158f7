"""``structlearn discover``: train dense layer(s), prune, and write the run folder."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "train a dense unsupervised layer (stack), prune it and read out its filters"
DEFAULT_CONFIG = "mosaic_sparse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.commands import add_config_arguments

    add_config_arguments(p, DEFAULT_CONFIG, "run config", "data.gaussian_clone=true")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run from its checkpoint")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"],
                   help="W&B mode (default: the config's wandb.mode, offline); identity: --set wandb.group=..., "
                        "wandb.job_type, wandb.tags=[a,b], wandb.entity, wandb.project")
    p.add_argument("--no-html", action="store_true", help="do not write report.html at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from structlearn.commands import deferred_signals, set_threads
    from structlearn.config import load_config
    from structlearn.configs import config_path
    from structlearn.runs.discover import start_discover
    from structlearn.structure.readout import format_structure_table
    from structlearn.train import Interrupted

    if args.resume and (args.config or args.overrides):
        raise ValueError("--resume takes the run's own config.yaml; do not pass a config or --set with it")
    cfg = None if args.resume else load_config(config_path(args.config or DEFAULT_CONFIG), args.overrides)
    with deferred_signals("training") as stop:
        job = start_discover(cfg, out=args.out, resume=args.resume, wandb=args.wandb, progress=not args.no_progress,
                             stop=stop)
        with job:
            run_dir, cfg = job.run.path, job.trainer.cfg
            set_threads(cfg.threads)
            job.open_wandb()  # a W&B failure is one line, before anything else is said; a sweep's overrides apply
            cfg = job.trainer.cfg
            print(f"run folder: {run_dir}", file=sys.stderr)
            try:
                summary = job.train()
            except KeyboardInterrupt as e:
                saved = "checkpoint saved at the step boundary" if isinstance(e, Interrupted) else \
                    "aborted; the last checkpoint is kept"
                print(f"interrupted ({saved}). Resume with: structlearn discover --resume {run_dir}", file=sys.stderr)
                return 130
            if stop.is_set():
                print(f"interrupted after training; the read-out is skipped: structlearn report {run_dir}",
                      file=sys.stderr)
                return 130
            structure = job.read_out(html=not args.no_html)
    show = {k: summary[k] for k in ("objective", "n_units", "input_shape", "density", "tile_purity_mean",
                                    "single_tile_fraction", "recon_rel_error", "code_kurtosis", "seconds") if k in summary}
    print(json.dumps(show, indent=2))
    print(f"wrote {run_dir}/summary.json", file=sys.stderr)
    print(format_structure_table(structure))  # read-out failures are recorded, not raised
    print(f"wrote {run_dir}/structure.json" + ("" if args.no_html else f" and {run_dir}/report.html"), file=sys.stderr)
    return 0
