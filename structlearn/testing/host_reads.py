"""Counting a training step's reads of tensors into Python (each one a device sync on CUDA):
the test of the GPU-ready hot paths and ``experiments/gpu_checks.py`` count the same way.

    with counting_reads(skip=host_counters(obj)) as reads:
        obj.train_step(x)
    len(reads)      # conversions of tensors other than the host-side counters
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from torch import Tensor

CONVERSIONS = ("__float__", "__int__", "__bool__", "__index__", "item", "tolist")


def host_counters(obj: Any) -> list[Tensor]:
    """Sparse coding's step, seed and power-call counters: host tensors whatever the layer's
    device, read every step without a sync."""
    return [getattr(obj, n) for n in ("steps", "seed", "power_calls") if hasattr(obj, n)]


@contextmanager
def counting_reads(skip: Iterable[Tensor] = ()) -> Iterator[list[str]]:
    """Inside, every ``__float__/__int__/__bool__/__index__/item/tolist`` of a tensor not in
    ``skip`` appends its name to the yielded list; the methods are restored on exit."""
    skipped = {id(t) for t in skip}
    reads: list[str] = []
    originals = {name: getattr(Tensor, name) for name in CONVERSIONS}

    def wrap(name: str, fn: Any) -> Any:
        def counted(t: Tensor, *a: Any, **kw: Any) -> Any:
            if id(t) not in skipped:
                reads.append(name)
            return fn(t, *a, **kw)
        return counted

    try:
        for name, fn in originals.items():
            setattr(Tensor, name, wrap(name, fn))
        yield reads
    finally:
        for name, fn in originals.items():
            setattr(Tensor, name, fn)


__all__ = ["CONVERSIONS", "counting_reads", "host_counters"]
