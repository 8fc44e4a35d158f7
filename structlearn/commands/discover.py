"""``structlearn discover``: train dense layer(s), prune, and write the run folder."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import uuid
from pathlib import Path

HELP = "train a dense unsupervised layer (stack), prune it and read out its filters"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "mosaic_sparse.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (default: experiments/mosaic_sparse.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path, e.g. data.gaussian_clone=true (repeatable)")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run from its checkpoint")
    p.add_argument("--wandb", choices=["offline", "online", "disabled"], help="W&B mode (default: the config's, offline)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sigterm(signum, frame):  # turn SIGTERM into KeyboardInterrupt so a checkpoint is written
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from structlearn.config import load_config
    from structlearn.loggers import JsonlLogger, WandbLogger
    from structlearn.rundir import new_run_dir, read_run_config, write_config
    from structlearn.train import Trainer

    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume takes the run's own config.yaml; do not pass a config or --set with it")
        run_dir = Path(args.resume)
        cfg = read_run_config(run_dir)
    else:
        path = args.config
        if path is None:
            path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
        cfg = load_config(path, args.overrides)
    if args.wandb:
        from dataclasses import replace

        cfg = replace(cfg, wandb=args.wandb)
    trainer = Trainer(cfg, None, progress=not args.no_progress)
    trainer.prepare()  # bad data or hyperparameters fail here, before any file is written
    if not args.resume:
        run_dir = new_run_dir(args.out, cfg.name)
        write_config(run_dir, cfg)
    trainer.run_dir = run_dir
    loggers = [JsonlLogger(run_dir / "metrics.jsonl")]
    if cfg.wandb != "disabled":
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        from structlearn.config import to_dict

        loggers.append(WandbLogger(run_dir, cfg.wandb, cfg.wandb_project, run_dir.name, to_dict(cfg), run_id))
    print(f"run folder: {run_dir}", file=sys.stderr)
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        trainer.loggers = loggers
        summary = trainer.run()
    except KeyboardInterrupt:
        print(f"interrupted; checkpoint saved. Resume with: structlearn discover --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
        for lg in loggers:
            lg.finish()
    show = {k: summary[k] for k in ("objective", "n_units", "input_shape", "density", "tile_purity_mean",
                                    "single_tile_fraction", "recon_rel_error", "code_kurtosis", "seconds") if k in summary}
    print(json.dumps(show, indent=2))
    print(f"wrote {run_dir}/summary.json", file=sys.stderr)
    from structlearn.structure.readout import format_structure_table, run_structure

    print(format_structure_table(run_structure(run_dir, data=trainer.data)))  # read-out failures are recorded, not raised
    print(f"wrote {run_dir}/structure.json", file=sys.stderr)
    return 0
