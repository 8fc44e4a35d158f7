"""Group sparse coding: sparse coding with an L2,1 penalty over fixed groups of units.

    min_{D, z}  1/(2n) sum_i ||x_i - z_i D||^2 + lam sum_g ||z_{i,g}||_2,   ||D_j|| = 1

Groups are ``group_size`` consecutive units (unit ``j`` is in group ``j // group_size``).
The penalty lets a group switch on as a whole, so units that co-occur (the same feature at
neighbouring shifts or phases) gather in one group: the subspace / pooling structure of
independent subspace analysis (Hyvaerinen and Hoyer 2000) and of group sparse coding
(Bengio et al. 2009; Yuan et al. 2021). Inference is FISTA with the group soft threshold
``z_g <- z_g max(1 - t / ||z_g||, 0)``; the dictionary update, renormalisation and dead-atom
resampling are :class:`SparseCoding`'s. ``group_size = 1`` is exactly sparse coding.

Only non-overlapping groups are offered: a topographic (overlapping-neighbourhood) penalty
has no closed-form proximal operator, so FISTA would need an inner solver.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from structlearn.functional.sparse import Prox, group_soft_threshold
from structlearn.objectives.base import OBJECTIVES
from structlearn.objectives.sparse_coding import SparseCoding
from structlearn.params import Interval, Param


def consecutive_groups(n_units: int, group_size: int, device: torch.device | None = None) -> Tensor:
    """``(n_units,)`` long: unit ``j`` belongs to group ``j // group_size``."""
    if group_size < 1 or n_units % group_size:
        raise ValueError(f"group_size={group_size} must divide n_units={n_units}; allowed: a divisor of n_units")
    return torch.arange(n_units, device=device) // group_size


def group_norms(z: Tensor, groups: Tensor, n_groups: int | None = None) -> Tensor:
    """``||z_g||_2`` per sample and group: ``(n, G)`` for ``z: (n, k)``, ``groups: (k,)``
    (``n_groups``: ``G`` when known, else read from ``groups``)."""
    if n_groups is None:
        n_groups = int(groups.max()) + 1
    sq = torch.zeros(z.shape[0], n_groups, device=z.device, dtype=z.dtype)
    return sq.index_add(1, groups, z * z).sqrt()


def shift_similarity(filters: Tensor, max_shift: int = 2) -> Tensor:
    """Max normalised cross-correlation over small shifts: ``(k, k)`` with entry

        S_ij = max_{|dy|, |dx| <= max_shift} |<f_i, shift(f_j, dy, dx)>| / (||f_i|| ||f_j||)

    for ``filters: (k, h, w)``; shifts fill with zeros. The absolute value ignores the sign
    (a filter and its negative are the same feature). All shifts are one batched product."""
    if filters.ndim != 3:
        raise ValueError(f"filters must be (k, h, w); got {tuple(filters.shape)}")
    k, h, w = filters.shape
    s = int(max_shift)
    if not 0 <= s < min(h, w):
        raise ValueError(f"max_shift={max_shift} out of range; allowed: [0, {min(h, w) - 1}]")
    f = filters / filters.flatten(1).norm(dim=1).clamp_min(torch.finfo(filters.dtype).tiny)[:, None, None]
    pad = torch.nn.functional.pad(f, (s, s, s, s))  # (k, h + 2s, w + 2s)
    win = pad.unfold(1, h, 1).unfold(2, w, 1)  # (k, 2s+1, 2s+1, h, w): every shifted copy
    shifted = win.reshape(k, -1, h * w)  # (k, S, h*w)
    corr = torch.einsum("id,jsd->sij", f.flatten(1), shifted)  # (S, k, k)
    return corr.abs().amax(0)


def within_across(similarity: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
    """Off-diagonal entries of a ``(k, k)`` similarity split into pairs of units in the same
    group and pairs in different groups: ``(within, across)``, two 1-D tensors."""
    same = groups[:, None] == groups[None, :]
    off = ~torch.eye(len(groups), dtype=torch.bool, device=similarity.device)
    return similarity[same & off], similarity[~same]


@OBJECTIVES.register("group_sparse_coding")
class GroupSparseCoding(SparseCoding):
    name = "group_sparse_coding"
    groups: Tensor  # (n_units,) long buffer
    group_size = Param(4, Interval(int, 1, None), "units per group (consecutive units); must divide n_units")
    fixed_params = (*SparseCoding.fixed_params, "group_size")

    def __init__(self, layer, **params: Any) -> None:
        super().__init__(layer, **params)
        self.register_buffer("groups", consecutive_groups(layer.n_units, self.group_size, layer.weight.device))

    def _check_joint(self, p: dict[str, Any]) -> None:
        super()._check_joint(p)
        consecutive_groups(self.layer.n_units, p["group_size"])
        if p["homeostasis"] > 0:
            raise ValueError(f"homeostasis={p['homeostasis']} with group sparse coding; allowed: 0 (its thresholds "
                             "are per atom, the group penalty has one per group)")

    @property
    def n_groups(self) -> int:
        """``G``, known without reading ``groups`` (a device sync on CUDA)."""
        return self.layer.n_units // self.group_size

    def penalty(self, z: Tensor) -> Tensor:
        """Per-sample ``sum_g ||z_g||_2``: (n,)."""
        return group_norms(z, self.groups, self.n_groups).sum(1)

    def prox(self) -> Prox:
        groups, n_groups = self.groups, self.n_groups
        return lambda v, t: group_soft_threshold(v, t, groups, n_groups)
