"""PNG montages of receptive fields and the tile map (matplotlib, written atomically).

Each unit's receptive field is shown on a symmetric colour scale (its own max |w| maps to
the ends of a diverging map, zero to white), so pruned weights are exactly white. Units can
be ordered, e.g. grouped by their dominant tile. With ``scale``, every unit shares one fixed
scale instead: the unit is divided by its L2 norm and ``|w| / ||w|| = scale`` maps to the ends
(so a filter that concentrates its energy in few pixels grows darker, and montages of one
layer at different steps are comparable).

Colour fields ``(n, 3, h, w)`` are shown as RGB images, the way colour filters are shown since
Hoyer and Hyvarinen (2000): the unit scaled as above over all its channels, then
``rgb = (1 + w) / 2``, so zero is mid-grey, a filter's positive lobes take its own colour and its
negative lobes the opponent colour (an achromatic filter stays grey).
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


def unit_scaled(W: np.ndarray, scale: float | None) -> np.ndarray:
    """``W: (n, ...)`` in [-1, 1]: each unit over its own max |w| (``scale=None``), or over its L2
    norm times ``scale``, clipped (module docstring). All-zero units stay zero."""
    W = np.asarray(W, dtype=np.float64)
    flat = W.reshape(W.shape[0], -1)
    if scale is None:
        d = np.abs(flat).max(1)
        return W / np.where(d > 0, d, 1).reshape(-1, *([1] * (W.ndim - 1)))
    if not scale > 0:
        raise ValueError(f"scale={scale!r} out of range; allowed: > 0 (or None: each unit its own)")
    norm = np.sqrt((flat ** 2).sum(1))
    return np.clip(W / (np.where(norm > 0, norm, 1) * scale).reshape(-1, *([1] * (W.ndim - 1))), -1, 1)


def fixed_scale(W: np.ndarray, q: float = 0.999, factor: float = 2.0) -> float:
    """A layer's fixed colour scale from one snapshot: ``factor`` times the ``q``-quantile of
    ``|w| / ||w||`` over all units and weights (at initialisation, dense filters then use about
    half the range, and a filter that localises saturates only at its peak)."""
    flat = np.asarray(W, dtype=np.float64).reshape(len(W), -1)
    norm = np.sqrt((flat ** 2).sum(1, keepdims=True))
    u = np.abs(flat / np.where(norm > 0, norm, 1))
    s = float(np.quantile(u, q)) * factor if u.size else 1.0
    return min(max(s, 1e-6), 1.0)


def weights_to_rgb(W: np.ndarray, scale: float | None = None, cmap: str = "RdBu_r") -> np.ndarray:
    """A ``(n_units, n_inputs)`` weight matrix as one uint8 RGB image (a layer whose inputs are
    codes, not pixels): rows scaled as :func:`unit_scaled`; zero is white."""
    import matplotlib

    M = unit_scaled(np.asarray(W, dtype=np.float64), scale)
    if M.ndim != 2 or M.size == 0:
        raise ValueError(f"weights must be (n_units, n_inputs) and non-empty; got {M.shape}")
    return (matplotlib.colormaps[cmap]((M + 1) / 2)[..., :3] * 255).round().astype(np.uint8)


def filters_to_rgb(W: np.ndarray, order: np.ndarray | None = None, pad: int = 1, cmap: str = "RdBu_r",
                   tile: tuple[int, int] | None = None, scale: float | None = None) -> np.ndarray:
    """``W: (n, h, w)`` (or colour ``(n, 3, h, w)``) -> uint8 RGB montage ``(H, W, 3)`` on a
    near-square grid.

    ``tile``: mosaic tile size; thin light-grey lines then mark the tile borders inside every
    unit, so a unit confined to one tile is visibly so. ``scale``: one fixed colour scale for
    all units (module docstring); ``None``: each unit its own. ``cmap`` is for grayscale fields
    (colour fields are their own colours)."""
    import matplotlib

    W = np.asarray(W, dtype=np.float64)
    color = W.ndim == 4 and W.shape[1] == 3
    if not (W.ndim == 3 or color) or W.shape[0] == 0:
        raise ValueError(f"filters must be (n_units, h, w) or (n_units, 3, h, w) with n_units >= 1; got {W.shape}")
    if order is not None:
        W = W[np.asarray(order)]
    W = unit_scaled(W, scale)  # each unit in [-1, 1]
    if not color:
        W = W[:, None]
    if tile is not None:
        n0, c0 = W.shape[:2]
        W = _with_tile_gaps(W.reshape(n0 * c0, *W.shape[2:]), tile).reshape(n0, c0, *_gapped(W.shape[2:], tile))
    n, ch, h, w = W.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.full((ch, rows * (h + pad) + pad, cols * (w + pad) + pad), np.inf)  # inf: separators
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = W[i]
    level = (np.where(np.isfinite(canvas), canvas, 0.0) + 1) / 2
    rgba = np.concatenate([level.transpose(1, 2, 0), np.ones((*canvas.shape[1:], 1))], -1) if color \
        else matplotlib.colormaps[cmap](level[0])
    rgba[np.isinf(canvas[0])] = (0.25, 0.25, 0.25, 1.0)  # grey separators between units
    rgba[np.isnan(canvas[0])] = (0.82, 0.82, 0.82, 1.0)  # light lines between tiles
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def _gapped(hw: tuple[int, ...], tile: tuple[int, int]) -> tuple[int, int]:
    """The field size after :func:`_with_tile_gaps` (one line between tiles)."""
    h, w = hw
    return h + (h - 1) // tile[0], w + (w - 1) // tile[1]


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
