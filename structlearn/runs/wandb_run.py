"""A run folder's W&B run: opened (or reopened by id), its sweep overrides read back, and the
read-out, artifacts and report logged into it.

- :func:`open_wandb`: one W&B run per run folder, its id in ``wandb_id.txt``; ``report`` and
  ``export`` reopen it by that id, so a read-out computed later lands in the training's run.
- :func:`sweep_overrides`: what a W&B sweep (``wandb agent``) put in ``wandb.config``, as
  ``--set`` overrides of the run config.
- :func:`log_readout`, :func:`log_artifacts`: the structure table, montages and summary values;
  the ``model`` artifact (spec, kernels, layer weights) and the ``run`` artifact (config,
  summary, metrics, report).
"""
from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from structlearn.config import RunConfig, to_dict
from structlearn.io import atomic_write_text
from structlearn.loggers import WandbLogger, artifact_name
from structlearn.runs.run import Run


def identity(cfg: RunConfig, job_type: str) -> dict[str, Any]:
    """``wandb.init``'s identity arguments from ``cfg.wandb`` (group defaults to the config's
    name, job type to the command)."""
    w = cfg.wandb
    return {"project": w.project, "entity": w.entity, "group": w.group or cfg.name, "job_type": w.job_type or job_type,
            "tags": list(w.tags)}


def open_wandb(run: Run, cfg: RunConfig, job_type: str, mode: str | None = None) -> WandbLogger:
    """The run folder's W&B run: reopened by the id in ``wandb_id.txt``, else new, with the id
    that ``WANDB_RUN_ID`` names (``wandb agent`` sets it: the sweep expects that run) or a fresh one."""
    id_file = run.file("wandb_id.txt")
    run_id = id_file.read_text().strip() if id_file.is_file() else (os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:12])
    logger = WandbLogger(run.path, mode or cfg.wandb.mode, run.name, to_dict(cfg), run_id, identity(cfg, job_type))
    if not id_file.is_file():
        atomic_write_text(id_file, run_id)
    return logger


def log_later(run: Run, job_type: str, mode: str | None, what: str, fn: Any) -> str | None:
    """Reopen the run's W&B run (``mode``; default: the run's ``wandb.mode`` when it has a W&B
    run, else nothing), call ``fn(logger)`` and finish. Returns the one line to print, or None
    when W&B is off; a W&B failure is that line, not an exception (the files are written)."""
    from structlearn.loggers import one_line

    mode = mode or (run.cfg.wandb.mode if run.file("wandb_id.txt").is_file() else "disabled")
    if mode == "disabled":
        return None
    try:
        wb = open_wandb(run, run.cfg, job_type, mode)
        try:
            fn(wb)
        finally:
            wb.finish()
    except Exception as e:
        return (f"W&B ({mode}) could not log {what}: {one_line(e)}; the files are written; "
                f"allowed: --wandb offline, or --wandb disabled")
    return f"logged {what} into W&B run {wb.id} ({wb.mode})"


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def sweep_overrides(wandb_config: dict[str, Any], cfg: RunConfig) -> list[str]:
    """``KEY=VALUE`` overrides for every experiment value in ``wandb_config`` (a sweep's
    parameters: dotted keys such as ``layers.0.params.lam``, or nested mappings) that differs
    from ``cfg``. The ``wandb`` section is not part of the experiment and is ignored."""
    ours = _flat(to_dict(cfg))
    out = []
    for key, value in sorted(_flat(dict(wandb_config)).items()):
        if key.split(".")[0] == "wandb" or key.startswith("_"):
            continue
        if key not in ours or not _same(ours[key], value):
            out.append(f"{key}={json.dumps(value)}")
    return out


def _png(path: Path) -> np.ndarray:
    import matplotlib.pyplot as plt

    img = plt.imread(path)
    img = img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, 2)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8) if img.dtype != np.uint8 else img


def log_readout(logger: Any, run: Run, structure: dict[str, Any]) -> None:
    """The read-out into the W&B run: the structure table (one row per layer), the Gabor and
    kernel montages it wrote, and its numbers as summary values (``structure/layer<i>/...``)."""
    from structlearn.structure.readout import STRUCTURE_COLUMNS, structure_rows

    rows, notes = structure_rows(structure)
    logger.log_table(None, "structure/table", STRUCTURE_COLUMNS, rows)
    images, captions = {}, {}
    for e in structure.get("layers", []):
        for name in e.get("pngs", []):
            if run.file(name).is_file():
                key = f"structure/{Path(name).stem}"
                images[key] = _png(run.file(name))
                captions[key] = {"gabor": "filters (left) beside their Gabor fits (right)",
                                 "kernels": "shared kernels of the conv read-out"}[name.split("_")[1]]
    if images:
        logger.log_images(None, images, captions)
    values: dict[str, Any] = {}
    for e in structure.get("layers", []):
        for sec in ("", "receptive_fields", "gabor", "conv"):
            part = e if not sec else e.get(sec)
            if isinstance(part, dict):
                values.update({f"structure/layer{e.get('layer')}/{sec + '/' if sec else ''}{k}": v for k, v in part.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))})
    if notes:
        values["structure/notes"] = " | ".join(notes)
    logger.log_summary(values)


def log_artifacts(logger: Any, run: Run, extra_model_files: list[Path] = ()) -> None:  # type: ignore[assignment]
    """``model`` artifact: the architecture spec and its kernels (when given), ``structure.json``,
    ``structure_kernels.pt`` and every ``layer<i>.pt``; ``run`` artifact: config, summary,
    metrics and ``report.html`` (those that exist)."""
    model = [f for f in [*extra_model_files, run.file("structure.json"), run.file("structure_kernels.pt"),
                         *sorted(run.path.glob("layer[0-9]*.pt"))] if Path(f).is_file() and not Path(f).name.endswith("_dense.pt")]
    meta = {k: v for k, v in (run.summary() if run.file("summary.json").is_file() else {}).items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if model:
        logger.log_artifact(f"model-{artifact_name(run.name)}", "model", model, meta)
    files = [run.file(n) for n in ("config.yaml", "summary.json", "metrics.jsonl", "report.html") if run.file(n).is_file()]
    logger.log_artifact(f"run-{artifact_name(run.name)}", "run", files, meta)
