"""Per-unit numbers of an image layer, one row per unit (the W&B unit table and the HTML report).

For filters ``W: (n_units, H, W)``: dominant tile and tile purity (mosaics; energy share of
the dominant tile, :mod:`structlearn.structure.locality`), participation ratio, 90%-energy
radius (:func:`~structlearn.structure.receptive_fields.energy_radius`), the Gabor fit and its
R^2 (:func:`~structlearn.structure.gabor.fit_gabor`), the shared-kernel id of the convolution
read-out (:func:`~structlearn.structure.conv.conv_from_filters`; -1: no channel explains the
unit) and the unit's density (share of non-zero weights).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from structlearn.structure.conv import conv_from_filters
from structlearn.structure.gabor import fit_gabor
from structlearn.structure.locality import participation_ratio, tile_energy, tile_purity
from structlearn.structure.receptive_fields import check_filters, energy_radius

COLUMNS = ("unit", "dominant_tile", "tile_purity", "participation_ratio", "radius90", "gabor_x0", "gabor_y0",
           "gabor_theta", "gabor_frequency", "gabor_sigma_x", "gabor_sigma_y", "gabor_r2", "kernel_id", "density")


def unit_numbers(filters: Tensor, tile_map: Tensor | None = None, *, gabor_steps: int = 100, gabor_starts: int = 2,
                 conv_kwargs: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Every column of :data:`COLUMNS` as a ``(n_units,)`` array (NaN where a quantity does not
    apply: no tile map, an empty unit; kernel id -1 when no read-out exists)."""
    check_filters(filters)
    f = filters.detach().to(torch.float32).cpu()
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
        g = fit_gabor(f, steps=gabor_steps, n_starts=gabor_starts)
        for k in ("x0", "y0", "theta", "frequency", "sigma_x", "sigma_y", "r2"):
            v = getattr(g, k).numpy().astype(np.float64)
            out[f"gabor_{k}"] = np.where(g.empty.numpy(), np.nan, v)
    except ValueError:
        for k in ("x0", "y0", "theta", "frequency", "sigma_x", "sigma_y", "r2"):
            out[f"gabor_{k}"] = nan
    try:
        ro = conv_from_filters(f, **(conv_kwargs or {}))
        out["kernel_id"] = torch.where(ro.covered, ro.channel, -1).numpy()
    except ValueError:  # no weight sharing to read (e.g. dense filters)
        out["kernel_id"] = np.full(n, -1)
    out["density"] = (f.flatten(1) != 0).double().mean(1).numpy()
    return out
