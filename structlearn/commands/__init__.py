"""CLI commands: one module each (see :mod:`structlearn.cli`). Entry points are the only code
that changes process state (torch threads, W&B's folders in the environment, signals)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_config_arguments(p: argparse.ArgumentParser, default: str, what: str, example: str) -> None:
    """``CONFIG`` (a YAML path or a bundled config's name), ``--set KEY=VALUE`` and ``--out``."""
    p.add_argument("config", nargs="?", help=f"{what}: a YAML path or a bundled config's name (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a field by dotted path, e.g. {example} (repeatable)")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")


def set_threads(n: int) -> None:
    """torch CPU threads for this process (0 keeps torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def use_wandb_dirs(run_dir: str | Path) -> None:
    """Point W&B's staging, cache and config folders into the run folder, unless the user set them."""
    from structlearn.loggers import wandb_dirs

    for var, path in wandb_dirs(run_dir).items():
        Path(path).mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(var, path)
