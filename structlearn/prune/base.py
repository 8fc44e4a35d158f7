"""The pruner protocol and its registry (``PRUNERS``, registry "pruner").

A pruner declares its parameters as :class:`~structlearn.params.Param` class attributes and
implements one method, as ``torch.nn.utils.prune`` does::

    compute_mask(weight, mask, round=0) -> mask      # (n_units, n_in) bool; only shrinks

``round`` is the pruning event of a layer (0-based, ``< rounds``): the trainer prunes after the
layer's ``steps`` and again after each ``finetune_steps`` of fine-tuning, ``rounds`` times in
all. A pruner may also define ``after_step(layer)``, called after every fine-tuning step
(beta-LASSO's continuous shrink-and-threshold). ``pruner(layer, round)`` applies the mask.

Built in: ``magnitude`` (one-shot, per unit or global, relative threshold or exact density),
``imp`` (iterative magnitude pruning), ``beta_lasso`` (Neyshabur 2020).
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from structlearn.models.dense import DenseLayer
from structlearn.params import Interval, Param, check_params, declared_params
from structlearn.registry import Registry

PRUNERS: Registry["Pruner"] = Registry("pruner")


class Pruner:
    """Base class: checks the declared parameters; subclasses implement :meth:`compute_mask`."""

    name: ClassVar[str] = "pruner"
    example: ClassVar[dict[str, Any]] = {}  # the smallest valid parameters, for the conformance suite
    rounds = Param(1, Interval(int, 1, None), "pruning rounds")

    def __init__(self, **params: Any) -> None:
        for k, v in check_params(f"pruner {self.name!r}", declared_params(type(self)), params).items():
            setattr(self, k, v)
        self._check_joint()

    def _check_joint(self) -> None:
        """Checks that involve several parameters (default: none)."""

    def check_round(self, round: int) -> None:
        if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round < self.rounds:
            raise ValueError(f"round={round!r} out of range; allowed: integers in [0, {self.rounds - 1}]")

    def compute_mask(self, weight: Tensor, mask: Tensor, round: int = 0) -> Tensor:
        raise NotImplementedError(f"pruner {self.name!r} does not define compute_mask")

    def __call__(self, layer: DenseLayer, round: int = 0) -> None:
        """Prune ``layer`` in place: its mask becomes ``compute_mask(weight, mask, round)``."""
        self.check_round(round)
        layer.set_mask_(self.compute_mask(layer.weight.detach(), layer.mask, round))


__all__ = ["PRUNERS", "Pruner"]
