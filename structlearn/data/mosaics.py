"""Patch mosaics: images made of independent tiles, with a ground-truth tile map.

A mosaic is a ``grid = (rows, cols)`` of tiles of size ``tile = (h, w)``; each tile is cut
from an independently drawn image at an independently drawn position, so pixels of
different tiles are statistically independent while pixels inside a tile keep natural
image statistics (Yuan et al. 2021, arXiv 2105.13905). ``tile_map[y, x]`` is the index
``r * cols + c`` of the tile that pixel ``(y, x)`` belongs to.

The control, :func:`gaussian_clone`, draws Gaussian mosaics with exactly the source's mean
and covariance and no higher-order structure (Ingrosso and Goldt 2022): locality that
survives in the clone would come from the method, not from the images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from structlearn.data.patches import sample_patches


@dataclass(frozen=True)
class Mosaics:
    """``x``: (n, rows*h, cols*w) float32, or (n, C, rows*h, cols*w) from colour images;
    ``tile_map``: (rows*h, cols*w) long (every channel of a pixel is in the pixel's tile)."""

    x: Tensor
    tile_map: Tensor

    @property
    def n_tiles(self) -> int:
        return int(self.tile_map.max()) + 1


def make_tile_map(grid: tuple[int, int], tile: tuple[int, int]) -> Tensor:
    """(rows*h, cols*w) long map of tile indices ``r * cols + c``."""
    (R, C), (h, w) = grid, tile
    idx = torch.arange(R * C).reshape(R, C)
    return idx.repeat_interleave(h, 0).repeat_interleave(w, 1)


def check_grid(grid: tuple[int, int], tile: tuple[int, int]) -> None:
    if len(grid) != 2 or len(tile) != 2 or min(grid) < 1 or min(tile) < 1:
        raise ValueError(f"grid {grid} and tile {tile} must be two positive integers each")
    if grid[0] * grid[1] < 2:
        raise ValueError(f"grid {grid} has one tile; a mosaic needs at least 2 tiles (e.g. 3x3)")


def make_mosaics(
    images: Sequence[np.ndarray | Tensor],
    grid: tuple[int, int],
    tile: tuple[int, int],
    n: int,
    generator: torch.Generator,
    remove_mean: str = "tile",
) -> Mosaics:
    """``n`` mosaics; ``remove_mean``: ``'tile'`` (each tile's own mean, which keeps tiles
    independent), ``'mosaic'`` (the whole mosaic's mean, which couples tiles weakly) or
    ``'none'``; each mean per channel for colour images ``(C, H, W)``."""
    check_grid(grid, tile)
    if remove_mean not in ("tile", "mosaic", "none"):
        raise ValueError(f"remove_mean={remove_mean!r}; allowed: tile, mosaic, none")
    (R, C), (h, w) = grid, tile
    t = sample_patches(images, (h, w), n * R * C, generator)  # (n*R*C, [ch,] h, w)
    if remove_mean == "tile":
        t = t - t.mean(dim=(-2, -1), keepdim=True)
    if t.ndim == 3:
        x = t.reshape(n, R, C, h, w).permute(0, 1, 3, 2, 4).reshape(n, R * h, C * w)
    else:
        ch = t.shape[1]
        x = t.reshape(n, R, C, ch, h, w).permute(0, 3, 1, 4, 2, 5).reshape(n, ch, R * h, C * w)
    if remove_mean == "mosaic":
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    return Mosaics(x.contiguous(), make_tile_map(grid, tile))


def gaussian_clone(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` samples of N(mean(x), Sigma_hat(x)) with *exactly* the source's moments.

    ``x: (m, *shape)`` -> ``(n, *shape)``. Standard normal draws ``g`` are first made
    exactly zero-mean and white (their own sample covariance becomes the identity on the
    source's range), then coloured with the symmetric square root of ``Sigma_hat``, so the
    clone's sample mean and covariance equal the source's up to float rounding.
    Requires ``n > d``.
    """
    shape = x.shape[1:]
    X = x.reshape(x.shape[0], -1).double()  # (m, d)
    d = X.shape[1]
    if n <= d:
        raise ValueError(f"gaussian_clone needs n > d to match the covariance exactly; got n={n}, d={d}")
    mu = X.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov(X.T, correction=1))
    evals = evals.clamp_min(0)
    g = torch.randn(n, d, generator=generator, dtype=torch.float64)
    g = g - g.mean(0)
    ge, gv = torch.linalg.eigh(torch.cov(g.T, correction=1))
    g = g @ gv @ torch.diag(ge.rsqrt()) @ gv.T  # sample covariance exactly I
    out = g @ (evecs * evals.sqrt()) @ evecs.T + mu
    return out.to(x.dtype).reshape(n, *shape)
