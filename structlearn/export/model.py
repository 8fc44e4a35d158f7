"""A discovered architecture as a classifier with timm's model interface.

:class:`DiscoveredNet` wraps :func:`~structlearn.export.spec.build_module` (the feature
extractor, initialised from the discovered kernels and masked weights when given) and a linear
head: ``num_classes``, ``num_features``, ``forward_features``, ``forward_head(x, pre_logits)``,
``get_classifier``, ``reset_classifier(num_classes)``, ``pretrained_cfg``, so code written for
timm models (training scripts, NAS pipelines) takes it unchanged. ``num_classes=0`` gives the
features (an ``nn.Identity`` head), as in timm. ``structlearn_nas.register_timm`` registers a
spec with timm's ``register_model`` where timm is installed.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from structlearn.export.spec import build_module, validate_spec


class DiscoveredNet(nn.Module):
    def __init__(self, spec: dict[str, Any], kernels: list[Any] | None = None, num_classes: int = 10,
                 in_chans: int | None = None, drop_rate: float = 0.0) -> None:
        super().__init__()
        validate_spec(spec)
        in_chans = spec["input"].get("channels", 1) if in_chans is None else in_chans  # default: the spec's
        if in_chans != spec["input"].get("channels", 1):
            raise ValueError(f"in_chans={in_chans}; allowed: {spec['input'].get('channels', 1)} (the spec's input channels)")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} out of range; allowed: integers >= 0 (0: features only)")
        self.features = build_module({**spec, "head": None}, kernels)
        h, w = spec["input"]["shape"]
        self.input_size = (in_chans, h, w)
        with torch.no_grad():
            dtype = next((p.dtype for p in self.features.parameters()), torch.float32)
            self.num_features = int(math.prod(self.features(torch.zeros(1, *self.input_size, dtype=dtype)).shape[1:]))
        self.drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = {"input_size": self.input_size, "num_classes": num_classes,
                               "mean": (0.0,) * in_chans, "std": (1.0,) * in_chans,
                               "source": dict(spec.get("source", {}))}

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Any = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} out of range; allowed: integers >= 0")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
