"""Reconstruction ICA (Le, Karpenko, Ngiam, Ng 2011) on a dense layer; overcomplete allowed.

    min_W  lam / n sum_i sum_j log cosh(W_j x_i) + 1 / n sum_i ||W^T W x_i - x_i||^2

with ``W = layer.effective_weight(): (k, d)``, any ``k`` (``k > d`` is overcomplete ICA).
The reconstruction term replaces ICA's orthonormality constraint, which is what makes
``k > d`` possible. Inputs are expected whitened. The optimizer (``adam`` for minibatch
training, or ``lbfgs`` as in the paper, running ``lbfgs_iter`` iterations per batch) is
``self.optimizer`` over the layer's weight; the step is the shared masked gradient step of
:class:`~structlearn.objectives.gradient.GradientObjective`.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from structlearn.functional.ica import rica_terms
from structlearn.objectives.base import OBJECTIVES
from structlearn.objectives.gradient import GradientObjective, OptimizerParam
from structlearn.params import Interval, Param


@OBJECTIVES.register("rica")
class RICA(GradientObjective):
    name = "rica"
    lam = Param(2.0, Interval(float, 0, None), "weight of the log cosh sparsity term")
    _term_names = ("loss", "sparsity", "reconstruction")
    lr = OptimizerParam(3e-3, Interval(float, 0, None, closed="neither"), "optimizer learning rate")

    def __init__(self, layer, **params: Any) -> None:
        super().__init__(layer, **params)
        layer.apply_mask_()

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        return rica_terms(x, self.layer.effective_weight(), self.lam)

    def loss(self, x: Tensor) -> Tensor:
        return self.terms(x)["loss"]

    def decode(self, z: Tensor) -> Tensor:
        """``x_hat = z W``, the RICA reconstruction ``W^T W x`` for ``z = W x``."""
        return z @ self.layer.effective_weight()

    def statistics(self, x: Tensor, **kwargs: Any) -> dict[str, Any]:
        stats = super().statistics(x, **kwargs)
        stats["recon_rel_error"] = stats["reconstruction"] / (x * x).sum(1).mean()
        return stats

    def step_metrics(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        return {"loss": stats["loss"], "sparsity": stats["sparsity"], "recon_rel_error": stats["recon_rel_error"]}
