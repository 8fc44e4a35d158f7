"""Pixel mutual information versus distance, with a shuffle null.

For a distance ``r`` the pixel pairs are ``(I[p], I[p + o])`` for the offsets ``o`` of
:func:`offsets` (``"horizontal"``: ``(0, r)``; ``"vertical"``: ``(r, 0)``; ``"all"``: every
``(dy, dx)`` of a half plane with ``round(sqrt(dy^2 + dx^2)) == r``). Pairs from all
images and positions are pooled (stationarity), and ``I(X; Y)`` of the pooled sample is
estimated with the binned plug-in estimator and the Miller-Madow correction (default; 16
bins on the pooled value range) or KSG.

The null. The same statistic on pairs whose two pixels are independent by construction
gives the estimator's law under independence at the same ``N``, marginals and binning:

- ``"shuffle"``: ``y`` permuted across the sampled pairs, i.e. each ``x`` paired with the
  partner pixel of a random other pair (another position, usually another image). Right
  when pairs are drawn i.i.d. from many positions (natural images; the default there).
- ``"independent"``: ``y`` replaced by an independently drawn pixel. Natural images: a
  uniform random pixel of the pooled images (image chosen with probability proportional
  to its size, *not* forced to differ from ``x``'s image: with few images that constraint
  would itself couple ``x`` and ``y``). Mosaics (the default there): the pixel at the same
  position ``q`` of another mosaic ``sigma(i)``, with ``sigma`` a random cyclic derangement
  of the mosaics, one per null draw and shared by all pairs of a mosaic. Pairs of one
  mosaic come in clusters that share two tiles; a mosaic-level permutation keeps that
  clustering (and each position's marginal), so under independent tiles the real and the
  null pairs have the same law. A plain permutation of pairs breaks the clustering and
  gives a null that is too narrow.

The curve reports the estimate, the null's mean and its upper ``quantile`` (0.95); an
estimate at or below the upper quantile is "inside the null". Natural images: MI falls
with distance (yet stays above the null at long range, partly because both pixels share
one image's intensity statistics). Mosaics (Yuan et al. 2021): cross-tile pairs are
independent, so their MI must sit inside the null at every distance. When ``D`` distances
are judged together, use ``quantile = 1 - alpha / D`` (Bonferroni) with ``n_null`` of a few
times ``D / alpha``; at 0.95 one of 20 independent distances falls outside by chance.
Feature maps ``(n, C, H, W)`` of a convolution-like layer go in as ``(n * C, H, W)``
(pairs within one channel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from structlearn.info.estimators import (
    KSGMutualInformation,
    bin_index,
    mutual_information_from_bins,
    summarize_null,
)
from structlearn.params import check_choice

DIRECTIONS = ("horizontal", "vertical", "all")
NULLS = ("shuffle", "independent")
PIXEL_ESTIMATORS = ("binned", "ksg")


def offsets(r: int, direction: str = "horizontal") -> Tensor:
    """Offsets ``(dy, dx)`` at distance ``r``: ``(O, 2)`` long (see module docstring)."""
    check_choice("direction", direction, DIRECTIONS)
    if not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"distance {r!r} out of range; allowed: integers >= 1")
    r = int(r)
    if direction == "horizontal":
        return torch.tensor([[0, r]])
    if direction == "vertical":
        return torch.tensor([[r, 0]])
    out = [
        (dy, dx)
        for dy in range(0, r + 1)
        for dx in range(-r, r + 1)
        if (dy > 0 or dx > 0) and round(math.hypot(dy, dx)) == r
    ]
    return torch.tensor(out)


@dataclass(frozen=True)
class MICurve:
    """MI versus distance. All fields ``(D,)``; ``mi`` and the null are NaN where
    ``n_pairs == 0`` (e.g. no within-tile pair at that distance)."""

    distances: Tensor  # (D,) long, pixels
    mi: Tensor  # (D,) nats
    null_mean: Tensor  # (D,) nats, mean of the null estimates
    null_upper: Tensor  # (D,) nats, the null's `quantile`-quantile
    n_pairs: Tensor  # (D,) long, pairs used per distance
    quantile: float

    def inside_null(self) -> Tensor:
        """``(D,)`` bool: ``mi <= null_upper`` (False where undefined)."""
        return self.mi <= self.null_upper

    def to_dict(self) -> dict:
        return {
            "distances": self.distances.tolist(),
            "mi": self.mi.tolist(),
            "null_mean": self.null_mean.tolist(),
            "null_upper": self.null_upper.tolist(),
            "n_pairs": self.n_pairs.tolist(),
            "quantile": self.quantile,
        }


@dataclass(frozen=True)
class MosaicMICurve:
    """Pairs inside one tile and pairs across two tiles, at the same distances."""

    within: MICurve
    cross: MICurve

    def to_dict(self) -> dict:
        return {"within": self.within.to_dict(), "cross": self.cross.to_dict()}


# ----------------------------------------------------------------------------- shared
def _source(values: Tensor, estimator: str, n_bins: int, value_range: tuple[float, float]) -> Tensor:
    """What pairs are read from: bin labels (binned, computed once for all pixels) or the
    float64 values (KSG). Same shape as ``values``."""
    if estimator == "binned":
        return bin_index(values.reshape(1, -1), n_bins, value_range).reshape(values.shape)
    return values.to(torch.float64)


def _mi_and_null(x: Tensor, y: Tensor, y_null: Tensor, estimator: str, n_bins: int, k: int) -> tuple[Tensor, Tensor]:
    """``x, y: (N,)``, ``y_null: (n_null, N)`` read from :func:`_source` ->
    (estimate (), null samples (n_null,))."""
    ys = torch.cat([y[None], y_null])  # (1 + n_null, N)
    if estimator == "binned":
        mi = mutual_information_from_bins(x[None], ys, n_bins)  # (1 + n_null,)
        return mi[0], mi[1:]
    # KSG on quantised pixels: ties are broken by jitter at 1e-3 of each variable's std.
    est = KSGMutualInformation(k=k, jitter=1e-3)
    mi = torch.stack([est(x, yy) for yy in ys])
    return mi[0], mi[1:]


def _validate_common(distances, n_pairs, n_null, quantile, estimator, n_bins, k, null) -> list[int]:
    check_choice("estimator", estimator, PIXEL_ESTIMATORS)
    check_choice("null", null, NULLS)
    for name, v, lo in (("n_pairs", n_pairs, 2), ("n_null", n_null, 2), ("n_bins", n_bins, 2), ("k", k, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}={v!r} out of range; allowed: integers >= {lo}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile!r} out of range; allowed: (0, 1)")
    ds = [int(r) for r in distances]
    if not ds or min(ds) < 1:
        raise ValueError(f"distances={list(distances)!r}; allowed: a non-empty list of integers >= 1")
    return ds


def _curve(distances, rows, quantile) -> MICurve:
    mi, null_mean, null_upper, n = zip(*rows)
    return MICurve(
        torch.tensor(distances), torch.stack(mi), torch.stack(null_mean), torch.stack(null_upper),
        torch.tensor(n), quantile,
    )


# ----------------------------------------------------------------------------- sampling
_PERM_MAX = 2**23


def _distinct(population: int, n: int, g: torch.Generator) -> Tensor:
    """``min(n, population)`` distinct indices of ``range(population)``, a uniformly random
    subset in random order. Small populations: ``randperm``; large ones: draws with
    replacement, de-duplicated (memory ``O(n)``)."""
    if population <= _PERM_MAX or n > population // 4:
        return torch.randperm(population, generator=g)[:n]
    c = torch.unique(torch.randint(population, (2 * n,), generator=g))
    while c.numel() < n:
        c = torch.unique(torch.cat([c, torch.randint(population, (n,), generator=g)]))
    return c[torch.randperm(c.numel(), generator=g)[:n]]


def _sample_pairs(sizes: Tensor, offs: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct pixel pairs ``(image i, p, q = p + o)`` uniformly among all pairs of all
    images (``sizes: (n_img, 2)``) at the offsets ``offs: (O, 2)``: returns ``i: (m,)``,
    ``p, q: (m, 2)``, ``m = min(n, number of pairs)``."""
    n_img = sizes.shape[0]
    o = offs.repeat_interleave(n_img, 0)  # (O * n_img, 2): block = (offset, image)
    hw = sizes.repeat(len(offs), 1)
    span = (hw - o.abs()).clamp_min(0)  # (B, 2) valid anchor rows / columns per block
    count = span[:, 0] * span[:, 1]
    cum = count.cumsum(0)
    idx = _distinct(int(cum[-1]), n, g)  # (m,)
    b = torch.searchsorted(cum, idx, right=True)  # block of each pair
    local = idx - (cum[b] - count[b])
    p = torch.stack([local // span[b, 1], local % span[b, 1]], 1) + (-o[b]).clamp_min(0)
    return b % n_img, p, p + o[b]


# ----------------------------------------------------------------------------- natural images
def _stack_images(images) -> tuple[Tensor, Tensor]:
    """List of ``(H_i, W_i)`` arrays (or one ``(n, H, W)`` array) -> zero-padded
    ``(n, H_max, W_max)`` float tensor and sizes ``(n, 2)`` long."""
    if isinstance(images, (np.ndarray, Tensor)) and images.ndim == 3:
        images = list(images)
    imgs = [torch.as_tensor(np.asarray(im) if not isinstance(im, Tensor) else im) for im in images]
    if not imgs:
        raise ValueError("no images given; need at least one (H, W) image")
    for i, im in enumerate(imgs):
        if im.ndim != 2:
            raise ValueError(f"image {i} has shape {tuple(im.shape)}; allowed: (H, W) grayscale")
    sizes = torch.tensor([im.shape for im in imgs])
    hmax, wmax = sizes.amax(0).tolist()
    out = torch.zeros(len(imgs), hmax, wmax, dtype=torch.float64, device=imgs[0].device)
    for i, im in enumerate(imgs):
        out[i, : im.shape[0], : im.shape[1]] = im.to(out.device, torch.float64)
    return out, sizes.to(out.device)


def pixel_mi_vs_distance(
    images: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
    distances: Sequence[int],
    *,
    direction: str = "horizontal",
    n_pairs: int = 100_000,
    estimator: str = "binned",
    n_bins: int = 16,
    value_range: tuple[float, float] | None = None,
    k: int = 3,
    n_null: int = 20,
    quantile: float = 0.95,
    null: str = "shuffle",
    generator: torch.Generator | None = None,
) -> MICurve:
    """MI between pixels at distance ``r`` in natural grayscale images.

    ``images``: ``(H_i, W_i)`` arrays (sizes may differ) or one ``(n, H, W)`` array, e.g.
    ``skimage.data`` images as floats in [0, 1]. For each ``r`` in ``distances``,
    ``n_pairs`` distinct pairs are drawn uniformly without replacement from all pairs of
    all images at the offsets of :func:`offsets` (all of them when there are fewer).
    Drawing with replacement would repeat pairs and bias the plug-in MI upwards.
    ``value_range`` (binned): shared bin range, default the pooled ``[min, max]`` of all
    images. ``null``: ``"shuffle"`` or ``"independent"`` (module docstring), ``n_null`` draws.
    ``generator``: ``torch.Generator`` for every draw (default: seeded with 0).
    KSG costs ``O(n_pairs^2)`` per estimate: use ``n_pairs`` of a few thousand with it.
    """
    ds = _validate_common(distances, n_pairs, n_null, quantile, estimator, n_bins, k, null)
    check_choice("direction", direction, DIRECTIONS)
    stack, sizes = _stack_images(images)
    g = torch.Generator().manual_seed(0) if generator is None else generator
    dev = stack.device
    if value_range is None:
        vals = torch.cat([stack[i, : h, : w].reshape(-1) for i, (h, w) in enumerate(sizes.tolist())])
        value_range = (float(vals.min()), float(vals.max()))
    src = _source(stack, estimator, n_bins, value_range)  # (n_img, H_max, W_max)
    weights = (sizes[:, 0] * sizes[:, 1]).double().cpu()
    rows = []
    for r in ds:
        offs = offsets(r, direction)  # (O, 2)
        i, p, q = _sample_pairs(sizes.cpu(), offs, n_pairs, g)
        m = i.numel()
        if m < 2:
            raise ValueError(f"distance {r} ({direction}) fits in no image; allowed: r < image height/width")
        i, p, q = i.to(dev), p.to(dev), q.to(dev)
        x = src[i, p[:, 0], p[:, 1]]  # (N,)
        y = src[i, q[:, 0], q[:, 1]]
        if null == "shuffle":
            perm = torch.stack([torch.randperm(m, generator=g) for _ in range(n_null)]).to(dev)
            y_null = y[perm]  # (n_null, N)
        else:
            j = torch.multinomial(weights, n_null * m, replacement=True, generator=g)
            v = torch.rand(n_null * m, 2, generator=g, dtype=torch.float64)
            pos = (v * sizes.cpu()[j]).long()  # (n_null * N, 2) uniform pixel of image j
            y_null = src[j.to(dev), pos[:, 0].to(dev), pos[:, 1].to(dev)].reshape(n_null, m)
        mi, ns = _mi_and_null(x, y, y_null, estimator, n_bins, k)
        s = summarize_null(ns, quantile)
        rows.append((mi, s.mean, s.upper, m))
    return _curve(ds, rows, quantile)


# ----------------------------------------------------------------------------- mosaics
def _cyclic_derangements(n: int, reps: int, g: torch.Generator) -> Tensor:
    """``(reps, n)`` maps ``sigma`` without fixed points: ``sigma[perm[t]] = perm[t + 1]``
    for a random permutation ``perm`` (one random ``n``-cycle per row)."""
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(reps)])  # (reps, n)
    sigma = torch.empty_like(perm)
    sigma.scatter_(1, perm, perm.roll(-1, dims=1))
    return sigma


