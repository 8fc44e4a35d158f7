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

from structlearn.params import Interval, Options, OrNone, Param, check_choice, check_range
from structlearn.prune.base import PRUNERS, Pruner

SCOPES = ("unit", "global")
DEFAULT_THRESHOLD = 0.1


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
    assert density is not None
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
class MagnitudePruner(Pruner):
    """One-shot magnitude pruning: per unit or global, a relative ``threshold`` or an exact
    ``density`` (give at most one; neither means ``threshold = 0.1``). Use ``imp`` for
    several rounds."""

    name = "magnitude"
    scope = Param("unit", Options(SCOPES), "unit: per-unit threshold or density; global: one for the layer")
    threshold = Param(None, OrNone(Interval(float, 0, 1, closed="left")), "keep |w| >= threshold * max|w|")
    density = Param(None, OrNone(Interval(float, 0, 1, closed="right")), "or keep this share of the weights")
    rounds = Param(1, Options((1,)), "magnitude pruning is one-shot; use method imp for several rounds")

    def _check_joint(self) -> None:
        if self.threshold is not None and self.density is not None:
            raise ValueError("pruner 'magnitude' takes a threshold or a density, not both; allowed: one of them")
        if self.threshold is None and self.density is None:
            self.threshold = DEFAULT_THRESHOLD

    def compute_mask(self, weight: Tensor, mask: Tensor, round: int = 0) -> Tensor:
        return magnitude_mask(weight, mask, scope=self.scope, threshold=self.threshold, density=self.density)
