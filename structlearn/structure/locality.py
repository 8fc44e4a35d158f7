"""Locality metrics of receptive fields, per unit and summarised.

``W: (n_units, H, W)`` receptive fields (pruned or not), or colour fields ``(n_units, C, H, W)``;
``tile_map: (H, W)`` long. A colour field is measured through its pixel field
:func:`pixel_field` ``sqrt(sum_c w_{c,p}^2)``, which keeps every pixel's squared weight and its
support, so energies, purities, radii and supports below are those of the pixels (the density
counts every weight).

- tile purity (Yuan et al. 2021): share of a unit's squared weight inside its dominant
  tile, ``max_t sum_{p in t} w_p^2 / sum_p w_p^2``; chance for a uniform field is
  ``1 / n_tiles``.
- shuffled purity: the same unit's purity with its weights moved to random pixels (a
  uniformly random permutation of the whole field), averaged over permutations: the chance
  level of a field with these weight magnitudes. A peaky field (a few large weights) has a
  high purity by chance alone: with 86 weights of participation ratio ~30 it is ~0.23,
  against 1/9 for a uniform field. Locality is purity above this null.
- single-tile: the unit's surviving support (non-zero weights) lies inside one tile.
- participation ratio ``PR = (sum w^2)^2 / sum w^4`` (1 = one weight, D = uniform;
  Ingrosso and Goldt 2022).
- density: share of non-zero weights.
- energy radius (issue 11, whole images): the radius of the smallest disc around the unit's
  centre of energy ``c = sum_p w_p^2 p / sum_p w_p^2`` that holds ``fraction`` (0.9) of
  ``sum_p w_p^2``, in pixels; :func:`locality_summary` reports its median as a fraction of the
  field's longer side. A local filter has a small radius whatever its position; a field spread
  over the whole image (a 32 x 32 uniform one) about 0.53.

All-zero units (fully pruned) have no receptive field: they get purity NaN and are left out
of the means, and the summary reports how many there were.
"""
from __future__ import annotations

import torch
from torch import Tensor


def pixel_field(W: Tensor) -> Tensor:
    """``(n, H, W)`` unchanged; colour ``(n, C, H, W)`` -> ``(n, H, W)`` with each pixel's norm over
    the channels ``sqrt(sum_c w_c^2)`` (squared in float64: no weight underflows to an empty pixel)."""
    if W.ndim not in (3, 4):
        raise ValueError(f"receptive fields must be (n_units, H, W) or (n_units, C, H, W); got shape {tuple(W.shape)}")
    return W if W.ndim == 3 else W.detach().double().pow(2).sum(1).sqrt().to(W.dtype)


def _check(W: Tensor, tile_map: Tensor | None = None) -> Tensor:
    """The pixel fields flattened: ``(n_units, H*W)``."""
    W = pixel_field(W)
    if W.shape[0] == 0:
        raise ValueError("no units: receptive fields have n_units = 0")
    if tile_map is not None and tuple(tile_map.shape) != tuple(W.shape[1:]):
        raise ValueError(f"tile_map shape {tuple(tile_map.shape)} != receptive field shape {tuple(W.shape[1:])}")
    return W.detach().reshape(W.shape[0], -1)


def tile_energy(W: Tensor, tile_map: Tensor) -> Tensor:
    """Squared weight per tile: (n_units, n_tiles)."""
    w2 = _check(W, tile_map) ** 2
    idx = tile_map.reshape(-1).to(W.device)
    out = torch.zeros(W.shape[0], int(idx.max()) + 1, device=W.device, dtype=W.dtype)
    return out.index_add_(1, idx, w2)


def tile_purity(W: Tensor, tile_map: Tensor) -> Tensor:
    """Per-unit tile purity: (n_units,), NaN for all-zero units."""
    e = tile_energy(W, tile_map)
    tot = e.sum(1)
    return torch.where(tot > 0, e.max(1).values / tot.clamp_min(torch.finfo(W.dtype).tiny), torch.nan)


