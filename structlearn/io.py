"""Atomic writes: a temp file in the target's folder, fsync, then ``os.replace``.

An interrupted write leaves the previous file intact, never a half-written one.
"""
from __future__ import annotations

import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import torch


def _open_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new temp file beside the target, created with mode 0o666 so the process umask
    applies as for any ordinary file (mkstemp would make it 0600); the umask is not touched."""
    for _ in range(100):
        tmp = str(folder / f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {str(folder)!r}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``null``; a top-level mapping gains
    ``"nonfinite": {"path.to.value": "nan" | "inf" | "-inf"}`` saying why each is null (strict
    JSON has no NaN)."""
    reasons: dict[str, str] = {}

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor) or (hasattr(o, "item") and not isinstance(o, (list, dict, str))):
            o = _jsonable(o)
        if isinstance(o, float) and not math.isfinite(o):
            reasons[path] = str(o)
            return None
        if isinstance(o, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(o)]
        return o

    out = walk(obj, "")
    if reasons and isinstance(out, dict):
        out["nonfinite"] = reasons
    return out


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON (no bare NaN: see :func:`strict_json`), written atomically."""
    text = json.dumps(strict_json(obj), indent=2, sort_keys=True, default=_jsonable, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _jsonable(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` with a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint {str(path)!r} is corrupt, truncated or not a structlearn checkpoint "
                         f"({type(e).__name__}); allowed: a file written by structlearn") from e


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
