"""Pooling read-out: groups of units with one shared kernel at nearby positions -> a pooling stage.

Input: the conv read-out's per-unit assignment (``channel``, ``out_y``, ``out_x`` on the conv's
output grid, ``-1`` for units no channel explains) and a group id per unit (for instance group
sparse coding's groups, unit ``i`` in group ``i // group_size``). A group is *pure* when it has at
least two explained units, all of one channel, whose output positions span at most
``max_extent`` cells per axis. A pure group is one pooling window: the pool kernel per axis is the
most common span ``max - min + 1`` over pure groups, and the pool stride per axis is the most
common gap between neighbouring window anchors (``min`` position) of one channel (the kernel size
when no channel has two windows). Group sparse coding: Hyvarinen and Hoyer 2001; Kavukcuoglu et
al. 2009 (learning invariant features through topographic filter maps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["PoolSpec", "pooling_from_groups"]


@dataclass(frozen=True)
class PoolSpec:
    kernel_size: tuple[int, int]  # pool window (rows, columns) in conv output cells
    stride: tuple[int, int]  # pool stride (rows, columns)
    n_groups: int  # groups with at least one explained unit
    n_pure: int  # groups that are one channel within max_extent
    purity: float  # n_pure / n_groups

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists)."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


def _mode(values: Tensor, default: int) -> int:
    """Most common value (smallest on ties) of a 1-D long tensor; ``default`` when empty."""
    if values.numel() == 0:
        return default
    uniq, counts = torch.unique(values, return_counts=True)
    return int(uniq[counts.argmax()])


def pooling_from_groups(
    channel: Tensor,
    out_y: Tensor,
    out_x: Tensor,
    groups: Tensor,
    *,
    max_extent: int = 4,
) -> PoolSpec | None:
    """Pooling stage implied by unit groups (module docstring); ``None`` if no group is pure.

    Args:
        channel, out_y, out_x: ``(n_units,)`` long; ``channel < 0`` marks unexplained units.
        groups: ``(n_units,)`` integer group id per unit.
        max_extent: the largest span (cells per axis) a pooling window may have, ``>= 1``.
    """
    n = channel.numel()
    for name, t in (("channel", channel), ("out_y", out_y), ("out_x", out_x), ("groups", groups)):
        if t.ndim != 1 or t.numel() != n:
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
        if t.is_floating_point():
            raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
    if isinstance(max_extent, bool) or not isinstance(max_extent, int) or max_extent < 1:
        raise ValueError(f"max_extent={max_extent!r} out of range; allowed: integers >= 1")
    ok = channel >= 0
    if not bool(ok.any()):
        return None
    g = torch.unique(groups[ok], return_inverse=True)[1]  # (n_ok,) dense group ids
    ch, yy, xx = channel[ok], out_y[ok], out_x[ok]
    n_groups = int(g.max()) + 1
    size = torch.bincount(g, minlength=n_groups)  # (G,)
    big = torch.iinfo(torch.long).max

    def gmin(t: Tensor) -> Tensor:
        return torch.full((n_groups,), big, dtype=t.dtype, device=t.device).scatter_reduce(0, g, t, "amin")

    def gmax(t: Tensor) -> Tensor:
        return torch.full((n_groups,), -big, dtype=t.dtype, device=t.device).scatter_reduce(0, g, t, "amax")

    ext_y = gmax(yy) - gmin(yy) + 1  # (G,)
    ext_x = gmax(xx) - gmin(xx) + 1
    one_channel = gmax(ch) == gmin(ch)
    pure = (size >= 2) & one_channel & (ext_y <= max_extent) & (ext_x <= max_extent)
    n_pure = int(pure.sum())
    if n_pure == 0:
        return None
    ky, kx = _mode(ext_y[pure], 1), _mode(ext_x[pure], 1)
    anchor_c = gmin(ch)[pure]  # (G_pure,)
    anchor_y, anchor_x = gmin(yy)[pure], gmin(xx)[pure]
    gaps_y, gaps_x = [], []
    for c in torch.unique(anchor_c):
        sel = anchor_c == c
        uy, ux = torch.unique(anchor_y[sel]), torch.unique(anchor_x[sel])
        gaps_y.append(uy.diff())
        gaps_x.append(ux.diff())
    sy = _mode(torch.cat(gaps_y), ky)
    sx = _mode(torch.cat(gaps_x), kx)
    return PoolSpec(kernel_size=(ky, kx), stride=(sy, sx), n_groups=n_groups, n_pure=n_pure,
                    purity=n_pure / n_groups)
