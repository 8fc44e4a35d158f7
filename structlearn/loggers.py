"""Loggers: training emits ``dict[str, float]`` metrics, uint8 images, tables and files; loggers store them.

- :class:`JsonlLogger`: one JSON object per line in ``metrics.jsonl`` (appended, flushed).
- :class:`WandbLogger`: a W&B run, offline into the run folder by default.
- :class:`MemoryLogger`: keeps everything in lists (tests).

A logger that has no use for an event ignores it (:class:`NullSink` gives the no-ops).
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol, Sequence

import numpy as np

from structlearn.io import atomic_write_text


class Logger(Protocol):
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_images(self, step: int | None, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None: ...
    def log_table(self, step: int | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...
    def log_summary(self, values: dict[str, Any]) -> None: ...
    def log_artifact(self, name: str, kind: str, files: Sequence[Path], metadata: dict[str, Any] | None = None) -> None: ...
    def finish(self) -> None: ...


class NullSink:
    """No-op events, for loggers that keep only some of them."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        return None

    def log_images(self, step: int | None, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None:
        return None

    def log_table(self, step: int | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        return None

    def log_summary(self, values: dict[str, Any]) -> None:
        return None

    def log_artifact(self, name: str, kind: str, files: Sequence[Path], metadata: dict[str, Any] | None = None) -> None:
        return None

    def finish(self) -> None:
        return None


class MemoryLogger(NullSink):
    wants_images = wants_tables = True

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.images: list[tuple[int | None, str, np.ndarray, str]] = []  # (step, key, image, caption)
        self.tables: list[tuple[int | None, str, list[str], list[list[Any]]]] = []
        self.summary: dict[str, Any] = {}
        self.artifacts: list[tuple[str, str, list[Path], dict[str, Any]]] = []

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.append({"step": step, **metrics})

    def log_images(self, step: int | None, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None:
        self.images.extend((step, k, v, (captions or {}).get(k, "")) for k, v in images.items())

    def log_table(self, step: int | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.tables.append((step, key, list(columns), [list(r) for r in rows]))

    def log_summary(self, values: dict[str, Any]) -> None:
        self.summary.update(values)

    def log_artifact(self, name: str, kind: str, files: Sequence[Path], metadata: dict[str, Any] | None = None) -> None:
        self.artifacts.append((name, kind, [Path(f) for f in files], dict(metadata or {})))


class JsonlLogger(NullSink):
    """Append-only ``metrics.jsonl``; ``truncate_after(step)`` drops lines past a checkpoint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if rec.get("step", 0) <= step:
                keep.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- W&B
WANDB_FOLDERS = (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts"))


@contextmanager
def wandb_folders(run_dir: str | Path) -> Iterator[None]:
    """W&B's core log, artifact staging and cache folders inside ``run_dir/wandb`` for the
    duration of one W&B call, restored at once.

    W&B has no setting for these three folders (its core service, started by the first
    ``wandb.init`` of a process, and its artifact code read them from ``WANDB_CACHE_DIR``,
    ``WANDB_DATA_DIR``, ``WANDB_ARTIFACT_DIR`` alone). A variable the user set is left as it is;
    identity (entity, host, key, ``WANDB_CONFIG_DIR`` and its settings file) is never touched."""
    base = Path(run_dir) / "wandb"
    added = [var for var, _ in WANDB_FOLDERS if var not in os.environ]
    for var, sub in WANDB_FOLDERS:
        if var in added:
            (base / sub).mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(base / sub)
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


def settings(mode: Literal["online", "offline"], timeout: float = 15.0) -> Any:
    """Quiet W&B settings: no console capture, no system stats, no banners; init gives up after
    ``timeout`` s (so an unreachable host ends the command within 30 s)."""
    import wandb

    return wandb.Settings(console="off", x_disable_stats=True, silent=True, init_timeout=timeout, mode=mode)


class WandbLogger(NullSink):
    """A W&B run (``wandb.init(dir=run_dir, ...)``) in ``mode``:

    - ``offline``: written under ``run_dir/wandb``; nothing leaves the machine until ``wandb sync``;
    - ``online``: a failure to start within 15 s raises (the caller turns it into one line);
    - ``online-or-offline``: online, else one line on stderr saying so and an offline run.

    ``identity`` holds ``project``, ``entity``, ``group``, ``job_type``, ``tags`` (``None``
    leaves W&B's default: the user's own settings). ``run_id`` reopens a run: a read-out that
    comes after training lands in the training's run. Images must be uint8 (W&B does not
    rescale); table cells that are uint8 arrays become images."""

    wants_images = wants_tables = True

    def __init__(self, run_dir: str | Path, mode: str, name: str, config: dict, run_id: str,
                 identity: dict[str, Any] | None = None) -> None:
        if mode not in ("offline", "online", "online-or-offline"):
            raise ValueError(f"wandb mode {mode!r}; allowed: offline, online, online-or-offline (or disabled: no logger)")
        import wandb

        self._wandb = wandb
        self.run_dir = Path(run_dir)
        ident = {k: v for k, v in (identity or {}).items() if v not in (None, (), [])}
        if "tags" in ident:
            ident["tags"] = list(ident["tags"])
        kwargs = dict(name=name, config=config, dir=str(self.run_dir), id=run_id, resume="allow", **ident)
        self.mode = mode
        with wandb_folders(self.run_dir):
            wandb.setup(settings=wandb.Settings(silent=True))  # W&B's own process singleton: no login banner
            try:
                self.run = wandb.init(settings=settings("offline" if mode == "offline" else "online"), **kwargs)
            except Exception as e:
                if mode != "online-or-offline":
                    raise
                print(f"W&B online could not start ({one_line(e)}); logging offline into {self.run_dir / 'wandb'} "
                      f"instead (upload later with `wandb sync {self.run_dir / 'wandb'}/offline-run-*`)",
                      file=sys.stderr, flush=True)
                self.mode = "offline"
                wandb.teardown()  # the failed online attempt still holds the run id in W&B's process singleton
                wandb.setup(settings=wandb.Settings(silent=True))
                self.run = wandb.init(settings=settings("offline"), **kwargs)

    @property
    def id(self) -> str:
        return str(self.run.id)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        with wandb_folders(self.run_dir):
            self.run.log(dict(metrics), step=step)

    def image(self, v: np.ndarray, caption: str | None = None) -> Any:
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8:
            raise ValueError(f"W&B images must be uint8 arrays (0..255), got {getattr(v, 'dtype', type(v).__name__)}")
        return self._wandb.Image(v, caption=caption or None)

    def log_images(self, step: int | None, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None:
        with wandb_folders(self.run_dir):
            self.run.log({k: self.image(v, (captions or {}).get(k)) for k, v in images.items()}, step=step)  # None: next step

    def log_table(self, step: int | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        data = [[self.image(c) if isinstance(c, np.ndarray) else c for c in r] for r in rows]
        with wandb_folders(self.run_dir):
            self.run.log({key: self._wandb.Table(columns=list(columns), data=data)}, step=step)

    def log_summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(dict(values))

    def log_artifact(self, name: str, kind: str, files: Sequence[Path], metadata: dict[str, Any] | None = None) -> None:
        """One artifact of ``files`` (added by reference to their bytes: ``policy="immutable"``,
        no staging copy), linked to this run."""
        with wandb_folders(self.run_dir):
            art = self._wandb.Artifact(name, type=kind, metadata=dict(metadata or {}))
            for f in files:
                art.add_file(str(f), name=Path(f).name, policy="immutable")
            self.run.log_artifact(art)

    def finish(self) -> None:
        with wandb_folders(self.run_dir):
            self.run.finish()


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` (W&B's errors span many lines)."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def artifact_name(name: str) -> str:
    """A W&B artifact name: letters, digits, ``- _ .`` only."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:120] or "run"
