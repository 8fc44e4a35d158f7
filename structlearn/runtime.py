"""Seeds, devices and dtypes: the few choices every layer needs, made explicitly.

Nothing here touches process state: no global seeding, no thread or environment changes.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def derive_seed(seed: int, *tags: Any) -> int:
    """A stable 63-bit seed for one component, from the run seed and a tag path."""
    h = hashlib.sha256(repr((seed,) + tags).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; a named CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; allowed here: auto, cpu")
    return dev


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not allowed; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]


def progress(iterable: Any = None, *, desc: str, total: int | None = None, unit: str = "it") -> Any:
    """A tqdm progress bar on stderr (redrawn at most every 2 s): ``for x in progress(xs, desc=...)``,
    or ``bar = progress(desc=..., total=n)`` then ``bar.update()``. Off when stderr is not a
    terminal and ``STRUCTLEARN_PROGRESS`` is unset, so logs and tests stay clean."""
    import os
    import sys

    from tqdm import tqdm

    show = sys.stderr.isatty() or os.environ.get("STRUCTLEARN_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, desc=desc, total=total, unit=unit, mininterval=2.0, file=sys.stderr, disable=not show,
                dynamic_ncols=True)
