"""The objective protocol: every unsupervised objective trains one :class:`DenseLayer`.

An objective is an ``nn.Module`` registered in :data:`OBJECTIVES` and built as
``OBJECTIVES.create(name, layer, generator=g, **hyperparameters)``. It owns its update
rule (closed-form, natural gradient or an optimizer over its own parameters), so the
trainer only ever calls:

- ``train_step(x) -> dict[str, Tensor]``: one update on a minibatch ``x: (n, n_in)``;
  must leave pruned weights exactly zero (call ``self.layer.apply_mask_()``).
- ``encode(x) -> z``: codes ``(n, n_units)`` used for metrics and by the next layer.
- ``decode(z) -> x_hat | None``: ``(n, n_in)`` reconstruction from codes, ``None`` when
  the objective has no decoder (then no reconstruction error is reported);
  ``reconstruct(x)`` is ``decode(encode(x))``.
- ``loss(x) -> Tensor``: scalar objective value for evaluation (lower is better).

Hyperparameters are validated in ``__init__`` with :func:`check_range`, which raises a
``ValueError`` that names the key and its allowed range.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from structlearn.models.dense import DenseLayer
from structlearn.registry import Registry

OBJECTIVES: Registry["Objective"] = Registry("objective")


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ``ValueError('<name>=<value> out of range; allowed: ...')`` if outside."""
    lo_b = "(" if low_open else "["
    hi_b = ")" if high_open else "]"
    allowed = f"{lo_b}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_b}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; allowed: {allowed}") from None
    bad = v != v  # NaN
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        raise ValueError(f"{name}={value!r} out of range; allowed: {allowed}")


def check_choice(name: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: {', '.join(map(str, choices))}")


class Objective(nn.Module):
    """Base class; subclasses set ``name`` and ``uses_gradients``."""

    name: str = "objective"
    uses_gradients: bool = True

    def __init__(self, layer: DenseLayer) -> None:
        super().__init__()
        self.layer = layer

    def encode(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def decode(self, z: Tensor) -> Tensor | None:
        return None

    def reconstruct(self, x: Tensor) -> Tensor | None:
        return self.decode(self.encode(x))

    # Subclasses define ``train_step(x)`` and ``loss(x)`` (see the module docstring).

    def set_params(self, **params: Any) -> None:
        """Change hyperparameters mid-run (e.g. a smaller ``lam`` for fine-tuning after
        pruning). Only names the objective already has; subclasses validate ranges by
        overriding :meth:`check_params`."""
        self.validate_params(**params)
        for k, v in params.items():
            setattr(self, k, type(getattr(self, k))(v) if isinstance(getattr(self, k), (int, float)) else v)

    def validate_params(self, **params: Any) -> None:
        """Names must be existing plain hyperparameters; values in range (:meth:`check_params`)."""
        for k in params:
            v = getattr(self, k, None)
            if k.startswith("_") or not isinstance(v, (int, float, str, bool)):
                raise ValueError(f"objective {self.name!r} has no hyperparameter {k!r}")
        self.check_params(**params)

    def check_params(self, **params: Any) -> None:
        """Raise ``ValueError`` for out-of-range hyperparameters (default: no checks)."""

    def optimizer_state(self) -> dict[str, Any]:
        """State outside ``state_dict`` that resume needs (an optimizer's); tensors and
        plain numbers only, so ``torch.load(weights_only=True)`` reads it back."""
        opt = getattr(self, "optimizer", None)
        return {} if opt is None else {"optimizer": opt.state_dict()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        opt = getattr(self, "optimizer", None)
        if opt is not None and "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
