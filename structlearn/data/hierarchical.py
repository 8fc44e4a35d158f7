"""Data of known depth: the variance-component model of Karklin and Lewicki (2005, 2009).

Levels ``1..L`` with ``dims = (d_1, d_2, d_3)`` units (``d_1 = d`` sources, ``d_2``
variance components, ``d_3`` components of those). The top level ``L`` is independent unit
Laplace noise; every lower level is Laplace noise whose log-variance is a random linear
function of the level above:

    s^(L) = u^(L),                      u ~ Laplace(0, 1) i.i.d.
    s^(l) = u^(l) * exp(B_l v^(l+1) / 2),   B_l: (d_l, d_(l+1)), entries N(0, m_l^2 / d_(l+1))
    x = s^(1) A^T,                      A: (d, d), entries N(0, 1 / d)

``v^(l+1)`` is level ``l+1`` mapped through its uniform copula, ``v_j = sqrt(12) (rank_j / n -
1/2)`` over the ``n`` drawn samples (a per-unit increasing map: the same information and the
same dependence as ``s^(l+1)``, unit variance, bounded), so every moment of ``x`` stays
finite: with the raw Laplace value in the exponent the variance of ``s`` is infinite once a
coefficient of ``B`` exceeds 1 and ``x`` spans twelve decades. ``modulation = (m_1, m_2)``
(default ``(4, 16)``): the log-variance of a source has standard deviation ``m_1 / 2`` against
``pi / sqrt 6 = 1.28`` for the noise ``log|u|``; the top coupling is stronger because a layer
sees ``v`` only through noisy estimates, and the noise is worst for ``log|v|`` near zero.

What each layer can gain in principle (the total correlation ``TC`` it can remove, measured
by ``experiments/planted_depth.py`` with :mod:`structlearn.info.total_correlation` on the
true latents):

- ``L = 1``: the sources are independent; ``TC(x) = sum_i [J(s_i) - J(x_i)]`` (negentropies)
  is linear mixing, removed by one linear (ICA) layer. A second layer has nothing to gain.
- ``L = 2``: after unmixing, ``log|s_i| = log|u_i| + (B_1 v)_i / 2`` still shares the
  ``d_2`` components: ``TC(s) > 0``. A second linear layer on ``log|s|`` (reduced to ``d_2``
  principal components) recovers ``v`` up to noise, whose units are independent.
- ``L = 3``: those ``v`` are themselves variance-coupled through the ``d_3`` components, and
  a third layer on ``log|v_hat|`` removes that. The noise ``log|u|`` (variance ``pi^2 / 6``)
  is added at every level, so each level needs ``m_l^2 / 4`` well above it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_DEPTH = 3


def laplace(n: int, d: int, g: torch.Generator) -> Tensor:
    """``(n, d)`` float64 unit-scale Laplace draws (variance 2)."""
    sign = torch.where(torch.rand(n, d, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return sign * -torch.log1p(-torch.rand(n, d, generator=g, dtype=torch.float64))


def uniform_copula(s: Tensor) -> Tensor:
    """Per-unit ranks mapped to a unit-variance uniform on ``[-sqrt 3, sqrt 3]``. ``(n, k)``."""
    n = s.shape[0]
    return math.sqrt(12) * ((s.argsort(0).argsort(0).to(torch.float64) + 0.5) / n - 0.5)


def check_hierarchical(depth: int, dims: tuple[int, ...], modulation: tuple[float, ...]) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"data.depth={depth!r} out of range; allowed: 1, 2 or 3 (levels of the planted model)")
    if len(dims) < depth or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in dims):
        raise ValueError(f"data.dims={list(dims)}; allowed: at least data.depth={depth} positive integers "
                         f"(units per level, sources first), e.g. [64, 8, 2]")
    ok = len(modulation) >= depth - 1 and all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                              and math.isfinite(m) and m > 0 for m in modulation)
    if not ok:
        raise ValueError(f"data.modulation={list(modulation)}; allowed: at least data.depth - 1 = {depth - 1} finite "
                         f"numbers > 0 (level 1's from level 2 first), e.g. [4.0, 16.0]")


def hierarchical(n: int, depth: int, dims: tuple[int, ...], modulation: tuple[float, ...],
                 g: torch.Generator) -> tuple[Tensor, list[Tensor]]:
    """``n`` samples of the depth-``depth`` model (module docstring).

    Returns ``x: (n, dims[0])`` float64 and the true levels ``[s^(1), ..., s^(L)]``, each
    ``(n, dims[l])``.
    """
    check_hierarchical(depth, tuple(dims), tuple(modulation))
    levels = [laplace(n, dims[depth - 1], g)]
    for li in range(depth - 2, -1, -1):
        B = torch.randn(dims[li], dims[li + 1], generator=g, dtype=torch.float64) * (modulation[li] / math.sqrt(dims[li + 1]))
        levels.insert(0, laplace(n, dims[li], g) * torch.exp(uniform_copula(levels[0]) @ B.T / 2))
    d = dims[0]
    A = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return levels[0] @ A.T, levels
