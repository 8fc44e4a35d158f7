"""The shared gradient step of the objectives trained by an optimizer (RICA, MCR^2).

A :class:`GradientObjective` defines ``terms(x, **kw) -> dict`` with a scalar ``"loss"``;
the statistics of a batch are the masked gradient of that loss with respect to the layer's
weight (``grad: (k, d)``, a batch mean, so shards average) and the detached terms; the update
is one optimizer step on that gradient, then the mask and :meth:`after_update`.

``optimizer="lbfgs"`` (the RICA paper's choice) re-evaluates the loss during its line search,
so its statistics also carry the batch's closure (``_closure``, batch-local): L-BFGS steps are
single-process.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from structlearn.objectives.base import Objective
from structlearn.params import Interval, Options, Param

OPTIMIZERS = ("adam", "lbfgs")


def make_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, lbfgs_iter: int = 20) -> torch.optim.Optimizer:
    """``adam`` or ``lbfgs`` (strong-Wolfe line search) over ``params``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.LBFGS(params, lr=lr, max_iter=lbfgs_iter, line_search_fn="strong_wolfe")


def _grad(w: torch.nn.Parameter) -> Tensor:
    if w.grad is None:  # zero_grad(set_to_none=False) and backward always leave one
        raise RuntimeError("the layer weight has no gradient")
    return w.grad


class OptimizerParam(Param):
    """A hyperparameter held by ``obj.optimizer.param_groups`` once the optimizer exists, so
    :meth:`Objective.set_params` (e.g. a smaller ``lr`` for fine-tuning) changes the optimizer."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        opt = obj.__dict__.get("optimizer")
        return float(opt.param_groups[0][self.name]) if opt is not None else super().__get__(obj, owner)

    def __set__(self, obj: Any, value: Any) -> None:
        super().__set__(obj, value)
        opt = obj.__dict__.get("optimizer")
        if opt is not None:
            for group in opt.param_groups:
                group[self.name] = super().__get__(obj)


class GradientObjective(Objective):
    """Base of the optimizer-trained objectives (module docstring)."""

    uses_gradients = True
    optimizer: torch.optim.Optimizer
    lr = OptimizerParam(1e-3, Interval(float, 0, None, closed="neither"), "optimizer learning rate")
    optimizer_name = Param("adam", Options(OPTIMIZERS), "optimizer: adam, or lbfgs (full L-BFGS steps per batch)")
    lbfgs_iter = Param(20, Interval(int, 1, None), "L-BFGS iterations per batch")
    fixed_params = ("optimizer_name", "lbfgs_iter")

    def __init__(self, layer, *, generator: torch.Generator | None = None, **params: Any) -> None:
        if "optimizer" in params:  # the config's name for optimizer_name
            params["optimizer_name"] = params.pop("optimizer")
        super().__init__(layer, generator=generator, **params)
        self.__dict__["optimizer"] = make_optimizer([layer.weight], self.optimizer_name, self.lr, self.lbfgs_iter)

    def _checked(self, params: dict[str, Any]) -> dict[str, Any]:
        if "optimizer" in params:
            params = {("optimizer_name" if k == "optimizer" else k): v for k, v in params.items()}
        return super()._checked(params)

    separable = True  # the loss is a mean over samples (so are its gradient and terms)

    def mean_statistics(self) -> tuple[str, ...]:
        if not self.separable or self.optimizer_name == "lbfgs":
            return ()
        return ("grad", "loss", *(k for k in self._term_names if k != "loss"))

    _term_names: tuple[str, ...] = ("loss",)

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def batch_terms(self, x: Tensor) -> Callable[[], dict[str, Tensor]]:
        """The loss terms of this batch as a closure (a subclass may prepare the batch once)."""
        return lambda: self.terms(x)

    def after_update(self) -> None:
        """Projection after each step (default: none)."""

    def statistics(self, x: Tensor, **kwargs: Any) -> dict[str, Any]:
        layer, opt = self.layer, self.optimizer
        fn = self.batch_terms(x, **kwargs)

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=False)
            t = fn()
            t["loss"].backward()
            _grad(layer.weight).mul_(layer.mask)
            return t["loss"]

        with torch.enable_grad():
            opt.zero_grad(set_to_none=False)
            terms = fn()
            terms["loss"].backward()
            _grad(layer.weight).mul_(layer.mask)
        stats: dict[str, Any] = {k: v.detach() for k, v in terms.items()}
        stats["grad"] = _grad(layer.weight).clone()  # a value, not the buffer the next backward overwrites
        if isinstance(opt, torch.optim.LBFGS):
            stats["_closure"] = closure
        return stats

    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        w, opt = self.layer.weight, self.optimizer
        _grad(w).copy_(stats["grad"])
        with torch.enable_grad():
            if isinstance(opt, torch.optim.LBFGS):
                opt.step(stats["_closure"])
            else:
                opt.step()
        self.layer.apply_mask_()
        self.after_update()
        return self.step_metrics(stats)

    def step_metrics(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        return {k: v for k, v in stats.items() if not k.startswith("_") and k != "grad"}
