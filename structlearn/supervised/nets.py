"""The networks a discovered first layer is compared with, all as architecture specs.

Each variant is one hidden layer of the discovered layer's ``N`` units (or a conv), an
activation, and a linear classifier head (added by ``DiscoveredNet``):

================  =========================================================================
variant           first layer
================  =========================================================================
discovered        the exported spec's first layer (shared_conv / conv / masked dense) with the
                  discovered weights: the hand-off exactly as ``structlearn export`` writes it
discovered_mask   dense ``N x HW`` with the discovered pruning mask, fresh weights
dense             the dense ``N x HW`` layer it came from, fresh weights (no mask)
random_mask       dense with a random mask of the same fan-in per unit (each row's mask
                  permuted), so the same density and the same parameter count
cnn               a hand-designed CNN: Conv2d(1, C, 5, padding 2), activation, 2 x 2 energy
                  pooling; C chosen so its parameter count matches ``discovered``'s
================  =========================================================================

Fresh masked weights are drawn uniform in ``+-1/sqrt(fan-in of the unit)`` (PyTorch's default
bound for ``nn.Linear``, with the unit's unmasked fan-in), so a sparse unit starts with the same
response scale as a dense one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from structlearn.export.spec import MaskedLinear, SharedConv, make_spec
from structlearn.params import check_choice

VARIANTS = ("discovered", "discovered_mask", "dense", "random_mask", "cnn")
WEIGHTED = ("conv2d", "shared_conv", "redu")  # stages that consume an entry of the kernels list


@dataclass(frozen=True)
class FirstLayer:
    """A discovered first layer: the exported ``spec`` and ``kernels`` (``runs.export.spec_from_run``)
    and the pruned layer's ``mask: (N, C*H*W)`` (the run's ``layer(0)['mask']``; ``C = 1`` but for
    colour runs)."""

    spec: dict[str, Any]
    kernels: list[Any]
    mask: Tensor

    def __post_init__(self) -> None:
        d = math.prod(self.input_shape)
        if self.mask.ndim != 2 or self.mask.shape[1] != d:
            raise ValueError(f"mask has shape {tuple(self.mask.shape)}; allowed: (units, {d}) for "
                             f"{'x'.join(map(str, self.input_shape))} inputs")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(H, W)``, or ``(C, H, W)`` for ``C > 1`` input channels (colour)."""
        h, w = int(self.spec["input"]["shape"][0]), int(self.spec["input"]["shape"][1])
        c = int(self.spec["input"].get("channels", 1))
        return (c, h, w) if c > 1 else (h, w)

    @property
    def n_units(self) -> int:
        return int(self.mask.shape[0])

    def first_stages(self) -> tuple[list[dict[str, Any]], list[Any]]:
        """The spec's stages up to its first activation, and the kernels they consume."""
        stages: list[dict[str, Any]] = []
        for st in self.spec["stages"]:
            if st["type"] == "activation":
                break
            stages.append(st)
        used = sum(1 for st in stages if st["type"] in WEIGHTED or (st["type"] == "dense" and st.get("masked")))
        return stages, list(self.kernels[:used])


def fresh_masked_weight(mask: Tensor, generator: torch.Generator) -> Tensor:
    """``U(-b_i, b_i) * mask`` per row ``i``, ``b_i = 1/sqrt(max(1, mask_i.sum()))``."""
    bound = mask.sum(1, keepdim=True).clamp_min(1).rsqrt()
    return (torch.rand(mask.shape, generator=generator, dtype=torch.float32) * 2 - 1) * bound * mask


def random_mask_like(mask: Tensor, generator: torch.Generator) -> Tensor:
    """Each row's entries permuted at random: the same fan-in per unit, positions at random."""
    order = torch.rand(mask.shape, generator=generator).argsort(1)
    return mask.gather(1, order)


def cnn_params(channels: int, input_shape: tuple[int, ...], num_classes: int, kernel: int = 5, pool: int = 2) -> int:
    """Parameters of ``Conv2d(c, C, kernel, padding=kernel//2, bias=False)`` -> pool -> ``Linear(.., classes)``
    for inputs ``(H, W)`` (``c = 1``) or ``(c, H, W)``."""
    c_in, (h, w) = (input_shape[0] if len(input_shape) == 3 else 1), input_shape[-2:]
    return channels * c_in * kernel * kernel + channels * (h // pool) * (w // pool) * num_classes + num_classes


def matched_cnn_channels(target: int, input_shape: tuple[int, ...], num_classes: int, kernel: int = 5, pool: int = 2) -> int:
    """The channel count whose :func:`cnn_params` is closest to ``target``."""
    c_in, (h, w) = (input_shape[0] if len(input_shape) == 3 else 1), input_shape[-2:]
    per = c_in * kernel * kernel + (h // pool) * (w // pool) * num_classes
    c = max(1, round((target - num_classes) / per))
    return min((c - 1, c, c + 1), key=lambda v: (abs(cnn_params(v, input_shape, num_classes, kernel, pool) - target)
                                                 if v >= 1 else math.inf))


def effective_params(model: nn.Module) -> int:
    """Trainable parameters that can be non-zero: a masked weight counts its mask's non-zeros, a
    shared_conv's gains count only live units."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for m in model.modules():
        if isinstance(m, MaskedLinear):
            total -= m.weight.numel() - int(m.mask.count_nonzero())
        elif isinstance(m, SharedConv):
            total -= m.gain.numel() - int(m.live.count_nonzero())
    return total


def variant_spec(name: str, layer: FirstLayer, num_classes: int, generator: torch.Generator,
                 activation: str = "relu", target_params: int | None = None) -> tuple[dict[str, Any], list[Any] | None]:
    """``(spec, kernels)`` of one variant (``DiscoveredNet(spec, kernels, num_classes)``).
    ``cnn`` needs ``target_params`` (the discovered net's :func:`effective_params`)."""
    check_choice("variant", name, VARIANTS)
    act = {"type": "activation", "fn": activation}
    n, shape = layer.n_units, layer.input_shape
    source = dict(layer.spec.get("source", {}), variant=name)
    if name == "discovered":
        stages, kernels = layer.first_stages()
        return make_spec(shape, [*stages, act], source), kernels
    if name == "dense":
        return make_spec(shape, [{"type": "dense", "out_features": n}, act], source), None
    if name == "cnn":
        if target_params is None:
            raise ValueError("variant 'cnn' needs target_params (the discovered network's parameter count)")
        c = matched_cnn_channels(target_params, shape, num_classes)
        conv = {"type": "conv2d", "out_channels": c, "kernel_size": [5, 5], "stride": [1, 1], "padding": [2, 2]}
        pool = {"type": "pool", "kind": "l2", "kernel_size": [2, 2], "stride": [2, 2]}
        return make_spec(shape, [conv, act, pool], source), None  # fresh (PyTorch default init)
    mask = (layer.mask != 0).float()
    if name == "random_mask":
        mask = random_mask_like(mask, generator)
    weight = fresh_masked_weight(mask, generator)
    return make_spec(shape, [{"type": "dense", "out_features": n, "masked": True}, act], source), \
        [{"weight": weight, "mask": mask}]
