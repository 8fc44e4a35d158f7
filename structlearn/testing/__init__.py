"""Conformance suites for structlearn's plug-in points, shipped with the package (as
``optuna.testing`` is), so a plugin's objectives and pruners are checked by the same tests as
the built-in ones:

    from structlearn.testing import objectives, pruners
    objectives.check_objective("my_objective")     # every check, or run them one by one
    pruners.check_pruner("my_pruner")

:func:`trainer_in` builds a trainer that writes a run folder the way ``discover`` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from structlearn.callbacks import Callback, OnStep, standard_callbacks
from structlearn.config import RunConfig
from structlearn.loggers import Logger
from structlearn.train import Trainer


def trainer_in(cfg: RunConfig, run_dir: str | Path | None = None, loggers: Sequence[Logger] = (),
               on_step: Callable[[int], None] | None = None, callbacks: Sequence[Callback] = (),
               stop: Any = None) -> Trainer:
    """A :class:`Trainer` with discover's callbacks, checkpointing into ``run_dir`` (memory only
    when ``None``); ``on_step(global_step)`` runs after every update; ``stop`` as in the trainer."""
    cbs = standard_callbacks(run_dir, list(loggers)) + list(callbacks) + ([OnStep(on_step)] if on_step else [])
    return Trainer(cfg, Path(run_dir) / "checkpoint.pt" if run_dir is not None else None, cbs, stop=stop)
