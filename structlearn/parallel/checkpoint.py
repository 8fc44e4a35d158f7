"""Sharded checkpoints of a run on several processes (``torch.distributed.checkpoint``).

In the run folder::

    checkpoint/<layer>-<step>-<token>/   every rank's shard (``__<rank>_0.distcp``), DCP's
                                         ``.metadata``, and ``meta.pt`` (rank 0: the run state,
                                         optimizer and batch-generator state, the config)
    checkpoint/latest                    the name of the last complete one

A save writes a new folder, waits for every rank, and only then points ``latest`` at it
(an atomic write) and removes the older folders and a single-process ``checkpoint.pt``: an
interruption at any moment leaves the previous checkpoint whole. DCP records each shard at
its offset in the full tensor, so a run resumes on any number of processes, one included
(``dcp.load`` into plain full tensors without a process group), and a single-process
``checkpoint.pt`` resumes on several (every rank loads it and keeps its rows).
"""
from __future__ import annotations

import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any

from structlearn.io import atomic_torch_save, atomic_write_text, load_checkpoint
from structlearn.parallel.mesh import Mesh

ROOT = "checkpoint"
SHARDED = "sharded"  # the meta's "objective" when the objective's state is in the DCP files


def save_sharded(run_dir: Path, meta: dict[str, Any], state: dict[str, Any] | None, mesh: Mesh) -> None:
    """Collective: ``state`` (each rank's :meth:`~structlearn.parallel.engine.LayerEngine.sharded_state`,
    or ``None`` between layers) into a new folder, ``meta`` from rank 0, then ``latest``."""
    import torch.distributed.checkpoint as dcp

    root = run_dir / ROOT
    name = f"{meta['layer']}-{meta['step']}-{mesh.broadcast(secrets.token_hex(4))}"
    folder = root / name
    if state is not None:
        dcp.save(state, checkpoint_id=folder)
    if mesh.writer:
        atomic_torch_save(folder / "meta.pt", {**meta, "objective": SHARDED if state is not None else None})
    mesh.barrier()  # every shard is on disk
    if mesh.writer:
        atomic_write_text(root / "latest", name)
        for old in root.iterdir():
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)


def latest_sharded(run_dir: Path) -> Path | None:
    """The folder ``checkpoint/latest`` names (``None`` when there is none); a pointer to a
    missing or incomplete folder is an error that names it."""
    pointer = run_dir / ROOT / "latest"
    if not pointer.is_file():
        return None
    folder = run_dir / ROOT / pointer.read_text().strip()
    if not (folder / "meta.pt").is_file():
        raise ValueError(f"sharded checkpoint {str(folder)!r} (named by {str(pointer)!r}) is missing or incomplete; "
                         "allowed: a folder written by structlearn")
    return folder


def read_sharded_meta(folder: Path) -> dict[str, Any]:
    """``meta.pt`` of a sharded checkpoint, with its folder under ``"sharded_folder"``."""
    meta = load_checkpoint(folder / "meta.pt")
    if isinstance(meta, dict):
        meta["sharded_folder"] = str(folder)
    return meta


def load_sharded(folder: str | Path, state: dict[str, Any]) -> None:
    """Fill ``state`` (plain tensors, or DTensors laid out for this run's mesh) in place from
    the DCP files in ``folder``, resharding as needed."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # one process reading a sharded checkpoint is meant
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        try:
            dcp.load(state, checkpoint_id=Path(folder))
        except Exception as e:
            raise ValueError(f"sharded checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); allowed: a folder written by structlearn "
                             "for this run") from e


def remove_sharded(run_dir: Path) -> None:
    """Remove ``checkpoint/`` after a single-process ``checkpoint.pt`` superseded it."""
    root = run_dir / ROOT
    if root.is_dir():
        shutil.rmtree(root, ignore_errors=True)
