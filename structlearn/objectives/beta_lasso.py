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
from structlearn.objectives.base import OBJECTIVES, Objective, check_range


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


class BetaLasso:
    """Callable helper: ``BetaLasso(lam, beta, lr)(layer) -> {'density', 'pruned'}``."""

    def __init__(self, lam: float = 1e-4, beta: float = 50.0, lr: float = 1.0) -> None:
        check_range("lam", lam, 0, None)
        check_range("beta", beta, 0, None)
        check_range("lr", lr, 0, None)
        self.lam, self.beta, self.lr = float(lam), float(beta), float(lr)

    def __call__(self, layer: DenseLayer) -> dict[str, Tensor]:
        pruned = beta_lasso_(layer, self.lam, self.beta, self.lr)
        dtype = layer.weight.dtype
        return {"density": layer.mask.to(dtype).mean(), "pruned": pruned.to(dtype)}


OWN = {"l1": "lam", "l1_beta": "beta", "l1_lr": "lr"}  # wrapper name -> BetaLasso attribute


@OBJECTIVES.register("beta_lasso")
class BetaLassoObjective(Objective):
    """Any registered objective (``inner``) followed by a :class:`BetaLasso` step."""

    name = "beta_lasso"

    def __init__(
        self,
        layer: DenseLayer,
        *,
        inner: str = "rica",
        l1: float = 1e-4,
        l1_beta: float = 50.0,
        l1_lr: float = 1.0,
        generator: torch.Generator | None = None,
        **inner_params: Any,
    ) -> None:
        super().__init__(layer)
        if inner == self.name:
            raise ValueError("inner='beta_lasso' is not allowed; allowed: any other registered objective")
        self.check_params(l1=l1, l1_beta=l1_beta, l1_lr=l1_lr)
        self.inner = OBJECTIVES.create(inner, layer, generator=generator, **inner_params)
        self.inner_name = inner
        self.uses_gradients = self.inner.uses_gradients
        self.optimizer = getattr(self.inner, "optimizer", None)
        self.pruner = BetaLasso(l1, l1_beta, l1_lr)

    def check_params(self, **p) -> None:
        for k, v in p.items():
            if k in OWN:
                check_range(k, v, 0, None)

    def validate_params(self, **params: Any) -> None:
        own = {k: v for k, v in params.items() if k in OWN}
        self.check_params(**own)
        self.inner.validate_params(**{k: v for k, v in params.items() if k not in OWN})

    def set_params(self, **params: Any) -> None:
        """``l1``, ``l1_beta``, ``l1_lr`` are beta-LASSO's; every other name is the inner objective's."""
        self.validate_params(**params)
        for k, v in params.items():
            if k in OWN:
                setattr(self.pruner, OWN[k], float(v))
        self.inner.set_params(**{k: v for k, v in params.items() if k not in OWN})

    l1 = property(lambda self: self.pruner.lam)
    l1_beta = property(lambda self: self.pruner.beta)
    l1_lr = property(lambda self: self.pruner.lr)

    def encode(self, x: Tensor) -> Tensor:
        return self.inner.encode(x)

    def decode(self, z: Tensor) -> Tensor | None:
        return self.inner.decode(z)

    def reconstruct(self, x: Tensor) -> Tensor | None:
        return self.inner.reconstruct(x)

    def loss(self, x: Tensor, **kwargs: Any) -> Tensor:
        return self.inner.loss(x, **kwargs)

    def train_step(self, x: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        metrics = dict(self.inner.train_step(x, **kwargs))
        metrics.update(self.pruner(self.layer))
        return metrics
