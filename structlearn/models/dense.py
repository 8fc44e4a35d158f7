"""A dense (fully connected) layer whose rows are receptive fields, with a pruning mask.

``weight`` has shape ``(n_units, n_in)``: row ``i`` is unit ``i``'s receptive field over
the whole input, viewable as an image of ``input_shape`` (``prod(input_shape) == n_in``).
``mask`` is a boolean buffer of the same shape; the effective weight is
``weight * mask`` and :meth:`apply_mask_` zeroes the raw pruned entries, so after every
update (gradient, natural gradient or closed form) pruned weights stay exactly zero.

Forward: ``y = x @ (weight * mask).T``  with ``x: (n, n_in) -> y: (n, n_units)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class DenseLayer(nn.Module):
    weight: nn.Parameter  # (n_units, n_in)
    mask: Tensor  # (n_units, n_in) bool buffer

    def __init__(
        self,
        n_in: int,
        n_units: int,
        input_shape: tuple[int, ...] | None = None,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if n_in < 1 or n_units < 1:
            raise ValueError(f"n_in and n_units must be >= 1, got n_in={n_in}, n_units={n_units}")
        input_shape = tuple(input_shape) if input_shape is not None else (n_in,)
        if math.prod(input_shape) != n_in:
            raise ValueError(f"input_shape {input_shape} does not have n_in={n_in} elements")
        self.input_shape = input_shape
        w = torch.randn(n_units, n_in, generator=generator, dtype=dtype)
        w = w / w.norm(dim=1, keepdim=True)
        self.weight = nn.Parameter(w.to(device))
        self.register_buffer("mask", torch.ones(n_units, n_in, dtype=torch.bool, device=device))

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_units(self) -> int:
        return self.weight.shape[0]

    def effective_weight(self) -> Tensor:
        """``weight * mask``: (n_units, n_in)."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.effective_weight().T

    @torch.no_grad()
    def apply_mask_(self) -> None:
        """Zero the raw weights that the mask prunes (in place)."""
        self.weight.mul_(self.mask)

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        if mask.shape != self.mask.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(self.mask.shape)}")
        self.mask.copy_(mask.to(torch.bool))
        self.apply_mask_()

    def density(self) -> float:
        """Share of weights the mask keeps."""
        return float(self.mask.float().mean())

    def filters(self) -> Tensor:
        """Receptive fields as images: (n_units, *input_shape)."""
        return self.effective_weight().detach().reshape(self.n_units, *self.input_shape)
