"""beta-LASSO (Neyshabur 2020) as a regulariser-and-pruner that composes with any objective.

Neyshabur's update is ``theta <- theta - eta (grad + lambda sign(theta))``, then
``theta_i <- 0`` where ``|theta_i| < beta * lambda``. Here it is split in two so that it
wraps any objective, whatever its own update rule (optimizer, natural gradient or closed
form):

1. the objective takes its own step (``inner.train_step(x)``);
2. :class:`BetaLasso` shrinks the layer's weights by the decoupled L1 step
   ``w <- w - eta * lambda * sign(w)`` (decoupled like AdamW's weight decay; after a plain
   SGD step of size ``eta`` on the inner loss this is exactly Neyshabur's update) and prunes
   permanently: ``mask &= |w| >= beta * lambda``, then re-applies the mask.

The choice: pruning goes into the layer's mask, not only into the weight, so a pruned
weight stays exactly zero under every objective (gradients, natural gradients and closed
forms all re-apply the mask) and the layer's density is the mask's. Two ways to use it:

- ``BetaLasso(lam, beta, lr)(layer)`` after each step of any objective (a trainer callback);
- the registered wrapper objective ``beta_lasso``: ``inner`` names the wrapped objective,
  ``l1`` (lambda), ``l1_beta`` (beta) and ``l1_lr`` (eta) are beta-LASSO's, every other
  hyperparameter goes to the inner objective (the ``l1`` prefix keeps them apart from the
  inner ``lam``, ``lr`` and ``beta``). YAML: ``objective: beta_lasso`` with
  ``params: {inner: rica, lam: 0.1, l1: 1.0e-4, l1_beta: 50}``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.params import Interval, Param, check_params
from structlearn.prune.beta_lasso import beta_lasso_

NONNEG = Interval(float, 0, None)


class BetaLasso:
    """Callable helper: ``BetaLasso(lam, beta, lr)(layer) -> {'density', 'pruned'}``."""

    def __init__(self, lam: float = 1e-4, beta: float = 50.0, lr: float = 1.0) -> None:
        v = check_params("BetaLasso", {"lam": NONNEG, "beta": NONNEG, "lr": NONNEG}, {"lam": lam, "beta": beta, "lr": lr})
        self.lam, self.beta, self.lr = v["lam"], v["beta"], v["lr"]

    def __call__(self, layer: DenseLayer) -> dict[str, Tensor]:
        pruned = beta_lasso_(layer, self.lam, self.beta, self.lr)
        dtype = layer.weight.dtype
        return {"density": layer.mask.to(dtype).mean(), "pruned": pruned.to(dtype)}


OWN = {"l1": "lam", "l1_beta": "beta", "l1_lr": "lr"}  # wrapper name -> BetaLasso attribute


@OBJECTIVES.register("beta_lasso")
class BetaLassoObjective(Objective):
    """Any registered objective (``inner``) followed by a :class:`BetaLasso` step. Its own
    parameters are ``inner``, ``l1``, ``l1_beta`` and ``l1_lr``; every other one is the inner
    objective's."""

    name = "beta_lasso"
    l1 = Param(1e-4, NONNEG, "beta-LASSO lambda")
    l1_beta = Param(50.0, NONNEG, "beta-LASSO beta")
    l1_lr = Param(1.0, NONNEG, "beta-LASSO eta (decoupled shrink step)")

    def __init__(self, layer: DenseLayer, *, inner: str = "rica", generator: torch.Generator | None = None,
                 **params: Any) -> None:
        if inner == self.name:
            raise ValueError("inner='beta_lasso' is not allowed; allowed: any other registered objective")
        own = {k: params.pop(k) for k in list(params) if k in OWN}
        super().__init__(layer, **own)
        self.inner = OBJECTIVES.create(inner, layer, generator=generator, **params)
        self.inner_name = inner
        self.uses_gradients = self.inner.uses_gradients
        self.optimizer = getattr(self.inner, "optimizer", None)
        self.pruner = BetaLasso(self.l1, self.l1_beta, self.l1_lr)

    def validate_params(self, **params: Any) -> None:
        super().validate_params(**{k: v for k, v in params.items() if k in OWN})
        self.inner.validate_params(**{k: v for k, v in params.items() if k not in OWN})

    def set_params(self, **params: Any) -> None:
        """``l1``, ``l1_beta``, ``l1_lr`` are beta-LASSO's; every other name is the inner objective's."""
        self.validate_params(**params)
        own = {k: v for k, v in params.items() if k in OWN}
        super().set_params(**own)
        for k in own:
            setattr(self.pruner, OWN[k], getattr(self, k))
        self.inner.set_params(**{k: v for k, v in params.items() if k not in OWN})

    def get_params(self) -> dict[str, Any]:
        return {**self.inner.get_params(), "inner": self.inner_name, **super().get_params()}

    def encode(self, x: Tensor) -> Tensor:
        return self.inner.encode(x)

    def decode(self, z: Tensor) -> Tensor | None:
        return self.inner.decode(z)

    def reconstruct(self, x: Tensor) -> Tensor | None:
        return self.inner.reconstruct(x)

    def loss(self, x: Tensor, **kwargs: Any) -> Tensor:
        return self.inner.loss(x, **kwargs)

    def mean_statistics(self) -> tuple[str, ...]:
        return self.inner.mean_statistics()

    def statistics(self, x: Tensor, **kwargs: Any) -> dict[str, Any]:
        return self.inner.statistics(x, **kwargs)

    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        metrics = dict(self.inner.update(stats))
        metrics.update(self.pruner(self.layer))
        return metrics
