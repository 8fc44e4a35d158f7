"""CLI commands: one module each (see :mod:`structlearn.cli`). Entry points are the only code
that changes process state (torch threads, W&B's folders in the environment, signals)."""
from __future__ import annotations

import os
from pathlib import Path


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
