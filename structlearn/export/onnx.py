"""``structlearn export --format onnx``: the spec's network as an ONNX file with a dynamic batch.

:func:`structlearn.export.spec.build_module` with the discovered kernels, then
``torch.onnx.export(..., dynamo=True)`` (the ``torch.export`` path, ONNX opset of the installed
``onnxscript``); input ``x`` ``(batch, channels, H, W)`` float32, output ``y``. Needs the
``onnx`` extra (``pip install structlearn[onnx]``: onnx, onnxscript; onnxruntime to run it).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from structlearn.export.spec import build_module, validate_spec


def write_onnx(spec: dict[str, Any], path: Path, kernels: list[Any] | None = None) -> None:
    """Write ``spec`` (with ``kernels``, as :func:`build_module` takes them) to ``path`` as ONNX,
    atomically; a missing ``onnx``/``onnxscript`` is a ``ValueError`` naming the extra."""
    validate_spec(spec)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--format onnx needs onnx and onnxscript ({e.name} is missing); allowed: "
                         "pip install 'structlearn[onnx]', or another --format") from None
    net = build_module(spec, kernels).float().eval()
    h, w = spec["input"]["shape"]
    x = torch.zeros(2, spec["input"]["channels"], h, w)
    batch = torch.export.Dim("batch")
    prog = torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=({0: batch},), input_names=["x"], output_names=["y"],
                             verbose=False)
    if prog is None:  # pragma: no cover - dynamo=True always returns a program
        raise ValueError("torch.onnx.export returned no program")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        prog.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
