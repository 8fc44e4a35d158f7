"""ICA math: the Amari index, the natural-gradient InfoMax update with its score functions
(including the extended-InfoMax switch), and the RICA loss. Rows are samples throughout:
``x: (n, d)``, unmixing ``W: (k, d)``, sources ``u = x W^T: (n, k)``.

InfoMax (Bell and Sejnowski 1995) with the natural gradient (Amari, Cichocki, Yang 1996):

    W <- W + eta (I - E[phi(u) u^T]) W,       phi(u) = -d/du log p(u)

with the score ``phi`` of the assumed source density p:

- ``logistic``: p = sigmoid', phi(u) = 2 sigmoid(u) - 1 = tanh(u / 2) (Bell-Sejnowski);
- ``tanh``:     p ~ 1 / cosh(u), phi(u) = tanh(u) (super-Gaussian);
- ``extended``: phi_i(u) = u + k_i tanh(u) with k_i = +1 (super-Gaussian) or -1
  (sub-Gaussian, p a mixture of N(+-1, 1)), chosen per unit by
  k_i = sign(E[sech^2 u_i] E[u_i^2] - E[u_i tanh u_i]) (Lee, Girolami, Sejnowski 1999).

RICA (Le, Karpenko, Ngiam, Ng 2011), overcomplete allowed:

    L(W) = lam / n sum_i sum_j g(W_j x_i) + 1 / n sum_i ||W^T W x_i - x_i||^2,
    g(u) = log cosh(u)   (a smooth L1).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

SCORES = ("logistic", "tanh", "extended")


def amari_index(W: Tensor, A: Tensor) -> Tensor:
    """Normalised Amari index of ``P = W A`` (n, n), in [0, 1]; 0 iff ``P`` is a scaled
    permutation (Amari, Cichocki, Yang 1996):

        1 / (2 n (n - 1)) [sum_i (sum_j |p_ij| / max_j |p_ij| - 1)
                         + sum_j (sum_i |p_ij| / max_i |p_ij| - 1)]
    """
    P = (W @ A).abs()
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
        raise ValueError(f"W A must be square (n, n) with n >= 2; got {tuple(P.shape)}")
    n = P.shape[0]
    rows = (P.sum(1) / P.amax(1) - 1).sum()
    cols = (P.sum(0) / P.amax(0) - 1).sum()
    return (rows + cols) / (2 * n * (n - 1))


def log_cosh(u: Tensor) -> Tensor:
    """``log cosh(u) = |u| + log1p(exp(-2|u|)) - log 2``, stable for large |u|."""
    a = u.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)


def extended_signs(u: Tensor) -> Tensor:
    """Per-unit switch ``k = sign(E[sech^2 u] E[u^2] - E[u tanh u])``: ``(k,)`` of +-1
    (+1 super-Gaussian, -1 sub-Gaussian) for ``u: (n, k)``; Lee et al. 1999, eq. (2.16)."""
    t = torch.tanh(u)
    stat = (1 - t * t).mean(0) * (u * u).mean(0) - (u * t).mean(0)
    return torch.where(stat >= 0, torch.ones_like(stat), -torch.ones_like(stat))


def _check_score(score: str, signs: Tensor | None) -> None:
    if score not in SCORES:
        raise ValueError(f"score={score!r} is not allowed; allowed: {', '.join(SCORES)}")
    if score == "extended" and signs is None:
        raise ValueError("score='extended' needs signs (k,) from extended_signs(u)")


def infomax_score(u: Tensor, score: str = "logistic", signs: Tensor | None = None) -> Tensor:
    """``phi(u) = -d/du log p(u)``: (n, k); see the module docstring for the densities."""
    _check_score(score, signs)
    if score == "logistic":
        return torch.tanh(0.5 * u)
    if score == "tanh":
        return torch.tanh(u)
    return u + signs * torch.tanh(u)


def infomax_log_density(u: Tensor, score: str = "logistic", signs: Tensor | None = None) -> Tensor:
    """Per-sample ``sum_j log p(u_j)``: (n,), up to an additive constant for ``tanh`` and
    ``extended`` (``log p = -u^2/2 - k log cosh u``)."""
    _check_score(score, signs)
    if score == "logistic":  # log sigmoid'(u) = log sigmoid(u) + log sigmoid(-u)
        lp = torch.nn.functional.logsigmoid(u) + torch.nn.functional.logsigmoid(-u)
    elif score == "tanh":
        lp = -log_cosh(u)
    else:
        lp = -0.5 * u * u - signs * log_cosh(u)
    return lp.sum(1)


def natural_gradient_direction(u: Tensor, phi: Tensor) -> Tensor:
    """``I - E[phi(u) u^T]``: (k, k) for ``u, phi: (n, k)``; the InfoMax step is
    ``W <- W + eta * direction @ W``."""
    k = u.shape[1]
    return torch.eye(k, device=u.device, dtype=u.dtype) - phi.T @ u / u.shape[0]


def infomax_negative_log_likelihood(x: Tensor, W: Tensor, score: str = "logistic", signs: Tensor | None = None,
                                    u: Tensor | None = None) -> Tensor:
    """``-1/2 logdet(W W^T) - E[sum_j log p(u_j)]`` (= ``-log|det W| - E log p(u)`` for
    square W), the quantity InfoMax descends; a scalar. ``u = x W^T`` may be passed when
    already computed."""
    if u is None:
        u = x @ W.T  # (n, k)
    return -0.5 * torch.linalg.slogdet(W @ W.T)[1] - infomax_log_density(u, score, signs).mean()


def symmetric_orthogonalize(W: Tensor) -> Tensor:
    """``(W W^T)^{-1/2} W``: (k, d) with orthonormal rows (k <= d), the orthonormal matrix
    closest to ``W`` in Frobenius norm (the symmetric decorrelation of FastICA, Hyvarinen
    1999). A random Gaussian ``W`` gives a uniformly random orthonormal start."""
    if W.ndim != 2 or W.shape[0] > W.shape[1]:
        raise ValueError(f"W must be (k, d) with k <= d; got {tuple(W.shape)}")
    V = W.double()  # a random square W has condition number ~ k: float32 is not enough
    evals, evecs = torch.linalg.eigh(V @ V.T)  # (k,), (k, k)
    if not bool(evals.min() > evals.max() * torch.finfo(V.dtype).eps * W.shape[0]):
        raise ValueError("W has linearly dependent rows; allowed: full row rank")
    return ((evecs * evals.rsqrt()) @ evecs.T @ V).to(W.dtype)


def rica_terms(x: Tensor, W: Tensor, lam: float) -> dict[str, Tensor]:
    """RICA loss and its two parts for ``x: (n, d)``, ``W: (k, d)``:
    ``sparsity = mean_i sum_j log cosh(W_j x_i)``,
    ``reconstruction = mean_i ||W^T W x_i - x_i||^2``, ``loss = lam * sparsity + reconstruction``."""
    if lam < 0:
        raise ValueError(f"lam={lam} out of range; allowed: [0, inf)")
    u = x @ W.T  # (n, k)
    r = u @ W - x  # (n, d)
    sparsity = log_cosh(u).sum(1).mean()
    reconstruction = (r * r).sum(1).mean()
    return {"loss": lam * sparsity + reconstruction, "sparsity": sparsity, "reconstruction": reconstruction}
