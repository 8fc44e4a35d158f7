"""beta-LASSO thresholding (Neyshabur, NeurIPS 2020, "Towards learning convolutions from
scratch") as a pruner.

Neyshabur's update is ``theta <- theta - eta (grad + lam sign(theta))`` followed by
``theta_i <- 0`` where ``|theta_i| < beta lam``. As a pruner:

- at each pruning round: ``mask &= |w| >= beta * lam`` (the threshold alone);
- after every fine-tuning step (``after_step``): the decoupled shrink
  ``w <- w - lr lam sign(w)`` and the same threshold, written into the mask
  (:func:`structlearn.objectives.beta_lasso.beta_lasso_`), so the density keeps falling for
  as long as weights sink below ``beta lam``.

``lam`` and ``beta lam`` are in the units of the weights (sparse coding's atoms have unit norm,
so a typical weight of an ``n_in``-pixel atom is about ``n_in ** -0.5``). There is no target
density: it follows from ``lam`` and ``beta``.
"""
from __future__ import annotations

import torch

from structlearn.objectives.base import check_choice, check_range
from structlearn.objectives.beta_lasso import beta_lasso_
from structlearn.prune.magnitude import PRUNERS


@PRUNERS.register("beta_lasso")
class BetaLassoPruner:
    """beta-LASSO pruning (module docstring).

    Args:
        lam: L1 strength, ``>= 0``.
        beta: threshold multiplier, ``>= 0``: weights with ``|w| < beta * lam`` are pruned.
        lr: step of the decoupled shrink after each fine-tuning step, ``>= 0`` (0: threshold only).
        rounds: pruning rounds ``>= 1``.
        scope, threshold, density: the common pruner signature; beta-LASSO's threshold is per
            weight, so ``scope`` has no effect, and ``threshold`` and ``density`` must be ``None``.
    """

    def __init__(self, lam: float = 1e-3, beta: float = 10.0, lr: float = 1.0, rounds: int = 1,
                 scope: str = "unit", threshold: float | None = None, density: float | None = None) -> None:
        if threshold is not None or density is not None:
            raise ValueError("pruner 'beta_lasso' takes no threshold or density (its density follows from "
                             "params lam and beta); set prune.threshold: null and prune.density: null")
        check_choice("scope", scope, ("unit", "global"))
        check_range("lam", lam, 0, None)
        check_range("beta", beta, 0, None)
        check_range("lr", lr, 0, None)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"prune.rounds={rounds!r} out of range; allowed: integers >= 1")
        self.lam, self.beta, self.lr, self.rounds = float(lam), float(beta), float(lr), rounds

    @torch.no_grad()
    def __call__(self, layer, round: int = 0) -> None:
        if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round < self.rounds:
            raise ValueError(f"round={round!r} out of range; allowed: integers in [0, {self.rounds - 1}]")
        layer.set_mask_(layer.mask & (layer.weight.abs() >= self.beta * self.lam))

    def after_step(self, layer) -> None:
        beta_lasso_(layer, self.lam, self.beta, self.lr)