def shuffled_purity(W: Tensor, tile_map: Tensor, n_perm: int = 8, seed: int = 0) -> Tensor:
    """Per-unit tile purity after moving each unit's weights to random pixels, averaged over
    ``n_perm`` independent permutations per unit: (n_units,), NaN for all-zero units.
    Deterministic given ``seed`` (its own CPU generator)."""
    if int(n_perm) < 1:
        raise ValueError(f"n_perm={n_perm!r} out of range; allowed: integers >= 1")
    flat = _check(W, tile_map)  # (n, P)
    n, P = flat.shape
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(int(n_perm), n, P, generator=g).argsort(-1).to(flat.device)  # (r, n, P)
    moved = flat.unsqueeze(0).expand(int(n_perm), n, P).gather(-1, perm)
    pur = tile_purity(moved.reshape(int(n_perm) * n, *tile_map.shape), tile_map).reshape(int(n_perm), n)
    return pur.mean(0)


def single_tile(W: Tensor, tile_map: Tensor) -> Tensor:
    """Per-unit bool: non-empty support inside exactly one tile: (n_units,)."""
    support = _check(W, tile_map) != 0
    idx = tile_map.reshape(-1).to(W.device)
    counts = torch.zeros(W.shape[0], int(idx.max()) + 1, device=W.device)
    counts.index_add_(1, idx, support.float())
    return (counts > 0).sum(1) == 1


def participation_ratio(W: Tensor) -> Tensor:
    """``(sum w^2)^2 / sum w^4`` per unit: (n_units,), NaN for all-zero units."""
    w2 = _check(W) ** 2
    num, den = w2.sum(1) ** 2, (w2 * w2).sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(W.dtype).tiny), torch.nan)


def energy_radius(W: Tensor, fraction: float = 0.9) -> Tensor:
    """Per-unit radius (pixels) around the centre of energy holding ``fraction`` of the squared
    weight (module docstring): (n_units,), NaN for all-zero units. One batched sort: the pixels
    by distance to each unit's centre, the energy accumulated in that order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} out of range; allowed: (0, 1]")
    flat = _check(W).double()
    H, Wd = W.shape[-2:]
    e = flat * flat  # (n, P)
    tot = e.sum(1)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=e.dtype, device=e.device),
                            torch.arange(Wd, dtype=e.dtype, device=e.device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    safe = tot.clamp_min(torch.finfo(e.dtype).tiny)
    cy, cx = (e @ ys) / safe, (e @ xs) / safe
    dist = ((ys[None] - cy[:, None]) ** 2 + (xs[None] - cx[:, None]) ** 2).sqrt()  # (n, P)
    d_sorted, order = dist.sort(1)
    cum = e.gather(1, order).cumsum(1)
    first = (cum < fraction * tot[:, None] * (1 - 1e-12)).sum(1).clamp_max(dist.shape[1] - 1)
    r = d_sorted.gather(1, first[:, None]).squeeze(1)
    return torch.where(tot > 0, r, torch.nan).to(W.dtype)


def locality_summary(W: Tensor, tile_map: Tensor | None = None) -> dict[str, float]:
    """Scalar summary: density (of all weights), participation ratio, energy radius, tile purity
    and single-tile share (of the pixel fields)."""
    flat = _check(W, tile_map)  # (n, H*W) of the pixel fields
    density = float((flat != 0).float().mean()) if W.ndim == 3 else float((W != 0).float().mean())  # every weight
    W = flat.reshape(W.shape[0], *W.shape[-2:])
    alive = (flat != 0).any(1)
    out = {
        "density": density,
        "n_units": int(W.shape[0]),
        "empty_units": int((~alive).sum()),
        "participation_ratio_mean": float(participation_ratio(W)[alive].mean()) if alive.any() else float("nan"),
    }
    if min(W.shape[1:]) > 1 and alive.any():  # image fields: how far each unit's energy spreads
        out["energy_radius90_median"] = float(energy_radius(W[alive]).median()) / max(W.shape[1:])
    if tile_map is not None:
        pur = tile_purity(W, tile_map)
        out["tile_purity_mean"] = float(pur[alive].mean()) if alive.any() else float("nan")
        out["tile_purity_median"] = float(pur[alive].median()) if alive.any() else float("nan")
        null = shuffled_purity(W, tile_map)
        out["tile_purity_shuffled_mean"] = float(null[alive].mean()) if alive.any() else float("nan")
        out["single_tile_fraction"] = float(single_tile(W, tile_map)[alive].float().mean()) if alive.any() else float("nan")
        out["chance_purity"] = 1.0 / (int(tile_map.max()) + 1)
    return out
