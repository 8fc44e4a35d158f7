"""The objective protocol: every unsupervised objective trains one :class:`DenseLayer`.

An objective is an ``nn.Module`` registered in :data:`OBJECTIVES` and built as
``OBJECTIVES.create(name, layer, generator=g, **hyperparameters)``. Its hyperparameters are
declared once, as :class:`~structlearn.params.Param` class attributes (default, constraint,
doc); construction and :meth:`Objective.set_params` check them against that table.

One update is split in two, so that a backend can combine the statistics of several
processes (an all-reduce) between the halves:

- ``statistics(x) -> dict``: what the minibatch ``x: (n, n_in)`` contributes, with the
  metrics of the step (``loss``, ...). The entries named by ``mean_statistics()`` are batch
  means: averaged over equal-size shards of a batch they equal the full batch's (up to
  rounding), so a data-parallel backend all-reduces exactly those. Keys starting with ``_``
  are batch-local (residual rows for re-seeding atoms, a closure for L-BFGS). An objective
  whose statistics are not separable over samples (MCR^2's coding rates) names none.
- ``update(stats) -> dict[str, Tensor]``: apply one update from those statistics and return
  the step's metrics; must leave pruned weights exactly zero (``self.layer.apply_mask_()``).

``train_step(x) = update(statistics(x))``. Besides these:

- ``encode(x) -> z``: codes ``(n, n_units)`` used for metrics and by the next layer;
- ``decode(z) -> x_hat | None``: reconstruction ``(n, n_in)``, ``None`` without a decoder;
- ``loss(x) -> Tensor``: scalar objective value for evaluation (lower is better).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from structlearn.models.dense import DenseLayer
from structlearn.params import Param, check_params, declared_params
from structlearn.registry import Registry

OBJECTIVES: Registry["Objective"] = Registry("objective")


class Objective(nn.Module):
    """Base class: declares ``name``, ``uses_gradients`` and the hyperparameters (``Param``);
    subclasses implement ``statistics``, ``update`` and ``loss`` (module docstring)."""

    name: ClassVar[str] = "objective"
    uses_gradients: bool = True
    layer: DenseLayer
    fixed_params: ClassVar[tuple[str, ...]] = ()  # declared parameters that cannot change after construction

    def __init__(self, layer: DenseLayer, *, generator: torch.Generator | None = None, **params: Any) -> None:
        super().__init__()
        self.layer = layer
        values = self._checked(params)
        self._check_joint({k: getattr(self, k) for k in declared_params(type(self))} | values)
        for k, v in values.items():
            setattr(self, k, v)

    # ------------------------------------------------------------------ the protocol
    def mean_statistics(self) -> tuple[str, ...]:
        """The keys of ``statistics(x)`` that are batch means (see the module docstring)."""
        return ()

    def statistics(self, x: Tensor) -> dict[str, Any]:
        raise NotImplementedError(f"objective {self.name!r} does not define statistics(x)")

    def update(self, stats: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError(f"objective {self.name!r} does not define update(stats)")

    def train_step(self, x: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        """One update on the minibatch ``x``: ``update(statistics(x))``."""
        return self.update(self.statistics(x, **kwargs))  # kwargs: e.g. MCR^2's labels

    def loss(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"objective {self.name!r} does not define loss(x)")

    def encode(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def decode(self, z: Tensor) -> Tensor | None:
        return None

    def reconstruct(self, x: Tensor) -> Tensor | None:
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ hyperparameters
    def _checked(self, params: dict[str, Any]) -> dict[str, Any]:
        return check_params(f"objective {self.name!r}", declared_params(type(self)), params)

    def _check_joint(self, params: dict[str, Any]) -> None:
        """Checks that involve several parameters or the layer (default: none)."""

    def validate_params(self, **params: Any) -> None:
        """Raise ``ValueError`` unless every name is a declared, changeable hyperparameter
        with an allowed value (nothing is changed)."""
        values = self._checked(params)
        for k in values:
            if k in self.fixed_params and values[k] != getattr(self, k):
                raise ValueError(f"{k} is fixed once the objective exists ({k}={getattr(self, k)!r}); "
                                 f"allowed: the same value")
        self._check_joint({k: getattr(self, k) for k in declared_params(type(self))} | values)

    def set_params(self, **params: Any) -> None:
        """Change hyperparameters mid-run (e.g. a smaller ``lam`` for fine-tuning after pruning)."""
        self.validate_params(**params)
        for k, v in self._checked(params).items():
            setattr(self, k, v)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in declared_params(type(self))}

    # ------------------------------------------------------------------ resume
    def optimizer_state(self) -> dict[str, Any]:
        """State outside ``state_dict`` that resume needs (an optimizer's); tensors and
        plain numbers only, so ``torch.load(weights_only=True)`` reads it back."""
        opt = getattr(self, "optimizer", None)
        return {} if opt is None else {"optimizer": opt.state_dict()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        opt = getattr(self, "optimizer", None)
        if opt is not None and "optimizer" in state:
            opt.load_state_dict(state["optimizer"])


__all__ = ["OBJECTIVES", "Objective", "Param"]
