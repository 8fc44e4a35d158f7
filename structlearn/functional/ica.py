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

Relative Newton with the Hessian approximation of Picard (Ablin, Cardoso, Gramfort 2018,
"Faster independent component analysis by preconditioning with Hessian approximations",
approximation H~2). For the loss ``L(W) = -log|det W| - E sum_i log p(y_i)``, ``y = W x``,
and a relative update ``W <- (I + D) W``, the relative gradient is
``G = E[phi(y) y^T] - I`` and the Hessian, approximated as if the outputs were independent,
is block diagonal with 2x2 blocks per pair ``i != j`` and 1x1 blocks on the diagonal:

    [[h_ij, 1], [1, h_ji]] [D_ij, D_ji]^T = -[G_ij, G_ji]^T,   h_ij = E[phi'(y_i)] E[y_j^2]
    (E[phi'(y_i) y_i^2] + 1) D_ii = -G_ii

(the blocks' eigenvalues are shifted up to ``lam_min`` so that D is a descent direction), and a
backtracking line search on ``L`` takes the step. Near a separating solution H~2 is the
true Hessian, so convergence is quadratic; on 16 Laplace sources it reaches FastICA's
separation in about 9 full-batch iterations.

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
    if u.requires_grad and torch.is_grad_enabled():
        return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)
    return a.mul(-2.0).exp_().log1p_().add_(a).sub_(math.log(2.0))  # in place: 2 temporaries


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
    assert signs is not None  # _check_score: "extended" comes with signs
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
        assert signs is not None
        lp = -0.5 * u * u - signs * log_cosh(u)
    return lp.sum(1)


def infomax_score_derivative(u: Tensor, score: str = "logistic", signs: Tensor | None = None,
                             phi: Tensor | None = None) -> Tensor:
    """``phi'(u)``, elementwise (same shape as ``u``); ``phi`` (from :func:`infomax_score`,
    same layout) may be passed to save the ``tanh``. ``signs`` broadcast like ``u``'s last axis."""
    _check_score(score, signs)
    if phi is None:
        phi = infomax_score(u, score, signs)
    # In-place chains: one temporary each (fresh (n, k) buffers cost page faults on the CPU).
    if score == "logistic":  # d/du tanh(u/2) = (1 - tanh^2(u/2)) / 2
        return phi.square().neg_().add_(1.0).mul_(0.5)
    if score == "tanh":
        return phi.square().neg_().add_(1.0)
    t = phi - u  # signs * tanh(u)
    assert signs is not None
    return t.square_().neg_().add_(1.0).mul_(signs).add_(1.0)  # 1 + k (1 - tanh^2 u), t^2 = tanh^2 u


def relative_gradient(u: Tensor, phi: Tensor) -> Tensor:
    """``G = E[phi(u) u^T] - I``: (k, k), the relative gradient of the InfoMax loss
    (``natural_gradient_direction`` is ``-G``)."""
    return -natural_gradient_direction(u, phi)


def newton_direction(u: Tensor, phi: Tensor, dphi: Tensor, lam_min: float = 1e-2, G: Tensor | None = None) -> Tensor:
    """The relative Newton step ``D: (k, k)`` (update ``W <- W + D W``) under Picard's
    Hessian approximation (see the module docstring), for outputs ``u``, scores
    ``phi = phi(u)`` and ``dphi = phi'(u)``, all ``(n, k)``; ``G`` from
    :func:`relative_gradient` may be passed when already computed.

    Each 2x2 block ``[[a, 1], [1, b]]`` whose smallest eigenvalue
    ``(a + b - sqrt((a - b)^2 + 4)) / 2`` is below ``lam_min`` gets ``a`` and ``b`` raised by
    the difference (Ablin et al. 2018, section 3.3); the 1x1 blocks are clamped at ``lam_min``.
    """
    if not lam_min > 0:
        raise ValueError(f"lam_min={lam_min!r} out of range; allowed: (0, inf)")
    if G is None:
        G = relative_gradient(u, phi)  # (k, k)
    uu = u * u  # (n, k)
    var = uu.mean(0)  # (k,) E[y_j^2]
    a = dphi.mean(0)[:, None] * var[None, :]  # (k, k) h_ij
    b = a.T  # h_ji
    low = 0.5 * (a + b - torch.sqrt((a - b) ** 2 + 4.0))
    shift = (lam_min - low).clamp_min(0.0)
    a, b = a + shift, b + shift
    D = (G.T - b * G) / (a * b - 1.0)  # solves [[a, 1], [1, b]] [D_ij, D_ji] = -[G_ij, G_ji]
    diag = uu.mul_(dphi).mean(0) + 1.0  # (k,) E[phi'(y_i) y_i^2] + 1
    D.diagonal().copy_(-G.diagonal() / diag.clamp_min(lam_min))
    return D


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


def newton_line_search(x: Tensor, W: Tensor, D: Tensor, loss: Tensor, score: str, signs: Tensor | None,
                       max_halvings: int = 10, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, float] | None:
    """Backtracking on the InfoMax loss along ``W <- (I + s D) W`` (times ``mask`` when
    given), ``s = 1, 1/2, ..., 2^-max_halvings``: the first ``(W_new, u_new = x W_new^T,
    loss_new, s)`` with ``loss_new < loss``, or None when no step lowers it."""
    step = 1.0
    for _ in range(int(max_halvings) + 1):
        W_new = W + step * (D @ W)
        if mask is not None:
            W_new = W_new * mask
        u_new = x @ W_new.T
        loss_new = infomax_negative_log_likelihood(x, W_new, score, signs, u=u_new)
        if bool(loss_new < loss):
            return W_new, u_new, loss_new, step
        step *= 0.5
    return None


def infomax_newton(
    x: Tensor,
    W: Tensor,
    score: str = "tanh",
    max_iter: int = 200,
    tol: float = 1e-7,
    lam_min: float = 1e-2,
    max_halvings: int = 10,
    callback=None,
) -> tuple[Tensor, dict]:
    """Full-batch InfoMax by relative Newton steps (see the module docstring): from the start
    ``W: (k, d)`` on whitened ``x: (n, d)``, ``k <= d``, iterate ``W <- (I + s D) W`` with
    ``D`` from :func:`newton_direction` and the step ``s = 1, 1/2, 1/4, ...`` (at most
    ``max_halvings`` halvings) that first lowers :func:`infomax_negative_log_likelihood`.

    Stops when ``max |G_ij| < tol`` (the relative gradient), when no step lowers the loss
    (converged to the working precision), after ``max_iter`` iterations, or when
    ``callback(iteration, W)`` returns True. Returns ``W`` and
    ``{"n_iter", "loss", "gradient_max", "converged"}``."""
    _check_score(score, None if score != "extended" else torch.ones(1))
    if W.ndim != 2 or x.ndim != 2 or W.shape[1] != x.shape[1] or W.shape[0] > W.shape[1]:
        raise ValueError(f"need x (n, d) and W (k, d) with k <= d; got x {tuple(x.shape)}, W {tuple(W.shape)}")
    for name, v, low in (("max_iter", max_iter, 0), ("max_halvings", max_halvings, 0)):
        if int(v) != v or v < low:
            raise ValueError(f"{name}={v!r} out of range; allowed: integers >= {low}")
    u = x @ W.T  # (n, k)
    signs = extended_signs(u) if score == "extended" else None
    loss = infomax_negative_log_likelihood(x, W, score, signs, u=u)
    info = {"n_iter": 0, "loss": float(loss), "gradient_max": math.inf, "converged": False}
    for it in range(1, int(max_iter) + 1):
        if score == "extended":  # re-decide each unit's switch; compare losses under one density
            new_signs = extended_signs(u)
            if signs is None or not torch.equal(new_signs, signs):
                signs = new_signs
                loss = infomax_negative_log_likelihood(x, W, score, signs, u=u)
        phi = infomax_score(u, score, signs)
        G = relative_gradient(u, phi)
        info["gradient_max"] = grad_max = float(G.abs().max())
        if grad_max < tol:
            info["converged"] = True
            break
        D = newton_direction(u, phi, infomax_score_derivative(u, score, signs, phi), lam_min, G=G)
        found = newton_line_search(x, W, D, loss, score, signs, max_halvings)
        if found is None:  # no step lowers the loss: at the working precision's optimum
            info["converged"] = True
            break
        W, u, loss, _ = found
        info.update(n_iter=it, loss=float(loss))
        if callback is not None and callback(it, W):
            break
    return W, info


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
