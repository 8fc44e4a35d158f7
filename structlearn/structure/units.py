"""Per-unit numbers of an image layer, one row per unit (the W&B unit table and the HTML report).

For filters ``W: (n_units, H, W)``: dominant tile and tile purity (mosaics; energy share of
the dominant tile, :mod:`structlearn.structure.locality`), participation ratio, 90%-energy
radius (:func:`~structlearn.structure.receptive_fields.energy_radius`), the Gabor fit and its
R^2 (:func:`~structlearn.structure.gabor.fit_gabor`), the shared-kernel id of the convolution
read-out (:func:`~structlearn.structure.conv.conv_from_filters`; -1: no channel explains the
unit) and the unit's density (share of non-zero weights). Colour filters ``(n_units, C, H, W)``:
tiles, participation ratio and radius of the pixel field
(:func:`~structlearn.structure.locality.pixel_field`), the Gabor fit and kernel id of the dominant
colour component (:mod:`structlearn.structure.color`), the density of all weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from structlearn.structure.color import color_split
from structlearn.structure.conv import conv_from_filters
from structlearn.structure.gabor import fit_gabor
from structlearn.structure.locality import participation_ratio, pixel_field, tile_energy, tile_purity
from structlearn.structure.receptive_fields import check_filters, energy_radius

COLUMNS = ("unit", "dominant_tile", "tile_purity", "participation_ratio", "radius90", "gabor_x0", "gabor_y0",
           "gabor_theta", "gabor_frequency", "gabor_sigma_x", "gabor_sigma_y", "gabor_r2", "kernel_id", "density")


def unit_numbers(filters: Tensor, tile_map: Tensor | None = None, *, gabor_steps: int = 100, gabor_starts: int = 2,
                 conv_kwargs: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Every column of :data:`COLUMNS` as a ``(n_units,)`` array (NaN where a quantity does not
    apply: no tile map, an empty unit; kernel id -1 when no read-out exists)."""
    if not (isinstance(filters, Tensor) and filters.ndim == 4):
        check_filters(filters)
    full = filters.detach().to(torch.float32).cpu()
    f = pixel_field(full)  # (n, H, W): the field itself, or the pixels' norms over colour channels
    check_filters(f)
    signed = color_split(full).spatial if full.ndim == 4 else f  # what a Gabor or a kernel can fit
    n = f.shape[0]
    nan = np.full(n, np.nan)
    out: dict[str, np.ndarray] = {"unit": np.arange(n)}
    if tile_map is not None:
        out["dominant_tile"] = tile_energy(f, tile_map).argmax(1).numpy()
        out["tile_purity"] = tile_purity(f, tile_map).numpy()
    else:
        out["dominant_tile"], out["tile_purity"] = np.full(n, -1), nan
    out["participation_ratio"] = participation_ratio(f).numpy()
    out["radius90"] = energy_radius(f).numpy()
    try:
        g = fit_gabor(signed, steps=gabor_steps, n_starts=gabor_starts)
        for k in ("x0", "y0", "theta", "frequency", "sigma_x", "sigma_y", "r2"):
            v = getattr(g, k).numpy().astype(np.float64)
            out[f"gabor_{k}"] = np.where(g.empty.numpy(), np.nan, v)
    except ValueError:
        for k in ("x0", "y0", "theta", "frequency", "sigma_x", "sigma_y", "r2"):
            out[f"gabor_{k}"] = nan
    try:
        ro = conv_from_filters(signed, **(conv_kwargs or {}))
        out["kernel_id"] = torch.where(ro.covered, ro.channel, -1).numpy()
    except ValueError:  # no weight sharing to read (e.g. dense filters)
        out["kernel_id"] = np.full(n, -1)
    out["density"] = (full.flatten(1) != 0).double().mean(1).numpy()
    return out
