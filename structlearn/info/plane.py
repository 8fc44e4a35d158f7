"""The information plane of a layer: ``I(X; T)`` and ``I(T; Y)`` with the pairwise-distance
(kernel density) estimator of Kolchinsky & Tracey (2017), as Saxe et al. (2018) used it on the
information plane of Shwartz-Ziv & Tishby (2017).

Setting. ``X`` is uniform over the ``n`` samples of a data set, ``T = f(X)`` a layer's
activations ``t: (n, d)``, ``Y`` the labels ``y: (n,)``. For a deterministic ``f`` the true
``I(X; T)`` is infinite (or ``log n``) and carries no information about learning (Saxe et al.
2018; Goldfeld et al. 2019), so, as in those papers, the channel is made noisy:
``T' = T + Z`` with ``Z ~ N(0, s^2 I)``. With ``K_ij = exp(-||t_i - t_j||^2 / (2 s^2))``:

    I(X; T')  <=  -1/n sum_i log( 1/n sum_j K_ij )
    I(T'; Y)  ~=  I(X; T') - sum_c p_c * ( -1/n_c sum_{i in c} log( 1/n_c sum_{j in c} K_ij ) )

(the entropy ``H(T')`` of the Gaussian mixture replaced by its pairwise-distance upper bound,
``H(Z)`` subtracted exactly; ``I(T'; Y) = H(T') - sum_c p_c H(T' | Y = c)`` with the same
bound on every term, as in Saxe et al.'s code).

Noise scale. Saxe et al. fix ``s^2 = 0.1`` on layers of 12 units or fewer. On layers of
hundreds of units every pair is then many ``s`` apart and ``I(X; T')`` sits at ``log n`` for
every layer and epoch. Here ``s^2 = noise * tr(Cov T)``: the noise has a fixed fraction of the
layer's total variance, so the estimate is invariant to any rescaling and rotation of ``T``
(tested) and measures how the samples cluster at that relative scale.

Known bias, to state beside every plot: the values are bounds for the noisy channel at the
chosen ``noise``, not the information of the deterministic network; they saturate at
``log n`` (``I(X; T')``) and ``H(Y)`` (``I(T'; Y)``), rise as ``noise`` falls, and are
estimated from ``n`` samples (``n = 500`` in the experiments).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(t: Tensor, y: Tensor | None, noise: float) -> Tensor:
    if t.ndim != 2 or t.shape[0] < 2:
        raise ValueError(f"t has shape {tuple(t.shape)}; allowed: (n, d) activations with n >= 2")
    if not torch.isfinite(t).all():
        raise ValueError("t holds NaN or inf; allowed: finite activations")
    if y is not None and (y.ndim != 1 or y.shape[0] != t.shape[0]):
        raise ValueError(f"y has shape {tuple(y.shape)}; allowed: ({t.shape[0]},) labels")
    if not (isinstance(noise, (int, float)) and noise > 0 and math.isfinite(noise)):
        raise ValueError(f"noise={noise!r} out of range; allowed: a positive fraction of the layer's variance")
    return t.double()


def _mixture_entropy_term(sq: Tensor, s2: float) -> Tensor:
    """``-1/n sum_i log(1/n sum_j exp(-sq_ij / (2 s2)))`` for squared distances ``sq: (n, n)``."""
    n = sq.shape[0]
    return -(torch.logsumexp(-sq / (2 * s2), dim=1) - math.log(n)).mean()


def kde_information_plane(t: Tensor, y: Tensor, noise: float = 0.1) -> tuple[float, float]:
    """``(I(X; T'), I(T'; Y))`` in nats for activations ``t: (n, d)`` and labels ``y: (n,)``
    (any integer labels), with ``T' = T + N(0, noise * tr(Cov T) I)``; computed in float64.
    A layer whose activations are all equal gives ``(0, 0)``."""
    t = _check(t, y, noise)
    tc = t - t.mean(0)
    total = float(tc.pow(2).sum(1).mean())  # tr(Cov T), biased
    if total <= 1e-300:
        return 0.0, 0.0
    s2 = noise * total
    sq = torch.cdist(tc, tc).pow(2)  # (n, n)
    hx = float(_mixture_entropy_term(sq, s2))
    cond = 0.0
    for c in torch.unique(y):
        idx = (y == c).nonzero(as_tuple=True)[0]
        cond += idx.numel() / t.shape[0] * float(_mixture_entropy_term(sq[idx][:, idx], s2))
    return hx, hx - cond
