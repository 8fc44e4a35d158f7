"""A run folder, opened once: ``runs/<YYYYmmdd-HHMMSS>-<name>/``.

It holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``summary.json``,
``checkpoint.pt``, ``layer<i>.pt`` (weight, mask, input shape), ``layer<i>_dense.pt`` (the layer
at its first pruning), ``structure.json`` + ``structure_kernels.pt`` (the read-out), PNGs,
``report.html`` (:mod:`structlearn.runs.html`), and the W&B run (``wandb/``, its id in
``wandb_id.txt``; :mod:`structlearn.runs.wandb_run`). :class:`Run` is the only code that opens these files; what it reads is
cached, so a workflow that needs the config, the data and a layer reads each once.
"""
from __future__ import annotations

import fcntl
import os
import re
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from structlearn.build import build_objective, unit_groups
from structlearn.config import RunConfig, dump_config, load_config
from structlearn.data.prepare import Prepared, prepare
from structlearn.io import atomic_write_text, load_checkpoint, read_json
from structlearn.objectives.base import Objective
from structlearn.runtime import derive_seed

STRUCTURE_VERSION = 4  # 3: the full-coverage sharing section; 4: colour units share colour kernels (C, 3, k, k)


def safe_name(name: str, max_len: int = 80) -> str:
    """A folder-name-safe version of ``name``: letters, digits, ``_ . -``; no leading dots."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:max_len].strip("-.")
    return safe or "run"


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create a fresh folder ``out/<time>-<name>`` (a numeric suffix avoids collisions)."""
    base = Path(out) / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(name)}"
    for i in range(1000):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"cannot create a run folder under {str(out)!r}")


class RunLock:
    """``with RunLock(path):`` holds an exclusive non-blocking ``flock`` on ``path`` (module docstring of :class:`Run`)."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, -1

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"run folder {str(self.path.parent)!r} is being written by another process (pid {holder}); "
                             "allowed: wait for it to finish, or use another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


class Run:
    """An existing run folder (``Run(path)``) or a new one (``Run.create(out, cfg)``)."""

    def __init__(self, path: str | Path, *, data: Prepared | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"run folder {str(self.path)!r} does not exist")
        if not (self.path / "config.yaml").is_file():
            raise ValueError(f"{str(self.path)!r} is not a run folder: config.yaml is missing")
        if data is not None:
            self.__dict__["data"] = data
        self._layers: dict[tuple[int, str], dict[str, Any]] = {}

    @classmethod
    def create(cls, out: str | Path, cfg: RunConfig, *, data: Prepared | None = None) -> "Run":
        path = new_run_dir(out, cfg.name)
        atomic_write_text(path / "config.yaml", dump_config(cfg))
        run = cls(path, data=data)
        run.__dict__["cfg"] = cfg
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def lock(self) -> "RunLock":
        """An exclusive lock on this folder for one writer (``run.lock``, ``flock``; released when
        the process ends, however it ends). A second writer gets a ``ValueError`` at once."""
        return RunLock(self.path / "run.lock")

    def file(self, name: str) -> Path:
        return self.path / name

    @cached_property
    def cfg(self) -> RunConfig:
        return load_config(self.path / "config.yaml")

    @cached_property
    def data(self) -> Prepared:
        """The run's data, rebuilt bit-identically from its seed."""
        return prepare(self.cfg.data, derive_seed(self.cfg.seed, "data"))

    def layer(self, li: int, kind: str = "final") -> dict[str, Any]:
        """``layer<li>.pt`` (``kind="final"``: weight, mask, input_shape) or ``layer<li>_dense.pt``
        (``kind="dense"``: the objective's state at the first pruning)."""
        key = (li, kind)
        if key not in self._layers:
            name = f"layer{li}.pt" if kind == "final" else f"layer{li}_dense.pt"
            path = self.file(name)
            if not path.is_file():
                why = (f"the run has not finished layer {li}; finish it with --resume first" if kind == "final" else
                       "the run has no dense state of this layer (it was not pruned, or has not reached pruning)")
                raise ValueError(f"{str(path)!r} does not exist: {why}")
            self._layers[key] = load_checkpoint(path)
        return self._layers[key]

    def input_shape(self, li: int, kind: str = "final") -> tuple[int, ...]:
        """Layer ``li``'s input shape, as its saved state records it."""
        return tuple(int(v) for v in self.layer(li, kind)["input_shape"])

    def weights(self, li: int) -> Tensor:
        """The finished layer's effective (pruned) weight ``(n_units, n_in)``, float32."""
        st = self.layer(li)
        return (st["weight"] * st["mask"]).float()

    def objective(self, li: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  state: str | None = None) -> Objective:
        """Layer ``li``'s objective as the run built it; ``state="dense"`` loads its state at the
        first pruning (``layer<li>_dense.pt``), ``None`` leaves it freshly built."""
        lcfg = self.cfg.layers[li]
        shape = self.input_shape(li, "dense" if state == "dense" else "final")
        n_in = int(torch.tensor(shape).prod())
        obj = build_objective(lcfg, n_in, shape, self.cfg.seed, li, torch.device(device), dtype)
        if state == "dense":
            dense = self.layer(li, "dense")
            try:
                obj.load_state_dict({k: v.to(device) for k, v in dense["objective"].items()})
            except RuntimeError as e:
                raise ValueError(f"{str(self.file(f'layer{li}_dense.pt'))!r} does not fit objective {lcfg.objective!r} "
                                 f"of this version (written by another version of structlearn?): {e}") from e
            obj.load_optimizer_state(dense["optimizer"] or {})
        return obj

    def groups(self, li: int) -> Tensor | None:
        """Unit groups of layer ``li`` (group sparse coding, pooled energy), for the pooling read-out."""
        return unit_groups(self.objective(li), self.cfg.layers[li])

    def summary(self) -> dict[str, Any]:
        return read_json(self.file("summary.json"))

    def structure(self) -> dict[str, Any] | None:
        """``structure.json`` when it exists and is of this version, else ``None``."""
        path = self.file("structure.json")
        if not path.is_file():
            return None
        s = read_json(path)
        return s if isinstance(s, dict) and s.get("version") == STRUCTURE_VERSION else None

    def kernels(self) -> dict[int, Tensor]:
        """The strict read-out's conv kernels per layer, ``{layer: (C, k, k)}`` (``structure_kernels.pt``)."""
        path = self.file("structure_kernels.pt")
        return {} if not path.is_file() else {int(k): v for k, v in load_checkpoint(path)["kernels"].items()}

    def shared(self) -> dict[int, dict[str, Tensor]]:
        """The full-coverage shared kernels per layer (``structure_kernels.pt``): ``{layer:
        {"kernels": (C, k, k) or, colour, (C, 3, k, k), "channel", "gain", "top", "left": (n,)}}``."""
        path = self.file("structure_kernels.pt")
        return {} if not path.is_file() else {int(k): v for k, v in load_checkpoint(path).get("shared", {}).items()}

