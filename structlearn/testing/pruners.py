"""Conformance checks for any registered pruner (the built-in ones and plugins').

A pruner is built from its class's ``example`` parameters (empty when its defaults are
valid); bad values are derived from its declared parameter table.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from structlearn.models.dense import DenseLayer
from structlearn.params import declared_params
from structlearn.prune.base import PRUNERS, Pruner
from structlearn.registry import load_plugins
from structlearn.testing.objectives import bad_values, refuses


def names() -> list[str]:
    load_plugins()
    return PRUNERS.available()


def build(name: str, **params: Any) -> Pruner:
    return PRUNERS.create(name, **{**getattr(PRUNERS.get(name), "example", {}), **params})


def layer(seed: int = 0) -> DenseLayer:
    lay = DenseLayer(64, 12, (8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    lay.set_mask_(torch.rand(12, 64, generator=torch.Generator().manual_seed(seed + 1)) < 0.9)
    return lay


def check_masks(name: str) -> None:
    """Every round returns a bool mask of the weight's shape inside the current mask, leaves the
    weight untouched, is deterministic, and ``pruner(layer, round)`` applies it (pruned weights 0)."""
    p = build(name)
    lay = layer()
    for r in range(p.rounds):
        w, m = lay.weight.detach().clone(), lay.mask.clone()
        new = p.compute_mask(lay.weight.detach(), lay.mask, r)
        assert new.dtype == torch.bool and new.shape == w.shape
        assert not bool((new & ~m).any()), "a pruner may only remove weights"
        assert torch.equal(lay.weight.detach(), w) and torch.equal(lay.mask, m), "compute_mask must not change its inputs"
        assert torch.equal(new, build(name).compute_mask(w, m, r)), "compute_mask must be deterministic"
        p(lay, r)
        assert torch.equal(lay.mask, new) and bool((lay.weight[~new] == 0).all())


def check_rounds(name: str) -> None:
    """A round outside ``[0, rounds)`` is refused with the allowed range."""
    p = build(name)
    refuses(lambda: p(layer(), p.rounds), "round")
    refuses(lambda: p(layer(), -1), "round")


def check_params(name: str) -> None:
    """Every declared parameter refuses bad values with an error naming it; unknown names too."""
    table = declared_params(PRUNERS.get(name))
    assert table, f"pruner {name!r} declares no parameters"
    for k, prm in table.items():
        for bad in bad_values(prm.constraint):
            refuses(lambda: build(name, **{k: bad}), k)
    refuses(lambda: build(name, not_a_parameter=1), "no parameter")


CHECKS: dict[str, Callable[[str], None]] = {"masks": check_masks, "rounds": check_rounds, "params": check_params}


def check_pruner(name: str) -> None:
    for check in CHECKS.values():
        check(name)
