"""Loggers: training emits ``dict[str, float]`` metrics and uint8 images; loggers store them.

- :class:`JsonlLogger`: one JSON object per line in ``metrics.jsonl`` (appended, flushed).
- :class:`WandbLogger`: a W&B run, offline into the run folder by default.
- :class:`MemoryLogger`: keeps everything in lists (tests).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from structlearn.io import atomic_write_text


class Logger(Protocol):
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_images(self, step: int, images: dict[str, np.ndarray]) -> None: ...
    def finish(self) -> None: ...


class MemoryLogger:
    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.images: list[tuple[int, str, np.ndarray]] = []

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.append({"step": step, **metrics})

    def log_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        self.images.extend((step, k, v) for k, v in images.items())

    def finish(self) -> None:
        return None


class JsonlLogger:
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

    def log_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        return None  # PNGs are written to the run folder by the trainer

    def finish(self) -> None:
        return None


def wandb_dirs(run_dir: str | Path) -> dict[str, str]:
    """W&B's staging, cache, config and artifact folders inside the run folder, as environment
    variables. Only an entry point applies them (with ``setdefault``, so a user's own settings
    win): W&B reads these from the environment alone."""
    run_dir = Path(run_dir)
    return {var: str(run_dir / sub) for var, sub in (
        ("WANDB_DATA_DIR", "wandb/data"), ("WANDB_CACHE_DIR", "wandb/cache"),
        ("WANDB_CONFIG_DIR", "wandb/config"), ("WANDB_ARTIFACT_DIR", "wandb/artifacts"))}


class WandbLogger:
    """W&B run in ``mode`` ('offline' writes under ``run_dir/wandb``; nothing leaves the
    machine until the user runs ``wandb sync``). Images must be uint8 (W&B does not rescale)."""

    def __init__(self, run_dir: str | Path, mode: str, project: str, name: str, config: dict, run_id: str) -> None:
        if mode not in ("offline", "online"):
            raise ValueError(f"wandb mode {mode!r}; allowed: offline, online (or disabled: no logger)")
        try:
            import wandb
        except ImportError as e:  # pragma: no cover - wandb is a core dependency
            raise ImportError("W&B logging needs wandb: pip install wandb, or use --wandb disabled") from e
        run_dir = Path(run_dir)
        self._wandb = wandb
        wb_mode: Literal["online", "offline"] = "online" if mode == "online" else "offline"
        self.run = wandb.init(project=project, name=name, config=config, dir=str(run_dir), mode=wb_mode, id=run_id,
                              resume="allow", settings=wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                                      init_timeout=15.0))  # the whole command ends within 30 s

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        out = {}
        for k, v in images.items():
            if v.dtype != np.uint8:
                raise ValueError(f"image {k!r} must be uint8 (0..255), got {v.dtype}")
            out[k] = self._wandb.Image(v)
        self.run.log(out, step=step)

    def finish(self) -> None:
        self.run.finish()
