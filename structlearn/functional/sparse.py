"""Sparse inference: batched FISTA for the LASSO and its group (L2,1) variant.

Problem (Olshausen and Field 1996; Beck and Teboulle 2009), rows are samples:

    min_z  1/2 ||x - z D||_F^2 + lam * P(z),     x: (n, d),  D: (k, d),  z: (n, k)

with ``P(z) = ||z||_1`` (LASSO) or ``P(z) = sum_g ||z_g||_2`` over fixed groups of units
(group LASSO, L2,1). FISTA takes proximal-gradient steps of size 1/L with
``L = ||D||_2^2`` (largest squared singular value; the gradient of the smooth part is
``(z D - x) D^T``, Lipschitz in z with constant L) and the momentum
``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2``.

Everything is one batched matmul per iteration (see :func:`fista`); with ``sparse=True`` on the
CPU, the product of the (sparse) iterate with ``D`` or ``M`` comes from its non-zeros
(:func:`sparse_rows_mm`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Prox = Callable[[Tensor, "Tensor | float"], Tensor]  # prox(v, t): the prox of t * penalty at v
SPARSE_BELOW = 0.05  # fista(sparse=True): the iterate's share of non-zeros below which y W goes sparse


def sparse_rows_mm(y: Tensor, W: Tensor) -> Tensor:
    """``y @ W`` from the non-zeros of ``y``: ``y: (n, k)``, ``W: (k, m)`` -> ``(n, m)``.

    Row ``i`` is ``sum_{j: y_ij != 0} y_ij W_j``, a weighted sum of the rows of ``W``: torch's
    ``embedding_bag`` (mode ``sum``, the values as per-sample weights), ``nnz * m``
    multiply-adds and ``nnz`` rows of ``W`` read, instead of the GEMM's ``2 n k m``. It adds in
    another order than the GEMM, so the two agree to rounding, not bit for bit. Pays below a
    few percent of non-zeros (at ``(n, k, m) = (256, 16384, 576)``, one core: 6 ms at 0.5%,
    31 ms at 5%, 42 ms at 10%, against the GEMM's 50 ms; NOTES.md section 12).
    """
    rows, cols = y.nonzero(as_tuple=True)  # row-major: rows sorted
    offsets = torch.searchsorted(rows, torch.arange(y.shape[0], device=y.device))
    return torch.nn.functional.embedding_bag(cols, W, offsets, mode="sum", per_sample_weights=y[rows, cols])


def rows_mm(y: Tensor, W: Tensor, sparse: bool) -> Tensor:
    """``y @ W``: from ``y``'s non-zeros when ``sparse``, ``y`` is on the CPU and fewer than
    ``SPARSE_BELOW`` of its entries are non-zero. Elsewhere the GEMM: on CUDA counting them
    would be a host read (a device sync) per call, inside FISTA's loop."""
    if sparse and y.device.type == "cpu" and int(torch.count_nonzero(y)) < SPARSE_BELOW * y.numel():
        return sparse_rows_mm(y, W)
    return y @ W


def soft_threshold(v: Tensor, t: Tensor | float) -> Tensor:
    """prox of ``t ||.||_1``: ``sign(v) max(|v| - t, 0)`` (elementwise)."""
    return torch.sign(v) * torch.clamp(v.abs() - t, min=0)


def group_soft_threshold(v: Tensor, t: Tensor | float, groups: Tensor, n_groups: int | None = None) -> Tensor:
    """prox of ``t sum_g ||v_g||_2``: each group scaled by ``max(1 - t/||v_g||, 0)``.

    ``v: (n, k)``; ``groups: (k,)`` long, group index of each unit (0..G-1); ``n_groups``
    (``G``) when the caller knows it, else read from ``groups`` (a device sync on CUDA: FISTA
    calls this every iteration, so the objective passes it).
    """
    if n_groups is None:
        n_groups = int(groups.max()) + 1 if groups.numel() else 0
    sq = torch.zeros(v.shape[0], n_groups, device=v.device, dtype=v.dtype)
    sq.index_add_(1, groups, v * v)  # (n, G) squared group norms
    norm = sq.sqrt()[:, groups]  # (n, k) norm of each unit's group
    scale = torch.clamp(1 - t / norm.clamp_min(torch.finfo(v.dtype).tiny), min=0)
    return v * scale


def lipschitz(D: Tensor, n_iter: int = 0) -> Tensor:
    """``L = ||D||_2^2`` for ``D: (k, d)``.

    ``n_iter == 0``: exact, via the largest eigenvalue of the smaller Gram matrix.
    ``n_iter > 0``: power iteration (cheaper for very large D), deterministic start.
    """
    if n_iter <= 0:
        g = D @ D.T if D.shape[0] <= D.shape[1] else D.T @ D
        return torch.linalg.eigvalsh(g)[-1]
    v = torch.ones(D.shape[1], device=D.device, dtype=D.dtype) / D.shape[1] ** 0.5
    for _ in range(n_iter):
        v = D.T @ (D @ v)
        v = v / v.norm().clamp_min(torch.finfo(D.dtype).tiny)
    return (D @ v).pow(2).sum()


def lasso_objective(x: Tensor, D: Tensor, z: Tensor, lam: float) -> Tensor:
    """Per-sample ``1/2 ||x - z D||^2 + lam ||z||_1``: (n,)."""
    r = x - z @ D
    return 0.5 * (r * r).sum(1) + lam * z.abs().sum(1)


def fista(
    x: Tensor,
    D: Tensor,
    lam: float,
    n_iter: int = 100,
    *,
    L: Tensor | float | None = None,
    z0: Tensor | None = None,
    prox: Prox | None = None,
    tol: float = 0.0,
    sparse: bool = False,
) -> Tensor:
    """Batched FISTA for ``min_z 1/2||x - z D||^2 + lam P(z)``; returns ``z: (n, k)``.

    ``prox(v, t)`` is the proximal operator of ``t P`` (default: soft threshold, i.e.
    LASSO, ``torch.nn.functional.softshrink``). The gradient step is one fused
    ``addmm``: ``y - (y G - x D^T)/L = c + y M`` with ``M = I - G/L`` (k, k) and
    ``c = x D^T / L``; when ``k > 2d`` it goes through ``D`` instead of the Gram matrix
    (``c + y - ((y D) D^T)/L``), which is cheaper. ``tol > 0`` stops when
    ``max |z_{t+1} - z_t| <= tol * max |z_t|`` (checked every 10 iterations to avoid a
    device sync each step; per block of rows when a large CPU batch runs in blocks, see
    :func:`_block_rows`). ``sparse=True`` (CPU only; elsewhere ignored, since counting the
    non-zeros would synchronise the host every iteration): the product of the iterate ``y``
    with ``M`` or ``D`` comes from its non-zeros (:func:`sparse_rows_mm`) in every iteration
    where fewer than ``SPARSE_BELOW`` of them are non-zero; on a large dictionary that is most
    iterations (the first iterates are dense, the later ones as sparse as the codes), so one
    of the two GEMMs per iteration on the path through ``D`` nearly vanishes. Equal to the
    dense path to rounding. Measured speed-ups in experiments/benchmarks/NOTES.md.
    """
    if x.ndim != 2 or D.ndim != 2 or x.shape[1] != D.shape[1]:
        raise ValueError(f"fista needs x (n, d) and D (k, d); got {tuple(x.shape)} and {tuple(D.shape)}")
    if lam < 0:
        raise ValueError(f"lam={lam} must be >= 0")
    if L is None:
        L = lipschitz(D)
    step = 1.0 / float(L)
    thr = lam * step
    k, d = D.shape
    c = (x @ D.T).mul_(step)  # (n, k)
    use_gram = k <= 2 * d
    M = torch.eye(k, device=x.device, dtype=x.dtype).sub_(D @ D.T, alpha=step) if use_gram else None  # (k, k)
    z0 = None if z0 is None else z0.to(dtype=x.dtype)
    rows = _block_rows(x.shape[0], k, x.device)
    if rows >= x.shape[0]:
        return _fista_loop(c, D, M, step, thr, n_iter, z0, prox, tol, sparse)
    return torch.cat([_fista_loop(c[s : s + rows], D, M, step, thr, n_iter, None if z0 is None else z0[s : s + rows],
                                  prox, tol, sparse) for s in range(0, x.shape[0], rows)])


def _block_rows(n: int, k: int, device: torch.device) -> int:
    """Rows per FISTA block: samples are independent, so on the CPU a large batch runs as
    blocks of 128 rows whose (128, k) iterates stay in cache across all iterations, when
    ``M`` itself fits (k <= 512): 0.44 -> 0.39 s at (n, k, d) = (4096, 256, 144), 100
    iterations, one core. Larger k, small n, and CUDA run as one block."""
    if device.type != "cpu" or k > 512 or n <= 256:
        return n
    return 128


def _fista_loop(c: Tensor, D: Tensor, M: Tensor | None, step: float, thr: float, n_iter: int,
                z0: Tensor | None, prox: Prox | None, tol: float, sparse: bool = False) -> Tensor:
    """The FISTA iterations for one block of rows: ``c = x D^T / L`` (rows, k); ``M`` the
    ``(k, k)`` step matrix, or None to go through ``D``."""
    # Per iteration: one GEMM into a reused buffer, one soft-threshold pass, one momentum pass
    # (lerp): y = z + w (z_new - z), w = 1 + (t - 1)/t_new. Five elementwise passes before
    # (clamp, sub, sub, add and addmm's copy of c) cost a third of the time at n=4096, k=256.
    z = torch.zeros_like(c) if z0 is None else z0.clone()
    y, v = z.clone(), torch.empty_like(z)
    t = 1.0
    for i in range(n_iter):
        if M is None:
            torch.addmm(c, rows_mm(y, D, sparse), D.T, alpha=-step, out=v).add_(y)
        elif sparse:
            torch.add(c, rows_mm(y, M, True), out=v)
        else:
            torch.addmm(c, y, M, out=v)  # v = c + y M
        z_new = torch.nn.functional.softshrink(v, thr) if prox is None else prox(v, thr)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0  # python floats
        torch.lerp(z, z_new, 1.0 + (t - 1.0) / t_new, out=y)
        if tol > 0 and i % 10 == 9:
            if bool((z_new - z).abs().max() <= tol * z_new.abs().max().clamp_min(torch.finfo(c.dtype).tiny)):
                return z_new
        if z_new is v:  # an in-place prox: the old iterate's buffer takes the next GEMM
            v = z
        z, t = z_new, t_new
    return z
