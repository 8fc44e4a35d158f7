"""Export the discovered structure: a versioned JSON spec, and exporters in a registry.

``EXPORTERS.create(name)(spec, path)`` writes ``spec`` in the exporter's format. Built in:
``json`` (the spec itself) and ``onnx`` (the network, :mod:`structlearn.export.onnx`; it also
takes ``kernels=``). Plugins add more through the ``structlearn.plugins`` entry
point group (e.g. ``plugins/structlearn-nas`` adds ``optuna_space``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from structlearn.io import atomic_write_json
from structlearn.registry import Registry

from .spec import build_module, make_spec, shared_conv_stage, validate_spec  # noqa: F401


class Exporter(Protocol):
    """Protocol of an exporter (what ``EXPORTERS.create(name)`` returns): write ``spec`` (checked
    with :func:`validate_spec`) in its format to ``path``, atomically; a bad spec is a ``ValueError``.
    An exporter that writes weights also accepts ``kernels=`` (as :func:`build_module` takes them)."""

    def __call__(self, spec: dict[str, Any], path: Path) -> None: ...


EXPORTERS: Registry[Exporter] = Registry("exporter")


@EXPORTERS.register("json")
def _json_exporter_factory() -> Exporter:
    def write(spec: dict[str, Any], path: Path) -> None:
        validate_spec(spec)
        atomic_write_json(path, spec)

    return write


@EXPORTERS.register("onnx")
def _onnx_exporter_factory() -> Exporter:
    from structlearn.export.onnx import write_onnx

    return write_onnx
