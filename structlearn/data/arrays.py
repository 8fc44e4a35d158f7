"""The user's own samples: a ``.npy`` file, or a ``.npz`` archive with one array (or one
named ``x``), of shape ``(n, d)`` (vectors) or ``(n, H, W)`` (images).

Checks, each failing with an error that names the file: it exists and decodes (no pickled
objects are loaded), the array is real-valued and finite, it has two or three axes, at least
two samples, and it is not constant (over all samples, or for every sample alike: a feature
that never varies carries nothing and whitening would divide by zero on it).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz")


def is_array_file(source: str) -> bool:
    return str(source).lower().endswith(SUFFIXES)


def _pick(path: Path, names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if "x" in names:
        return "x"
    raise ValueError(f"{str(path)!r} holds arrays {names}; allowed: one array, or one named 'x'")


def load_array(source: str | Path) -> np.ndarray:
    """The checked samples as float32 ``(n, d)`` or ``(n, H, W)``."""
    path = Path(source)
    where = repr(str(path))
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{where} is not an array file; allowed suffixes: {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"array file {where} does not exist")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                names = list(arrays.files)
                a = np.asarray(arrays[_pick(path, names)])
        else:
            a = np.load(path, allow_pickle=False)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(where):
            raise
        raise ValueError(f"array file {where} is corrupt, truncated or not in numpy's format ({type(e).__name__}: {e}); "
                         f"allowed: a file written by numpy.save / numpy.savez, without pickled objects") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"array file {where} has dtype {a.dtype}; allowed: real numbers (int, uint, float)")
    if a.ndim not in (2, 3):
        raise ValueError(f"array file {where} has shape {a.shape}; allowed: (n, d) vectors or (n, H, W) images")
    if a.shape[0] < 2 or a[0].size < 2:
        raise ValueError(f"array file {where} has shape {a.shape}; allowed: at least 2 samples of at least 2 values")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"array file {where} contains NaN or Inf; allowed: finite values")
    flat = a.reshape(a.shape[0], -1)
    if (flat.max(0) == flat.min(0)).all():
        raise ValueError(f"array file {where} is constant across samples; allowed: samples that vary")
    return a


def _npy_header_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of a well-formed numeric ``.npy`` from its header (memory-mapped, not read);
    ``None`` when the file is anything else, so that :func:`load_array` names the problem."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, EOFError, ValueError):
        return None
    ok = a.ndim in (2, 3) and a.dtype.kind in "biuf" and a.shape[0] >= 2 and a[0].size >= 2
    return tuple(a.shape) if ok else None


def array_sample_shape(source: str | Path) -> tuple[int, ...]:
    """The shape of one sample (a ``.npy`` header is read without loading the data)."""
    path = Path(source)
    shape = _npy_header_shape(path) if path.suffix.lower() == ".npy" and path.is_file() else None
    return tuple((shape or load_array(path).shape)[1:])
