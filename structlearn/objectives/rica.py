"""Reconstruction ICA (Le, Karpenko, Ngiam, Ng 2011) on a dense layer; overcomplete allowed.

    min_W  lam / n sum_i sum_j log cosh(W_j x_i) + 1 / n sum_i ||W^T W x_i - x_i||^2

with ``W = layer.effective_weight(): (k, d)``, any ``k`` (``k > d`` is overcomplete ICA).
The reconstruction term replaces ICA's orthonormality constraint, which is what makes
``k > d`` possible. Inputs are expected whitened. The optimizer (``adam`` for minibatch
training, or ``lbfgs`` as in the paper, running ``lbfgs_iter`` iterations per batch) is
``self.optimizer`` over the layer's weight; gradients are multiplied by the mask (they are
already zero there because the forward pass uses ``weight * mask``) and the mask is
re-applied after every step.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from structlearn.functional.ica import rica_terms
from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES, Objective, check_choice, check_range


def make_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, lbfgs_iter: int = 20) -> torch.optim.Optimizer:
    """``adam`` or ``lbfgs`` (strong-Wolfe line search) over ``params``."""
    check_choice("optimizer", name, ("adam", "lbfgs"))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.LBFGS(params, lr=lr, max_iter=lbfgs_iter, line_search_fn="strong_wolfe")


def optimizer_setting(key: str, cast: Callable[[object], object]) -> property:
    """A plain hyperparameter stored in ``self.optimizer.param_groups[*][key]``, so
    :meth:`Objective.set_params` (e.g. a smaller ``lr`` for fine-tuning) changes the optimizer."""

    def get(self: Objective) -> object:
        return cast(self.optimizer.param_groups[0][key])

    def set_(self: Objective, value: object) -> None:
        for group in self.optimizer.param_groups:
            group[key] = cast(value)

    return property(get, set_, doc=f"optimizer setting {key!r}")


def masked_step(objective: Objective, terms_fn: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """One step of ``objective.optimizer`` on ``terms_fn()["loss"]`` with masked gradients
    (Adam, or L-BFGS re-evaluating the closure); returns the terms before the step,
    detached. The mask is re-applied afterwards."""
    layer, opt = objective.layer, objective.optimizer
    first: dict[str, Tensor] = {}

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=False)
        terms = terms_fn()
        terms["loss"].backward()
        layer.weight.grad.mul_(layer.mask)
        if not first:
            first.update({k: v.detach() for k, v in terms.items()})
        return terms["loss"]

    with torch.enable_grad():
        closure()
        if isinstance(opt, torch.optim.LBFGS):
            opt.step(closure)
        else:
            opt.step()
    layer.apply_mask_()
    return first


@OBJECTIVES.register("rica")
class RICA(Objective):
    name = "rica"
    uses_gradients = True

    def __init__(
        self,
        layer: DenseLayer,
        *,
        lam: float = 2.0,
        lr: float = 3e-3,
        optimizer: str = "adam",
        lbfgs_iter: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(layer)
        self.check_params(lam=lam, lr=lr, lbfgs_iter=lbfgs_iter)
        check_choice("optimizer", optimizer, ("adam", "lbfgs"))
        self.lam = float(lam)
        self.optimizer = make_optimizer([layer.weight], optimizer, float(lr), int(lbfgs_iter))
        with torch.no_grad():
            layer.apply_mask_()

    def check_params(self, **p) -> None:
        for k, v in p.items():
            if k == "lam":
                check_range(k, v, 0, None)
            elif k == "lr":
                check_range(k, v, 0, None, low_open=True)
            elif k == "lbfgs_iter":
                check_range(k, v, 1, None)

    lr = optimizer_setting("lr", float)

    def loss(self, x: Tensor) -> Tensor:
        return rica_terms(x, self.layer.effective_weight(), self.lam)["loss"]

    def decode(self, z: Tensor) -> Tensor:
        """``x_hat = z W``, the RICA reconstruction ``W^T W x`` for ``z = W x``."""
        return z @ self.layer.effective_weight()

    def train_step(self, x: Tensor) -> dict[str, Tensor]:
        t = masked_step(self, lambda: rica_terms(x, self.layer.effective_weight(), self.lam))
        return {"loss": t["loss"], "sparsity": t["sparsity"],
                "recon_rel_error": t["reconstruction"] / (x * x).sum(1).mean()}
