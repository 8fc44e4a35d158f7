"""beta-LASSO thresholding (Neyshabur, NeurIPS 2020, "Towards learning convolutions from
scratch") as a pruner.

Neyshabur's update is ``theta <- theta - eta (grad + lam sign(theta))`` followed by
``theta_i <- 0`` where ``|theta_i| < beta lam``. As a pruner:

- at each pruning round: ``mask &= |w| >= beta * lam`` (the threshold alone);
- after every fine-tuning step (``after_step``): the decoupled shrink
  ``w <- w - lr lam sign(w)`` and the same threshold, written into the mask
  (:func:`beta_lasso_`), so the density keeps falling for
  as long as weights sink below ``beta lam``.

``lam`` and ``beta lam`` are in the units of the weights (sparse coding's atoms have unit norm,
so a typical weight of an ``n_in``-pixel atom is about ``n_in ** -0.5``). There is no target
density: it follows from ``lam`` and ``beta``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from structlearn.models.dense import DenseLayer
from structlearn.params import Interval, Options, Param
from structlearn.prune.base import PRUNERS, Pruner
from structlearn.prune.magnitude import SCOPES

NONNEG = Interval(float, 0, None)


@torch.no_grad()
def beta_lasso_(layer: DenseLayer, lam: float, beta: float, lr: float) -> Tensor:
    """In place: ``w <- (w - lr lam sign(w)) * mask``, ``mask &= |w| >= beta lam``.
    Returns the number of weights newly pruned (a 0-d long tensor)."""
    w = layer.weight
    w.sub_(lr * lam * torch.sign(w))
    before = layer.mask.sum()
    layer.mask.logical_and_(w.abs() >= beta * lam)
    layer.apply_mask_()
    return before - layer.mask.sum()


@PRUNERS.register("beta_lasso")
class BetaLassoPruner(Pruner):
    """beta-LASSO pruning (module docstring); its density follows from ``lam`` and ``beta``."""

    name = "beta_lasso"
    lam = Param(1e-3, NONNEG, "L1 strength")
    beta = Param(10.0, NONNEG, "threshold multiplier: weights with |w| < beta * lam are pruned")
    lr = Param(1.0, NONNEG, "step of the decoupled shrink after each fine-tuning step (0: threshold only)")
    scope = Param("unit", Options(SCOPES), "no effect (the threshold is per weight)")

    def compute_mask(self, weight: Tensor, mask: Tensor, round: int = 0) -> Tensor:
        return mask & (weight.abs() >= self.beta * self.lam)

    def after_step(self, layer: DenseLayer) -> None:
        beta_lasso_(layer, self.lam, self.beta, self.lr)
