"""PNG montage of receptive fields beside their Gabor fits.

Each tile is one unit: the filter on the left, its fitted Gabor on the right, one column of
zeros between, on the filter's symmetric colour scale (the style of
:mod:`structlearn.viz.montage`: zero is white). Written atomically through
:func:`structlearn.viz.montage.save_png`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from structlearn.structure.gabor import GaborFit, gabor_pairs
from structlearn.viz.montage import filters_to_rgb, save_png, upscale

__all__ = ["gabor_montage_image", "save_gabor_montage"]


def gabor_montage_image(filters: Tensor, fit: GaborFit, *, max_units: int = 64) -> np.ndarray:
    """uint8 RGB montage ``(rows, cols, 3)`` of the first ``max_units`` (filter | fit) pairs."""
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units={max_units!r} out of range; allowed: integers >= 1")
    pairs = gabor_pairs(filters, fit)[:max_units]  # (n, 2, H, W), filter max |w| = 1
    n, _, h, _ = pairs.shape
    gap = torch.zeros(n, h, 1, dtype=pairs.dtype, device=pairs.device)
    tiles = torch.cat([pairs[:, 0], gap, pairs[:, 1].clamp(-1, 1)], dim=2)  # (n, H, 2W+1)
    return filters_to_rgb(tiles.cpu().double().numpy())


def save_gabor_montage(path: str | os.PathLike, filters: Tensor, fit: GaborFit, *, max_units: int = 64,
                       min_side: int = 512) -> Path:
    """Write the montage (nearest-neighbour upscaled to ``min_side``) as a PNG at ``path``."""
    img = upscale(gabor_montage_image(filters, fit, max_units=max_units), min_side)
    save_png(Path(path), img)
    return Path(path)
