"""The discover workflow: check the config, make the run folder, train, then read out.

``start_discover`` does every check that needs no training (data, objectives, pruners) before
the folder exists, so bad input leaves nothing behind; ``Discovery.run`` trains with the
standard callbacks (metrics.jsonl, W&B, run-folder files, filter montages) and then writes the
read-out (``structure.json``).
"""
from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from structlearn.callbacks import Callback, OnStep, standard_callbacks
from structlearn.config import RunConfig, to_dict
from structlearn.io import atomic_write_text
from structlearn.loggers import JsonlLogger, Logger, WandbLogger
from structlearn.runs.readout import ensure_structure
from structlearn.runs.run import Run, RunLock
from structlearn.train import Trainer


@dataclass
class Discovery:
    """A checked run, ready to train; ``with discovery:`` holds the run folder's lock (a second
    writer is refused) and finishes the loggers on exit."""

    run: Run
    trainer: Trainer
    loggers: list[Logger]  # shared with the trainer's LogTo callback
    lock: RunLock
    fresh: bool  # the folder was created for this run (so it may be removed if W&B cannot start)

    def __enter__(self) -> "Discovery":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for lg in self.loggers:
                lg.finish()
        finally:
            self.lock.__exit__()

    def train(self) -> dict[str, Any]:
        """Open the W&B run (when the config asks for one), train (resuming from the run's
        checkpoint when there is one) and return the summary. A stop request ends in
        :class:`~structlearn.train.Interrupted` after a checkpoint at the step boundary."""
        self.open_wandb()
        return self.trainer.run()

    def open_wandb(self) -> None:
        """Start the W&B run when the config asks for one (once). If it cannot start (no key,
        no network within W&B's 15 s init timeout), a folder made for this run is removed and
        the error is one ``ValueError``."""
        cfg = self.trainer.cfg
        if cfg.wandb != "disabled" and not any(isinstance(lg, WandbLogger) for lg in self.loggers):
            id_file = self.run.file("wandb_id.txt")
            run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
            try:
                self.loggers.append(WandbLogger(self.run.path, cfg.wandb, cfg.wandb_project, self.run.name, to_dict(cfg),
                                                run_id))
            except Exception as e:  # no key, no network, a W&B error: nothing half-written
                if self.fresh:
                    shutil.rmtree(self.run.path, ignore_errors=True)
                raise ValueError(f"W&B ({cfg.wandb}) could not start: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                 f"; allowed: --wandb offline (synced later with `wandb sync`) or --wandb disabled"
                                 + ("" if self.fresh else f"; the run folder {self.run.path} is unchanged")) from None
            atomic_write_text(id_file, run_id)

    def read_out(self, conv_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return ensure_structure(self.run, conv_kwargs, recompute=True)


def start_discover(cfg: RunConfig | None = None, *, out: str | Path = "runs", resume: str | Path | None = None,
                   wandb: str | None = None, progress: bool = False, callbacks: Sequence[Callback] = (),
                   on_step: Callable[[int], None] | None = None, stop: Any = None) -> Discovery:
    """A checked, ready-to-train :class:`Discovery`: a new run folder for ``cfg`` under ``out``,
    or the existing folder ``resume`` with its own config. ``wandb`` overrides the config's mode
    (also on resume: the W&B mode is not part of the experiment). ``stop`` is polled at every
    step boundary (see :class:`~structlearn.train.Trainer`)."""
    lock = None
    if resume is not None:
        if cfg is not None:
            raise ValueError("resume takes the run's own config.yaml; do not pass a config with it")
        lock = Run(resume).lock().__enter__()  # a second writer is refused before any work
    try:
        if resume is not None:
            cfg = Run(resume).cfg
            if wandb is not None:
                cfg = replace(cfg, wandb=wandb)
            Trainer(cfg, Run(resume).file("checkpoint.pt"))._load()  # a corrupt or foreign checkpoint: now
        elif cfg is None:
            raise ValueError("give a config, or a run folder to resume")
        elif wandb is not None:
            cfg = replace(cfg, wandb=wandb)
        data = Trainer(cfg).prepare()  # bad data or hyperparameters fail here, before any file is written
        run = Run.create(out, cfg, data=data) if resume is None else Run(resume, data=data)
        lock = lock or run.lock().__enter__()
    except BaseException:
        if lock is not None:
            lock.__exit__()
        raise
    loggers: list[Logger] = [JsonlLogger(run.file("metrics.jsonl"))]
    cbs = standard_callbacks(run.path, loggers, progress) + list(callbacks)
    if on_step is not None:
        cbs.append(OnStep(on_step))
    return Discovery(run, Trainer(cfg, run.file("checkpoint.pt"), cbs, data=data, stop=stop), loggers, lock, resume is None)
