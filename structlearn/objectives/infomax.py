"""InfoMax ICA (Bell and Sejnowski 1995) with the natural gradient (Amari 1996) on a dense layer.

The layer's effective weight ``W: (k, d)`` is the unmixing matrix, ``u = x W^T``. On
whitened data ``x: (n, d)`` each step is

    G = I - E[phi(u) u^T],     W <- (W + eta' G W) * mask,     eta' = eta * min(1, max_step / (eta ||G||_2))

with the score ``phi`` chosen by ``score`` (``logistic``, ``tanh`` or ``extended``; see
:mod:`structlearn.functional.ica`; ``extended`` re-decides each unit's super/sub-Gaussian
switch on every batch, Lee et al. 1999). ``max_step`` caps the spectral norm of
``eta' G`` so that ``I + eta' G`` stays well conditioned early in training, when the
outputs are far from the score's scale (the step is unchanged once ``||G||_2`` is small).
The spectral norm, not the Frobenius norm: minibatch noise adds about ``k / sqrt(batch)``
to ``||G||_F`` (about 20 for k = 576 at batch 1024) but only ``2 sqrt(k / batch)`` to
``||G||_2``, so a Frobenius cap shrinks the step of large layers to a crawl (on 3x3 mosaics
of 8x8 tiles, 576 units, batch 1024, 1500 steps: step 0.02 and tile purity 0.88 after
pruning |w| < 0.1 max|w|, against step 0.15 and purity 0.99 with the spectral cap).

``method="newton"`` replaces the natural-gradient step by one relative Newton step under
Picard's Hessian approximation (Ablin, Cardoso, Gramfort 2018; see
:func:`structlearn.functional.ica.newton_direction`) with a backtracking line search on the
batch's negative log-likelihood: ``W <- (W + s D W) * mask`` for the first ``s`` in
``1, 1/2, ..., 2^-max_halvings`` that lowers it (no step when none does); ``lr`` and
``max_step`` are not used. It converges in tens of full-batch steps instead of hundreds
(:func:`structlearn.functional.ica.infomax_newton` is the same iteration as a solver), but its
Hessian approximation assumes nearly independent outputs, so it suits large batches.

Start: the layer's random weight is replaced by the nearest matrix with orthonormal rows,
``(W W^T)^{-1/2} W`` (a uniformly random orthonormal start, as FastICA's symmetric
decorrelation). The natural gradient is equivariant, so convergence depends on ``W A``
only; an orthonormal start on whitened data makes ``W A`` well conditioned from step 0.

Complete (square, ``k == d``) is the classical case; ``k < d`` (undercomplete, on data
whitened to unit covariance) uses the same rule. Overcomplete layers are refused: use ``rica``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from structlearn.functional.ica import (
    SCORES,
    extended_signs,
    infomax_negative_log_likelihood,
    infomax_score,
    infomax_score_derivative,
    natural_gradient_direction,
    newton_direction,
    newton_line_search,
    relative_gradient,
    symmetric_orthogonalize,
)
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.params import Interval, Options, Param

METHODS = ("natural_gradient", "newton")
POSITIVE = Interval(float, 0, None, closed="neither")


@OBJECTIVES.register("infomax")
class InfoMax(Objective):
    name = "infomax"
    uses_gradients = False
    signs: Tensor  # (n_units,) buffer: +1 super-, -1 sub-Gaussian (extended InfoMax)
    lr = Param(0.01, POSITIVE, "natural-gradient learning rate eta")
    score = Param("logistic", Options(SCORES), "score function phi")
    max_step = Param(0.2, POSITIVE, "cap on the spectral norm of eta G")
    method = Param("natural_gradient", Options(METHODS), "natural_gradient, or relative Newton steps (Picard)")
    max_halvings = Param(10, Interval(int, 0, 60), "Newton line-search halvings")

    def __init__(self, layer, **params: Any) -> None:
        super().__init__(layer, **params)
        if layer.n_units > layer.n_in:
            raise ValueError(f"infomax needs n_units <= n_in (complete or undercomplete unmixing); got "
                             f"n_units={layer.n_units} > n_in={layer.n_in}; use objective 'rica' for overcomplete")
        w = layer.weight
        with torch.no_grad():
            layer.weight.copy_(symmetric_orthogonalize(w.detach()))
            layer.apply_mask_()
        self.register_buffer("signs", torch.ones(layer.n_units, device=w.device, dtype=w.dtype))

    def decode(self, z: Tensor) -> Tensor:
        """Least-squares mixing ``x_hat = z pinv(W)^T`` (exactly ``W^{-1}`` when square and unpruned)."""
        return z @ torch.linalg.pinv(self.layer.effective_weight().detach()).T

    def _signs(self, u: Tensor) -> Tensor | None:
        return extended_signs(u) if self.score == "extended" else None

    def loss(self, x: Tensor) -> Tensor:
        """Negative log-likelihood ``-1/2 logdet(W W^T) - E log p(u)`` (up to a constant)."""
        W = self.layer.effective_weight()
        return infomax_negative_log_likelihood(x, W, self.score, self._signs(x @ W.T))

    def mean_statistics(self) -> tuple[str, ...]:
        """Natural gradient: ``G`` and the likelihood are means; a Newton step's line search is not."""
        return ("G", "loss") if self.method == "natural_gradient" and self.score != "extended" else ()

    @torch.no_grad()
    def statistics(self, x: Tensor) -> dict[str, Any]:
        """Natural gradient: ``G = I - E[phi(u) u^T]`` (a batch mean) and the batch's negative
        log-likelihood. Newton: the line search needs the batch, so the accepted weight is
        computed here (``_found``, batch-local)."""
        W = self.layer.effective_weight()  # (k, d)
        u = x @ W.T  # (n, k)
        signs = self._signs(u)
        phi = infomax_score(u, self.score, signs)
        nll = infomax_negative_log_likelihood(x, W, self.score, signs, u=u) if self.method == "newton" else None
        stats: dict[str, Any] = {"signs": signs}
        if self.method == "newton":
            G = relative_gradient(u, phi)
            D = newton_direction(u, phi, infomax_score_derivative(u, self.score, signs, phi), G=G)  # (k, k)
            assert nll is not None
            stats.update(G=G, loss=nll, _found=newton_line_search(x, W, D, nll, self.score, signs, self.max_halvings,
                                                                  mask=self.layer.mask))
            return stats
        stats["G"] = natural_gradient_direction(u, phi)  # (k, k)
        stats["loss"] = infomax_negative_log_likelihood(x, W, self.score, signs, u=u)
        return stats

    @torch.no_grad()
    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        if stats["signs"] is not None:
            self.signs.copy_(stats["signs"])
        G, W = stats["G"], self.layer.effective_weight()
        g_norm = torch.linalg.matrix_norm(G, ord=2)
        if self.method == "newton":
            found = stats["_found"]
            if found is not None:
                self.layer.weight.copy_(found[0])
            eta = torch.tensor(0.0 if found is None else found[3], dtype=W.dtype)
        else:
            eta = self.lr * torch.clamp(self.max_step / (self.lr * g_norm).clamp_min(torch.finfo(W.dtype).tiny), max=1.0)
            self.layer.weight.copy_(W + eta * (G @ W))
            self.layer.apply_mask_()
        return {"loss": stats["loss"], "natural_gradient_norm": g_norm, "step_size": eta,
                "sub_gaussian_units": (self.signs < 0).sum().to(W.dtype)}
