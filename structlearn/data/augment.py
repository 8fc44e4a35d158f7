"""Augmentation groups: the label-free partition of self-supervised MCR^2.

Each source sample and ``n_aug - 1`` random small transformations of it form one group
(Yu et al. 2020, Sec. 3.2: "each image and its augmentations are one class"). The
transformations act on the last two axes of ``image_shape = (..., h, w)``:

- translation by ``(dy, dx)``, each uniform in ``-max_shift..max_shift``, with zero fill
  (pixels moved in from outside the patch are 0, nothing wraps around);
- horizontal mirror with probability 1/2 (``flip=True``);
- contrast gain ``a`` uniform in ``[1 - contrast, 1 + contrast]`` (``x -> a x``);
- additive Gaussian noise with standard deviation ``noise`` times the sample's RMS.

Copy 0 of every group is the untouched source. Output rows are source-major:
row ``i * n_aug + a`` is copy ``a`` of source ``i``, and ``groups[i * n_aug + a] = i``.
All random draws come from the explicit ``generator`` (on its own device, then moved).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def augment_groups(
    x: Tensor,
    image_shape: tuple[int, ...],
    n_aug: int,
    generator: torch.Generator,
    *,
    max_shift: int = 1,
    flip: bool = True,
    contrast: float = 0.2,
    noise: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``x: (n, d)`` with ``d = prod(image_shape)`` -> ``(x_aug: (n * n_aug, d), groups: (n * n_aug,) long)``."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) < 2:
        raise ValueError(f"image_shape={shape} must end in (h, w) to shift and flip; allowed: (h, w) or (c, h, w)")
    if x.ndim != 2 or x.shape[1] != math.prod(shape):
        raise ValueError(f"x must be (n, {math.prod(shape)}) for image_shape={shape}; got {tuple(x.shape)}")
    if n_aug < 1:
        raise ValueError(f"n_aug={n_aug} out of range; allowed: [1, inf)")
    h, w = shape[-2:]
    if max_shift < 0 or max_shift >= min(h, w):
        raise ValueError(f"max_shift={max_shift} out of range; allowed: [0, {min(h, w) - 1}]")
    if not 0 <= contrast < 1:
        raise ValueError(f"contrast={contrast} out of range; allowed: [0, 1)")
    if noise < 0:
        raise ValueError(f"noise={noise} out of range; allowed: [0, inf)")
    n, N, s = x.shape[0], x.shape[0] * n_aug, int(max_shift)
    dev, gdev = x.device, generator.device
    keep = (torch.arange(N, device=dev) % n_aug == 0)  # (N,) copy 0 is the source
    img = x.reshape(n, -1, h, w).repeat_interleave(n_aug, 0)  # (N, c, h, w)
    if s > 0:
        shift = torch.randint(-s, s + 1, (N, 2), generator=generator, device=gdev).to(dev)
        shift = shift.masked_fill(keep[:, None], 0)
        pad = torch.nn.functional.pad(img, (s, s, s, s))  # (N, c, h + 2s, w + 2s)
        rows = (s - shift[:, 0])[:, None] + torch.arange(h, device=dev)  # (N, h)
        cols = (s - shift[:, 1])[:, None] + torch.arange(w, device=dev)  # (N, w)
        idx = torch.arange(N, device=dev)[:, None, None]
        img = pad[idx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (N, c, h, w)
    if flip:
        mirror = (torch.rand(N, generator=generator, device=gdev).to(dev) < 0.5) & ~keep
        img = torch.where(mirror[:, None, None, None], img.flip(-1), img)
    out = img.reshape(N, -1)
    if contrast > 0:
        u = torch.rand(N, generator=generator, device=gdev, dtype=torch.float64).to(device=dev, dtype=x.dtype)
        gain = torch.where(keep, torch.ones_like(u), 1 + contrast * (2 * u - 1))  # (N,)
        out = out * gain[:, None]
    if noise > 0:
        eps = torch.randn(out.shape, generator=generator, device=gdev, dtype=torch.float64).to(device=dev, dtype=x.dtype)
        rms = out.pow(2).mean(1, keepdim=True).sqrt()  # (N, 1)
        out = torch.where(keep[:, None], out, out + noise * rms * eps)
    groups = torch.arange(n, device=dev).repeat_interleave(n_aug)
    return out.contiguous(), groups
