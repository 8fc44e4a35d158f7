"""PNG montages of receptive fields and the tile map (matplotlib, written atomically).

Each unit's receptive field is shown on a symmetric colour scale (its own max |w| maps to
the ends of a diverging map, zero to white), so pruned weights are exactly white. Units can
be ordered, e.g. grouped by their dominant tile.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _with_tile_gaps(W: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """Insert one NaN row/column between mosaic tiles: (n, h, w) -> (n, h + gaps, w + gaps)."""
    n, h, w = W.shape
    th, tw = tile
    rows = [r for r in range(h) for r in ([r] if (r == 0 or r % th) else [-1, r])]
    cols = [c for c in range(w) for c in ([c] if (c == 0 or c % tw) else [-1, c])]
    padded = np.concatenate([W, np.full((n, h, 1), np.nan)], axis=2)
    padded = np.concatenate([padded, np.full((n, 1, w + 1), np.nan)], axis=1)
    return padded[:, rows][:, :, cols]


def filters_to_rgb(W: np.ndarray, order: np.ndarray | None = None, pad: int = 1, cmap: str = "RdBu_r",
                   tile: tuple[int, int] | None = None) -> np.ndarray:
    """``W: (n, h, w)`` -> uint8 RGB montage ``(H, W, 3)`` on a near-square grid.

    ``tile``: mosaic tile size; thin light-grey lines then mark the tile borders inside every
    unit, so a unit confined to one tile is visibly so."""
    import matplotlib

    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 3 or W.shape[0] == 0:
        raise ValueError(f"filters must be (n_units, h, w) with n_units >= 1; got {W.shape}")
    if order is not None:
        W = W[np.asarray(order)]
    scale = np.abs(W).reshape(W.shape[0], -1).max(1)
    W = W / np.where(scale > 0, scale, 1)[:, None, None]  # each unit in [-1, 1]
    if tile is not None:
        W = _with_tile_gaps(W, tile)
    n, h, w = W.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), np.inf)  # inf: separators
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = W[i]
    finite = np.isfinite(canvas)
    rgba = matplotlib.colormaps[cmap]((np.where(finite, canvas, 0.0) + 1) / 2)
    rgba[np.isinf(canvas)] = (0.25, 0.25, 0.25, 1.0)  # grey separators between units
    rgba[np.isnan(canvas)] = (0.82, 0.82, 0.82, 1.0)  # light lines between tiles
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def labels_to_rgb(labels: np.ndarray, cmap: str = "tab20") -> np.ndarray:
    import matplotlib

    labels = np.asarray(labels)
    rgba = matplotlib.colormaps[cmap]((labels % 20) / 19.0)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def upscale(img: np.ndarray, min_side: int = 512) -> np.ndarray:
    """Nearest-neighbour upscaling so small montages are visible."""
    k = max(1, int(np.ceil(min_side / max(img.shape[0], img.shape[1]))))
    return img.repeat(k, 0).repeat(k, 1)


def save_png(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 RGB array as PNG atomically."""
    import matplotlib.pyplot as plt

    from structlearn.io import atomic_write_bytes

    buf = io.BytesIO()
    plt.imsave(buf, img, format="png")
    atomic_write_bytes(path, buf.getvalue())
