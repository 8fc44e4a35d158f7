"""Chunked nearest-neighbour search: bounded memory, no N x N matrix.

Queries are processed in blocks of ``chunk`` rows against all ``N`` reference points, so
the largest temporary is ``(chunk, N)``; ``chunk`` defaults to ``max(32, max_elements // N)``
(``max_elements = 2**20``: 8 MiB per float64 block, which stays in the CPU's cache; 64 MiB
blocks made the distance product 3-4x slower at N = 20,000), except in the euclidean k-NN
search for ``d > 8``, whose product runs in cache-sized column slices (below). The device is the input's
(CPU or CUDA).

Distances:

- ``"euclidean"``: ``||a - b||_2``. For ``d <= 8`` it is computed directly
  (``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")``), which is exact up to
  rounding even for very close points; for ``d > 8`` through the matrix product
  ``|a|^2 + |b|^2 - 2 a.b`` on mean-centred data (BLAS speed; absolute error of the squared
  distance about ``1e-16 |a|^2`` in float64, negligible against the typical
  neighbour distance in 9+ dimensions). The k-NN search ranks ``|b|^2 - 2 a.b`` (one
  product; ``|a|^2`` is constant along a row) and takes square roots of the k winners only.
  Its product runs in column slices of ``COL_BLOCK`` whose group minima (the first level of
  :func:`smallest_k`) are taken while in cache, so its row blocks are sized by memory
  (``min(512, 2**24 // N)`` rows of float32) rather than by the cache.
- ``"max"``: the max-norm ``max_j |a_j - b_j|`` (``torch.cdist(p=inf)``, exact).

A point is never its own neighbour: the query's own column is set to ``+inf``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

METRICS = ("euclidean", "max")
DEFAULT_MAX_ELEMENTS = 2**20
MIN_CHUNK_ROWS = 32
SELECT_GROUP = 64
EXTRA_CANDIDATES = 2
COL_BLOCK = 1024  # columns per product slice in the k-NN search (a multiple of SELECT_GROUP)
PRODUCT_MAX_ELEMENTS = 2**24  # the k-NN product's (rows, N) float32 block: at most 64 MiB
PRODUCT_MAX_ROWS = 512
_DIRECT_MAX_DIM = 8


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS)}")


def chunk_rows(n_ref: int, chunk_size: int | None, max_elements: int = DEFAULT_MAX_ELEMENTS) -> int:
    """Query rows per block: ``chunk_size`` if given, else ``max(32, max_elements // n_ref)``
    (fewer rows than 32 would turn the distance product into matrix-vector work)."""
    if chunk_size is None:
        return max(MIN_CHUNK_ROWS, max_elements // max(n_ref, 1))
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size!r} out of range; allowed: integers >= 1 or None")
    return int(chunk_size)


def pairwise_distance(a: Tensor, b: Tensor, metric: str = "euclidean") -> Tensor:
    """``a: (c, d)``, ``b: (N, d)`` -> ``(c, N)`` distances in ``metric``."""
    if metric == "max":
        return torch.cdist(a, b, p=math.inf)
    if a.shape[-1] <= _DIRECT_MAX_DIM:
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def prepare(z: Tensor, metric: str) -> Tensor:
    # Centring changes no distance and keeps |a|^2 small for the matrix-product route.
    if metric == "euclidean" and z.shape[-1] > _DIRECT_MAX_DIM:
        return z - z.mean(0, keepdim=True)
    return z


def mask_self(dist: Tensor, start: int) -> Tensor:
    """Set ``dist[i, start + i] = inf`` (the query's own column) in place."""
    rows = torch.arange(dist.shape[0], device=dist.device)
    dist[rows, rows + start] = math.inf
    return dist


def smallest_k(dist: Tensor, k: int, group: int = SELECT_GROUP) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest values of each row, ascending, and their column indices:
    ``(c, N) -> ((c, k), (c, k))``; exact.

    Two-level selection: split each row into groups of ``group`` columns and take each
    group's minimum (a vectorised reduction). The k smallest row values lie in the k groups
    with the smallest minima (the k smallest minima are k distinct row values, so they bound
    the row's k-th smallest from above, and a group holding any of the k smallest has its
    minimum below that bound), so one ``topk`` over ``k * group`` candidates (plus the
    ``N mod group`` leftover columns) finishes it. ``torch.topk`` over the whole row costs
    about 1.5 ns per entry on one CPU core; this costs the min pass (~0.2 ns) plus small
    ``topk`` calls. Ties give the same values as ``topk``."""
    c, n = dist.shape
    n_groups = n // group
    if n_groups <= 4 * k:
        out = torch.topk(dist, k, dim=1, largest=False, sorted=True)
        return out.values, out.indices
    return smallest_k_of_groups(dist, group_minima(dist, group), k, group)


def group_minima(dist: Tensor, group: int = SELECT_GROUP, out: Tensor | None = None) -> Tensor:
    """Each row's minimum over consecutive groups of ``group`` columns (the ``N mod group``
    leftover columns left out): ``(c, N) -> (c, N // group)``."""
    n_groups = dist.shape[1] // group
    return torch.amin(dist[:, : n_groups * group].unflatten(1, (n_groups, group)), 2, out=out)


def smallest_k_of_groups(dist: Tensor, minima: Tensor, k: int, group: int = SELECT_GROUP) -> tuple[Tensor, Tensor]:
    """:func:`smallest_k` given the group minima ``(c, N // group)`` of ``dist``
    (:func:`group_minima`; needs ``N // group >= k``)."""
    c, n = dist.shape
    n_groups = minima.shape[1]
    body = dist[:, : n_groups * group].unflatten(1, (n_groups, group))  # (c, G, group), a view
    best = torch.topk(minima, k, dim=1, largest=False).indices  # (c, k)
    cand = body.gather(1, best[:, :, None].expand(c, k, group)).flatten(1)  # (c, k * group)
    cand = torch.cat([cand, dist[:, n_groups * group :]], 1)
    vals, pos = torch.topk(cand, k, dim=1, largest=False, sorted=True)
    # the winners' columns: a candidate's group and offset, or a leftover column
    in_groups = pos < k * group
    grp = best.gather(1, (pos // group).clamp_max_(k - 1))
    cols = torch.where(in_groups, grp * group + pos % group, pos - k * group + n_groups * group)
    return vals, cols


def _exact_sq(a: Tensor, zc: Tensor, idx: Tensor) -> Tensor:
    """``|a_i - z_idx[i, j]|^2`` summed directly (no cancellation): ``(c, d), (c, m) -> (c, m)``."""
    return (a[:, None, :] - zc[idx]).square_().sum(-1)


def _scores_and_minima(lhs: Tensor, rhs: Tensor, start: int, out: Tensor, minima: Tensor) -> Tensor:
    """``out = lhs @ rhs`` ``(c, N)`` with each query's own column (``start + i``) set to
    ``+inf``, and its group minima (:func:`group_minima`) in ``minima``. The product runs in
    column slices of ``COL_BLOCK`` and each slice's minima are taken while it is still in
    cache: the separate minimum pass read the whole block back from memory (at N = 20,000,
    d = 64, one core: product and minima 1.21 -> 0.97 s; NOTES.md section 18)."""
    c, n = out.shape
    for j0 in range(0, n, COL_BLOCK):
        j1 = min(j0 + COL_BLOCK, n)
        part = out[:, j0:j1]
        torch.mm(lhs, rhs[:, j0:j1], out=part)
        i0, i1 = max(j0 - start, 0), min(j1 - start, c)
        if i1 > i0:  # the rows whose own column falls in this slice
            rows = torch.arange(i0, i1, device=out.device)
            part[rows, rows + (start - j0)] = math.inf
        g0, g1 = j0 // SELECT_GROUP, min(j1 // SELECT_GROUP, minima.shape[1])
        if g1 > g0:
            group_minima(part[:, : (g1 - g0) * SELECT_GROUP], SELECT_GROUP, out=minima[:, g0:g1])
    return out


def _knn_sq_mm(zc: Tensor, k: int, step: int) -> Tensor:
    """Squared k-NN distances ``(N, k)`` for ``d > 8``: rank ``|b|^2 - 2 a.b`` (one product
    per block, in column slices with their group minima when N is large:
    :func:`_scores_and_minima`; ``|a|^2`` is constant along a row) and sum the winners' squared differences
    directly.

    Float64 input ranks in float32 (half the product's time and memory traffic) and stays
    exact: it keeps ``m = k + EXTRA_CANDIDATES`` candidates, whose float32 scores ``v``
    differ from the float64 ones by at most ``delta = 2 (d + 5) u (|a| + max|b|)^2``
    (``u = 2^-24``, the dot-product error bound with Cauchy-Schwarz, doubled). Any point
    outside the candidates is then at squared distance ``>= |a|^2 + v_m - delta``; a row
    whose exact k-th candidate is not below that bound is ranked again in float64."""
    n, d = zc.shape
    m = min(k + EXTRA_CANDIDATES, n - 1)
    sq = (zc * zc).sum(1)  # (N,)
    low = zc.dtype == torch.float64
    work = zc.float() if low else zc
    # One GEMM per block, no bias pass: [a, 1] @ [-2 z^T; |z|^2] = |b|^2 - 2 a.b
    lhs = torch.cat([work, torch.ones_like(work[:, :1])], 1)  # (N, d + 1)
    rhs = torch.cat([-2.0 * work.T, ((work * work).sum(1) if low else sq)[None, :]], 0)  # (d + 1, N)
    if low:
        delta = 2.0 * (d + 5) * 2.0**-24 * (sq.sqrt() + sq.max().sqrt()) ** 2  # (N,)
    buf = torch.empty(min(step, n), n, device=zc.device, dtype=work.dtype)  # reused: no page faults per block
    fused = n // SELECT_GROUP > 4 * (m if low else k)  # else smallest_k takes one topk per row
    minima = torch.empty(min(step, n), n // SELECT_GROUP, device=zc.device, dtype=work.dtype) if fused else None
    out = []
    for s in range(0, n, step):
        a = zc[s : s + step]  # (c, d)
        c = a.shape[0]
        if minima is None:
            part = mask_self(torch.mm(lhs[s : s + step], rhs, out=buf[:c]), s)  # (c, N)
            vals, idx = smallest_k(part, m if low else k)
        else:
            part = _scores_and_minima(lhs[s : s + step], rhs, s, buf[:c], minima[:c])
            vals, idx = smallest_k_of_groups(part, minima[:c], m if low else k)
        if not low:
            out.append((vals + sq[s : s + step, None]).clamp_min_(0.0))
            continue
        best = _exact_sq(a, zc, idx).sort(1).values[:, :k]  # (c, k)
        bound = sq[s : s + step] + vals[:, -1].double() - delta[s : s + step]
        bad = torch.nonzero(best[:, -1] > bound).flatten()
        if bad.numel():  # rare: a near-tie at the float32 resolution; rank those rows in float64
            rows = bad + s
            part64 = torch.addmm(sq[None, :], zc[rows], zc.T, alpha=-2.0)
            part64[torch.arange(rows.numel()), rows] = math.inf
            best[bad] = _exact_sq(zc[rows], zc, smallest_k(part64, m)[1]).sort(1).values[:, :k]
        out.append(best)
    return torch.cat(out, 0)


def knn_distances(
    z: Tensor,
    k: int,
    metric: str = "euclidean",
    chunk_size: int | None = None,
) -> Tensor:
    """Distances to the ``k`` nearest other points: ``z: (N, d)`` -> ``(N, k)``, ascending.

    Memory: one ``(chunk, N)`` block at a time; :func:`smallest_k` keeps the ``k`` smallest.
    """
    check_metric(metric)
    n = z.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} out of range; allowed: 1 <= k < N = {n}")
    zc = prepare(z, metric)
    step = chunk_rows(n, chunk_size)
    if metric == "euclidean" and z.shape[-1] > _DIRECT_MAX_DIM:
        if chunk_size is None:  # the product runs in column slices: more rows per block re-read the points less
            step = min(PRODUCT_MAX_ROWS, max(MIN_CHUNK_ROWS, PRODUCT_MAX_ELEMENTS // n))
        return _knn_sq_mm(zc, k, step).sqrt_()
    out = [smallest_k(mask_self(pairwise_distance(zc[s : s + step], zc, metric), s), k)[0] for s in range(0, n, step)]
    return torch.cat(out, 0)


def count_within(
    z: Tensor,
    radius: Tensor,
    metric: str = "euclidean",
    strict: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """``n_i = #{j != i : dist(z_i, z_j) < radius_i}`` (``<=`` if not ``strict``).

    ``z: (N, d)``, ``radius: (N,)`` -> ``(N,)`` long. One ``(chunk, N)`` block at a time.
    """
    check_metric(metric)
    n = z.shape[0]
    zc = prepare(z, metric)
    step = chunk_rows(n, chunk_size)
    out = []
    for s in range(0, n, step):
        d = mask_self(pairwise_distance(zc[s : s + step], zc, metric), s)  # (c, N)
        r = radius[s : s + step, None]  # (c, 1)
        out.append((d < r if strict else d <= r).sum(1))
    return torch.cat(out, 0)
