"""The discover workflow: check the config, make the run folder, train, then read out.

``start_discover`` does every check that needs no training (data, objectives, pruners) before
the folder exists, so bad input leaves nothing behind; ``Discovery.run`` trains with the
standard callbacks (metrics.jsonl, W&B, run-folder files, filter montages) and then writes the
read-out (``structure.json``).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from structlearn.callbacks import Callback, FilterTimeline, OnStep, standard_callbacks
from structlearn.config import RunConfig, apply_overrides, dump_config, from_dict, to_dict
from structlearn.io import atomic_torch_save, atomic_write_text
from structlearn.loggers import JsonlLogger, Logger, WandbLogger, one_line
from structlearn.runs.readout import ensure_structure
from structlearn.runs.run import Run, RunLock
from structlearn.runs.wandb_run import log_artifacts, log_readout, open_wandb, sweep_overrides
from structlearn.train import Trainer, experiment_config


@dataclass
class Discovery:
    """A checked run, ready to train; ``with discovery:`` holds the run folder's lock (a second
    writer is refused) and finishes the loggers on exit."""

    run: Run
    trainer: Trainer
    loggers: list[Logger]  # shared with the trainer's LogTo callback
    lock: RunLock | None  # None on the ranks that do not write (a run on several processes)
    fresh: bool  # the folder was created for this run (so it may be removed if W&B cannot start)
    writer: bool = True  # rank 0 (or the only process): writes the run folder, W&B and the read-out

    def __enter__(self) -> "Discovery":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for lg in self.loggers:
                lg.finish()
        finally:
            if self.lock is not None:
                self.lock.__exit__()

    def train(self) -> dict[str, Any]:
        """Open the W&B run (when the config asks for one), train (resuming from the run's
        checkpoint when there is one) and return the summary. A stop request ends in
        :class:`~structlearn.train.Interrupted` after a checkpoint at the step boundary."""
        self.open_wandb()
        return self.trainer.run()

    def open_wandb(self) -> None:
        """Start the W&B run when the config asks for one (once), then apply what a W&B sweep put
        in ``wandb.config`` (:meth:`apply_sweep`). If W&B cannot start (no key, no network within
        its 15 s init timeout), a folder made for this run is removed and the error is one
        ``ValueError`` (``online-or-offline`` falls back to offline instead, and says so)."""
        cfg = self.trainer.cfg
        if cfg.wandb.mode == "disabled" or self.wandb is not None or not self.writer:
            return
        try:
            logger = open_wandb(self.run, cfg, "discover")
        except Exception as e:  # no key, no network, a W&B error: nothing half-written
            if self.fresh:
                shutil.rmtree(self.run.path, ignore_errors=True)
            raise ValueError(f"W&B ({cfg.wandb.mode}) could not start: {one_line(e)}"
                             f"; allowed: --wandb offline (synced later with `wandb sync`), --wandb online-or-offline, "
                             f"or --wandb disabled" + ("" if self.fresh else f"; the run folder {self.run.path} is unchanged")) from None
        self.loggers.append(logger)
        overrides = sweep_overrides(dict(logger.run.config), cfg)
        if overrides:
            self.apply_sweep(overrides)

    @property
    def wandb(self) -> WandbLogger | None:
        return next((lg for lg in self.loggers if isinstance(lg, WandbLogger)), None)

    def apply_sweep(self, overrides: list[str]) -> None:
        """Rebuild the run with ``KEY=VALUE`` overrides (a W&B sweep's parameters): the config is
        checked and its data prepared again, ``config.yaml`` rewritten and the W&B config updated.
        A resumed run refuses overrides that change its experiment."""
        old = self.trainer.cfg
        try:
            cfg = from_dict(RunConfig, apply_overrides(to_dict(old), overrides))
            cfg.validate()
            if not self.fresh and experiment_config(cfg) != experiment_config(old):
                raise ValueError(f"the W&B sweep sets {', '.join(overrides)} but {self.run.path} is a resumed run; "
                                 "allowed: a sweep starts fresh runs (no --resume)")
            same_data = cfg.data == old.data and cfg.seed == old.seed
            trainer = Trainer(cfg, self.trainer.checkpoint, self.trainer.callbacks, data=self.trainer.data if same_data else None,
                              stop=self.trainer.stop, mesh=self.trainer.mesh)
            data = trainer.prepare()
        except ValueError as e:
            if self.fresh:
                for lg in self.loggers:
                    lg.finish()
                self.loggers.clear()
                shutil.rmtree(self.run.path, ignore_errors=True)
            raise ValueError(f"W&B sweep parameters: {e}") from None
        atomic_write_text(self.run.file("config.yaml"), dump_config(cfg))
        self.run.__dict__.update(cfg=cfg, data=data)
        self.trainer = trainer
        for cb in trainer.callbacks:
            if isinstance(cb, FilterTimeline):
                cb.every = cfg.wandb.log_images_every or cfg.eval_every
        wb = self.wandb
        assert wb is not None
        wb.run.config.update(to_dict(cfg), allow_val_change=True)
        print(f"W&B sweep: {' '.join(overrides)}", file=sys.stderr, flush=True)

    def read_out(self, conv_kwargs: dict[str, Any] | None = None, html: bool = True) -> dict[str, Any]:
        """The read-out (``structure.json``), ``report.html`` (unless ``html`` is false) and, when
        W&B is on, both logged into the run with the ``model`` and ``run`` artifacts. Nothing on
        the ranks that do not write."""
        if not self.writer:
            return {}
        structure = ensure_structure(self.run, conv_kwargs, recompute=True)
        if html:
            from structlearn.runs.html import write_report

            write_report(self.run)
        wb = self.wandb
        if wb is not None:
            log_readout(wb, self.run, structure)
            log_artifacts(wb, self.run, model_files(self.run, conv_kwargs))
        return structure


def model_files(run: Run, conv_kwargs: dict[str, Any] | None = None) -> list[Path]:
    """``architecture.json`` (+ ``architecture_kernels.pt``) of an image run, written for the
    ``model`` artifact; none for a run whose samples are vectors."""
    from structlearn.export import EXPORTERS
    from structlearn.runs.export import spec_from_run

    try:
        spec, kernels = spec_from_run(run, conv_kwargs)
    except ValueError:
        return []
    out = run.file("architecture.json")
    EXPORTERS.create("json")(spec, out)
    files = [out]
    if kernels:
        atomic_torch_save(run.file("architecture_kernels.pt"), {"kernels": kernels})
        files.append(run.file("architecture_kernels.pt"))
    return files


class PeerFailed(ValueError):
    """Rank 0 could not start the run (its own error says why); the other ranks stop quietly."""


def resume_config(resume: str | Path, overrides: Sequence[str] = (), wandb: str | None = None) -> RunConfig:
    """A run folder's own config with ``KEY=VALUE`` overrides of the fields that are not part
    of the experiment (``wandb.*``, ``parallel.*``: a run may resume on other processes)."""
    from structlearn.train import RESUME_FREE

    bad = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] not in RESUME_FREE]
    if bad:
        raise ValueError(f"--resume takes the run's own config.yaml; --set {bad[0]} would change the experiment; "
                         f"allowed with --resume: --set {'.*, --set '.join(RESUME_FREE)}.*")
    cfg = Run(resume).cfg
    if overrides:
        cfg = from_dict(RunConfig, apply_overrides(to_dict(cfg), list(overrides)))
        cfg.validate()
    if wandb is not None:
        cfg = replace(cfg, wandb=replace(cfg.wandb, mode=wandb))
    return cfg


def start_discover(cfg: RunConfig | None = None, *, out: str | Path = "runs", resume: str | Path | None = None,
                   wandb: str | None = None, progress: bool = False, callbacks: Sequence[Callback] = (),
                   on_step: Callable[[int], None] | None = None, stop: Any = None, mesh: Any = None,
                   resume_overrides: Sequence[str] = ()) -> Discovery:
    """A checked, ready-to-train :class:`Discovery`: a new run folder for ``cfg`` under ``out``,
    or the existing folder ``resume`` with its own config (``resume_overrides``: see
    :func:`resume_config`). ``wandb`` overrides the config's mode (also on resume: the W&B
    mode is not part of the experiment). ``stop`` is polled at every step boundary (see
    :class:`~structlearn.train.Trainer`).

    On several processes (``mesh``, :func:`~structlearn.parallel.mesh.init_mesh`) rank 0 alone
    checks, creates (or locks) the folder and starts W&B, then sends the folder and the final
    config (a W&B sweep may have changed it) to the others; they build their data from the seed
    meanwhile and train with no callbacks. A failure on rank 0 is sent too: the others raise
    :class:`PeerFailed` instead of waiting."""
    if mesh is None:
        return _start(cfg, out, resume, wandb, progress, callbacks, on_step, stop, None, resume_overrides)
    if mesh.writer:
        try:
            job = _start(cfg, out, resume, wandb, progress, callbacks, on_step, stop, mesh, resume_overrides)
            job.open_wandb()
        except BaseException as e:
            mesh.broadcast({"error": one_line(e)})
            raise
        mesh.broadcast({"path": str(job.run.path), "config": to_dict(job.trainer.cfg)})
        return job
    try:  # the data in parallel with rank 0's
        mine = resume_config(resume, resume_overrides) if resume is not None else cfg
        data = Trainer(mine, mesh=mesh).prepare() if mine is not None else None
    except ValueError:
        mine, data = None, None  # rank 0 meets the same error and says it
    msg = mesh.broadcast()
    if "error" in msg:
        raise PeerFailed(f"rank 0 could not start the run: {msg['error']}")
    final = from_dict(RunConfig, msg["config"])
    if data is None or mine is None or final.data != mine.data or final.seed != mine.seed:
        data = Trainer(final, mesh=mesh).prepare()
    run = Run(msg["path"], data=data)
    return Discovery(run, Trainer(final, run.file("checkpoint.pt"), data=data, stop=stop, mesh=mesh), [], None,
                     resume is None, writer=False)


def _start(cfg: RunConfig | None, out: str | Path, resume: str | Path | None, wandb: str | None, progress: bool,
           callbacks: Sequence[Callback], on_step: Callable[[int], None] | None, stop: Any, mesh: Any,
           resume_overrides: Sequence[str]) -> Discovery:
    lock = None
    if resume is not None:
        if cfg is not None:
            raise ValueError("resume takes the run's own config.yaml; do not pass a config with it")
        lock = Run(resume).lock().__enter__()  # a second writer is refused before any work
    try:
        if resume is not None:
            cfg = resume_config(resume, resume_overrides, wandb)
            Trainer(cfg, Run(resume).file("checkpoint.pt"))._load()  # a corrupt or foreign checkpoint: now
        elif cfg is None:
            raise ValueError("give a config, or a run folder to resume")
        elif wandb is not None:
            cfg = replace(cfg, wandb=replace(cfg.wandb, mode=wandb))
        data = Trainer(cfg, mesh=mesh).prepare()  # bad data or hyperparameters fail here, before any file is written
        run = Run.create(out, cfg, data=data) if resume is None else Run(resume, data=data)
        lock = lock or run.lock().__enter__()
    except BaseException:
        if lock is not None:
            lock.__exit__()
        raise
    loggers: list[Logger] = [JsonlLogger(run.file("metrics.jsonl"))]
    cbs = standard_callbacks(run.path, loggers, progress, cfg.wandb.log_images_every or cfg.eval_every) + list(callbacks)
    if on_step is not None:
        cbs.append(OnStep(on_step))
    return Discovery(run, Trainer(cfg, run.file("checkpoint.pt"), cbs, data=data, stop=stop, mesh=mesh), loggers, lock,
                     resume is None)
