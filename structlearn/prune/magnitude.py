"""Magnitude pruning of a dense layer: masks from weight magnitudes.

- ``scope='unit'``: each unit keeps ``|w| >= threshold * max|w_unit|`` (relative threshold),
  or its own top ``density`` share of weights.
- ``scope='global'``: one threshold for the whole layer: ``|w| >= threshold * max|W|``, or
  the global top ``density`` share.

The returned mask is intersected with the existing mask: pruned weights never come back.
Target densities are met exactly (ties broken by index through ``topk``): the ranking puts
every already-pruned weight below every kept one (kept exact zeros included), so the count is
``round(density * n_in)`` per unit (``round(density * n_units * n_in)`` globally), at least 1,
as long as the existing mask keeps that many; otherwise the existing mask is returned.
"""
from __future__ import annotations

import torch
from torch import Tensor

from structlearn.objectives.base import check_choice, check_range
from structlearn.registry import Registry

PRUNERS: Registry = Registry("pruner")


def magnitude_mask(
    weight: Tensor,
    mask: Tensor | None = None,
    *,
    scope: str = "unit",
    threshold: float | None = None,
    density: float | None = None,
) -> Tensor:
    """Boolean mask ``(n_units, n_in)`` keeping the largest-magnitude weights."""
    check_choice("scope", scope, ("unit", "global"))
    if (threshold is None) == (density is None):
        raise ValueError("give exactly one of threshold (relative to the max, in [0, 1)) or density (in (0, 1])")
    if weight.ndim != 2:
        raise ValueError(f"weight must be (n_units, n_in); got {tuple(weight.shape)}")
    mask = torch.ones_like(weight, dtype=torch.bool) if mask is None else mask.bool()
    if mask.shape != weight.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(weight.shape)}")
    a = weight.detach().abs() * mask
    if threshold is not None:
        check_range("threshold", threshold, 0, 1, high_open=True)
        ref = a.amax(1, keepdim=True) if scope == "unit" else a.max()
        return mask & (a >= threshold * ref) & (a > 0)
    check_range("density", density, 0, 1, low_open=True)
    rank = torch.where(mask, a, torch.full_like(a, -1.0))  # pruned entries rank below every kept one
    if scope == "unit":
        k = max(1, round(density * weight.shape[1]))
        keep = torch.zeros_like(mask)
        keep.scatter_(1, rank.topk(k, dim=1).indices, True)
    else:
        k = max(1, round(density * weight.numel()))
        keep = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
        keep[rank.reshape(-1).topk(k).indices] = True
        keep = keep.reshape(weight.shape)
    return mask & keep


@PRUNERS.register("magnitude")
class MagnitudePruner:
    """One-shot magnitude pruning; ``__call__(layer)`` sets the layer's mask.

    ``rounds`` is accepted for the common pruner signature and must be 1 (use ``imp`` for
    several rounds).
    """

    def __init__(self, scope: str = "unit", threshold: float | None = None, density: float | None = None,
                 rounds: int = 1) -> None:
        magnitude_mask(torch.ones(1, 2), scope=scope, threshold=threshold, density=density)  # validates
        if rounds != 1:
            raise ValueError(f"prune.rounds={rounds!r}: pruner 'magnitude' is one-shot; allowed: 1 "
                             "(use method 'imp' for iterative magnitude pruning)")
        self.scope, self.threshold, self.density, self.rounds = scope, threshold, density, 1

    def __call__(self, layer, round: int = 0) -> None:
        if round != 0:
            raise ValueError(f"round={round!r} out of range; allowed: 0 (one-shot pruner)")
        layer.set_mask_(magnitude_mask(layer.weight, layer.mask, scope=self.scope,
                                       threshold=self.threshold, density=self.density))