def position_pairs(shape: tuple[int, int], offs: Tensor) -> tuple[Tensor, Tensor]:
    """All pixel pairs ``(p, p + o)`` inside an ``(H, W)`` grid, ``o`` in ``offs``:
    flat indices ``p, q`` of shape ``(P,)``."""
    h, w = shape
    ps, qs = [], []
    for dy, dx in offs.tolist():
        ys = torch.arange(max(0, -dy), h - max(0, dy))
        xs = torch.arange(max(0, -dx), w - max(0, dx))
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        ps.append((yy * w + xx).reshape(-1))
        qs.append(((yy + dy) * w + xx + dx).reshape(-1))
    return torch.cat(ps), torch.cat(qs)


def mosaic_mi_vs_distance(
    x: np.ndarray | Tensor,
    tile_map: np.ndarray | Tensor,
    distances: Sequence[int],
    *,
    direction: str = "horizontal",
    n_pairs: int = 100_000,
    estimator: str = "binned",
    n_bins: int = 16,
    value_range: tuple[float, float] | None = None,
    k: int = 3,
    n_null: int = 20,
    quantile: float = 0.95,
    null: str = "independent",
    generator: torch.Generator | None = None,
) -> MosaicMICurve:
    """MI versus distance on mosaics, split into within-tile and cross-tile pairs.

    ``x: (n, H, W)`` mosaics (any real values, e.g. tile-mean removed), ``tile_map: (H, W)``
    integer tile index per pixel. For each ``r``, the position pairs of :func:`offsets` are
    split by ``tile_map[p] == tile_map[q]``; per group, ``n_pairs`` distinct (mosaic, pair)
    combinations are drawn uniformly without replacement (all ``n * P`` when fewer). ``null="independent"`` reads ``y`` at
    the same position of another mosaic ``sigma(i)`` (module docstring); ``"shuffle"``
    permutes ``y`` across pairs.
    ``value_range``: shared bin range, default ``[min, max]`` of ``x``.
    """
    ds = _validate_common(distances, n_pairs, n_null, quantile, estimator, n_bins, k, null)
    check_choice("direction", direction, DIRECTIONS)
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    tm = torch.as_tensor(np.asarray(tile_map) if not isinstance(tile_map, Tensor) else tile_map)
    if xt.ndim != 3 or tm.shape != xt.shape[1:]:
        raise ValueError(
            f"x has shape {tuple(xt.shape)} and tile_map {tuple(tm.shape)}; allowed: x (n, H, W), tile_map (H, W)"
        )
    n, h, w = xt.shape
    if null == "independent" and n < 2:
        raise ValueError("null='independent' needs at least 2 mosaics; got 1 (use null='shuffle')")
    if max(ds) >= max(h, w) or (direction == "horizontal" and max(ds) >= w) or (direction == "vertical" and max(ds) >= h):
        raise ValueError(f"distances up to {max(ds)} do not fit in {h}x{w} mosaics; allowed: r < side")
    g = torch.Generator().manual_seed(0) if generator is None else generator
    dev = xt.device
    flat = xt.reshape(n, h * w).to(torch.float64)  # (n, H*W)
    tflat = tm.reshape(-1).cpu()
    if value_range is None:
        value_range = (float(flat.min()), float(flat.max()))
    src = _source(flat, estimator, n_bins, value_range).reshape(-1)  # (n * H * W,)
    nan = torch.full((), math.nan, dtype=torch.float64, device=dev)
    groups: dict[str, list] = {"within": [], "cross": []}
    for r in ds:
        p_all, q_all = position_pairs((h, w), offsets(r, direction))
        same = tflat[p_all] == tflat[q_all]
        for name, sel in (("within", same), ("cross", ~same)):
            p, q = p_all[sel], q_all[sel]  # (P,)
            n_pos = p.numel()
            if n_pos == 0:
                groups[name].append((nan, nan, nan, 0))
                continue
            idx = _distinct(n * n_pos, n_pairs, g)  # distinct (mosaic, position pair)
            i, c = idx // n_pos, idx % n_pos
            m = i.numel()
            row = i.to(dev) * (h * w)  # (m,) offset of mosaic i in src
            pi, qi = p[c].to(dev), q[c].to(dev)
            xs, ys = src[row + pi], src[row + qi]  # (m,)
            if null == "independent":
                j = _cyclic_derangements(n, n_null, g)[:, i].to(dev)  # (n_null, m): sigma(i)
                y_null = src[j * (h * w) + qi]
            else:
                perm = torch.stack([torch.randperm(m, generator=g) for _ in range(n_null)]).to(dev)
                y_null = ys[perm]
            mi, ns = _mi_and_null(xs, ys, y_null, estimator, n_bins, k)
            s = summarize_null(ns, quantile)
            groups[name].append((mi, s.mean, s.upper, m))
    return MosaicMICurve(_curve(ds, groups["within"], quantile), _curve(ds, groups["cross"], quantile))
