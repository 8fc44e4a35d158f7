"""Coding rates and the rate reduction of MCR^2 (Yu, Chan, You, Song, Ma 2020).

Convention: ``Z`` is ``(m, d)``, one sample per row (the paper's ``Z`` is ``(d, m)``, one
sample per column: ours is its transpose). Features are meant to have unit-norm rows, as in
the paper; these functions do not normalise (the MCR^2 objective does).
``eps2`` is the squared distortion eps^2; the reference code's ``eps`` argument is the
same quantity (the published code writes ``p / (m * eps)``), so ``eps2=0.5`` there and here
are the same setting.

    R(Z, eps)        = 1/2 logdet(I_d + d / (m eps^2) Z^T Z)
    R_c(Z, eps | Pi) = sum_j tr(Pi_j) / (2 m) logdet(I_d + d / (tr(Pi_j) eps^2) Z^T Pi_j Z)
    Delta R          = R - R_c

with ``Pi_j = diag(pi_j)`` the (soft) membership of the samples in class ``j``. Both log
determinants are taken on the smaller side of the Gram identity
``logdet(I_d + c Z^T Z) = logdet(I_m + c Z Z^T)``, by a Cholesky factorisation of
``I + c G`` (always positive definite, eigenvalues >= 1), so ``m < d``, ``m > d`` and
rank-deficient ``Z`` are all stable. Natural logarithms (nats).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RateReduction:
    """Named terms of the rate reduction: scalars ``R``, ``Rc`` and ``delta_R = R - Rc``."""

    R: Tensor
    Rc: Tensor
    delta_R: Tensor


def _check_z(Z: Tensor, eps2: float) -> None:
    if Z.ndim != 2 or not Z.is_floating_point():
        raise ValueError(f"Z must be a floating (m, d) tensor of m samples by d features; got "
                         f"{tuple(Z.shape)} {Z.dtype}")
    if Z.shape[0] < 1 or Z.shape[1] < 1:
        raise ValueError(f"Z must have at least one sample and one feature; got {tuple(Z.shape)}")
    if not float(eps2) > 0:
        raise ValueError(f"eps2={eps2!r} out of range; allowed: (0, inf) (eps2 is eps^2)")


def logdet_identity_plus(G: Tensor, c: Tensor | float) -> Tensor:
    """``logdet(I + c G)`` for symmetric positive semidefinite ``G: (..., p, p)`` and
    ``c >= 0`` (scalar or shape ``(...)``), by Cholesky: ``2 sum log diag(chol)``."""
    c = torch.as_tensor(c, device=G.device, dtype=G.dtype)
    eye = torch.eye(G.shape[-1], device=G.device, dtype=G.dtype)
    A = eye + c[..., None, None] * G  # (..., p, p)
    L = torch.linalg.cholesky(A)
    return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)


class _LogdetGram(torch.autograd.Function):
    """``logdet(I + c P P^T)`` for ``P: (..., n, p)``, ``c: (...)`` constant, taken on the
    smaller side (``P^T P`` when ``p < n``), with the closed-form gradient

        d/dP logdet(I_n + c P P^T) = 2c (I_n + c P P^T)^{-1} P = 2c P (I_p + c P^T P)^{-1}

    applied by one ``cholesky_solve`` on the factor kept from the forward pass (autograd
    through ``cholesky`` takes several more batched products and triangular solves: the
    MCR^2 loss and gradient at (m, d, k) = (1000, 128, 10) went from 5.9 to 4.3 ms on one
    core; experiments/benchmarks/NOTES.md). First derivatives only."""

    @staticmethod
    def forward(ctx, P: Tensor, c: Tensor) -> Tensor:  # noqa: D102
        gram_left = P.shape[-2] <= P.shape[-1]
        G = P @ P.transpose(-1, -2) if gram_left else P.transpose(-1, -2) @ P
        A = G.mul_(c[..., None, None])
        A.diagonal(dim1=-2, dim2=-1).add_(1.0)
        L = torch.linalg.cholesky(A)
        ctx.save_for_backward(P, c, L)
        ctx.gram_left = gram_left
        return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # noqa: D102
        P, c, L = ctx.saved_tensors
        scale = (2.0 * c * grad_out)[..., None, None]
        if ctx.gram_left:  # (I_n + c P P^T)^{-1} P
            grad = torch.cholesky_solve(P, L)
        else:  # P (I_p + c P^T P)^{-1} = ((I_p + c P^T P)^{-1} P^T)^T
            grad = torch.cholesky_solve(P.transpose(-1, -2), L).transpose(-1, -2)
        return grad.mul_(scale), None


def logdet_gram(P: Tensor, c: Tensor | float) -> Tensor:
    """``logdet(I + c P P^T) = logdet(I + c P^T P)`` for ``P: (..., n, p)`` and a constant
    ``c >= 0`` (scalar or ``(...)``; no gradient flows to it); shape ``(...)``."""
    c = torch.as_tensor(c, device=P.device, dtype=P.dtype).expand(P.shape[:-2])
    return _LogdetGram.apply(P, c)


def coding_rate(Z: Tensor, eps2: float = 0.5) -> Tensor:
    """``R(Z, eps) = 1/2 logdet(I + d/(m eps^2) Z^T Z)`` for ``Z: (m, d)``; a scalar.

    Computed on the ``min(m, d)`` side. Yu et al. 2020, eq. (5)."""
    _check_z(Z, eps2)
    m, d = Z.shape
    return 0.5 * logdet_gram(Z, d / (m * float(eps2)))


def membership_from_labels(labels: Tensor, n_classes: int | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """One-hot membership ``Pi: (k, m)`` from integer labels ``(m,)`` in ``0..k-1``."""
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer (m,) tensor; got {tuple(labels.shape)} {labels.dtype}")
    k = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    return torch.nn.functional.one_hot(labels.long(), k).T.to(dtype)


def _class_rates_labels(Z: Tensor, labels: Tensor, eps2: float, n_classes: int | None) -> Tensor:
    """Hard partition: class ``j``'s rows are packed into a zero-padded ``(k, s, d)`` block
    (``s`` = largest class size; zero rows add nothing to the Gram matrix) and each class's
    log determinant is taken on its own smaller side ``min(s, d)``."""
    m, d = Z.shape
    if labels.shape != (m,):
        raise ValueError(f"labels must have shape ({m},) to match Z {tuple(Z.shape)}; got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers; got {labels.dtype}")
    labels = labels.to(device=Z.device, dtype=torch.long)
    if bool(labels.min() < 0):
        raise ValueError("labels must be >= 0")
    k = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if bool(labels.max() >= k):
        raise ValueError(f"labels must be < n_classes={k}")
    onehot = torch.nn.functional.one_hot(labels, k)  # (m, k)
    counts = onehot.sum(0)  # (k,)
    slot = (onehot.cumsum(0) * onehot).sum(1) - 1  # (m,) position of each sample inside its class
    s = int(counts.max())
    packed = torch.zeros(k, s, d, device=Z.device, dtype=Z.dtype)
    packed = packed.index_put((labels, slot), Z)  # (k, s, d), differentiable in Z
    tr = counts.to(Z.dtype)  # (k,)
    safe = torch.where(tr > 0, tr, torch.ones_like(tr))
    return tr / (2 * m) * logdet_gram(packed, d / (safe * float(eps2)))


def _class_rates_soft(Z: Tensor, Pi: Tensor, eps2: float) -> Tensor:
    """Soft partition ``Pi: (k, m)``, ``Pi[j, i]`` = membership of sample ``i`` in class ``j``."""
    m, d = Z.shape
    if Pi.ndim != 2 or Pi.shape[1] != m:
        raise ValueError(f"soft membership must have shape (k, {m}) to match Z {tuple(Z.shape)}; "
                         f"got {tuple(Pi.shape)} (pass labels (m,) or Pi (k, m), not (k, m, m))")
    Pi = Pi.to(device=Z.device, dtype=Z.dtype)
    if m <= d:  # (k, m, m): D_j^{1/2} Z Z^T D_j^{1/2}
        s = Pi.clamp_min(0).sqrt()  # (k, m)
        G = s[:, :, None] * (Z @ Z.T) * s[:, None, :]
    else:  # (k, d, d): Z^T D_j Z
        G = torch.einsum("km,md,me->kde", Pi, Z, Z)
    tr = Pi.sum(1)  # (k,)
    safe = torch.where(tr > 0, tr, torch.ones_like(tr))
    return tr / (2 * m) * logdet_identity_plus(G, d / (safe * float(eps2)))


def partition_coding_rate(
    Z: Tensor, membership: Tensor, eps2: float = 0.5, n_classes: int | None = None
) -> Tensor:
    """``R_c(Z, eps | Pi) = sum_j tr(Pi_j)/(2m) logdet(I + d/(tr(Pi_j) eps^2) Z^T Pi_j Z)``.

    ``Z: (m, d)``. ``membership`` is either integer labels ``(m,)`` (a hard partition;
    ``n_classes`` defaults to ``labels.max() + 1``, empty classes add zero) or a soft
    membership ``(k, m)`` with nonnegative entries (columns usually sum to 1). Returns a
    scalar. Yu et al. 2020, eq. (8)."""
    _check_z(Z, eps2)
    if membership.ndim == 1:
        rates = _class_rates_labels(Z, membership, eps2, n_classes)
    elif membership.ndim == 2 and membership.is_floating_point():
        rates = _class_rates_soft(Z, membership, eps2)
    else:
        raise ValueError(f"membership must be integer labels (m,) or a float soft membership (k, m); "
                         f"got {tuple(membership.shape)} {membership.dtype}")
    return rates.sum()


def rate_reduction(
    Z: Tensor, membership: Tensor, eps2: float = 0.5, n_classes: int | None = None
) -> RateReduction:
    """``Delta R = R(Z, eps) - R_c(Z, eps | Pi)`` with both terms (see the module docstring)."""
    R = coding_rate(Z, eps2)
    Rc = partition_coding_rate(Z, membership, eps2, n_classes)
    return RateReduction(R=R, Rc=Rc, delta_R=R - Rc)
