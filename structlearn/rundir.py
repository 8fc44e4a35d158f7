"""The run folder: ``runs/<YYYYmmdd-HHMMSS>-<name>/`` holding config.yaml, metrics.jsonl,
summary.json, checkpoint.pt, layer<i>.pt, PNGs and the offline W&B run."""
from __future__ import annotations

import re
import time
from pathlib import Path

from structlearn.config import RunConfig, dump_config, load_config
from structlearn.io import atomic_write_text


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create a fresh run folder under ``out`` (a numeric suffix avoids collisions)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{stamp}-{safe}"
    for i in range(1000):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"cannot create a run folder under {str(out)!r}")


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))


def read_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{str(run_dir)!r} is not a run folder: config.yaml is missing")
    return load_config(run_dir / "config.yaml")
