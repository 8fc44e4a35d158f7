"""Random patches from a list of grayscale ``(H, W)`` or colour ``(C, H, W)`` images, vectorised per image.

``sample_patches(images, (h, w), n, generator)`` draws ``n`` patches: the image of each
patch uniformly at random among the images that can hold it, the top-left corner uniformly
among that image's valid positions. Gathering uses one advanced-indexing op per image (not
per patch), so 500,000 8x8 patches take well under a second.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def as_tensors(images: Sequence[np.ndarray | Tensor]) -> list[Tensor]:
    """float32 tensors, all ``(H, W)`` or all ``(C, H, W)`` with the same ``C``."""
    out: list[Tensor] = []
    for i, im in enumerate(images):
        t = torch.as_tensor(np.asarray(im, dtype=np.float32)) if not isinstance(im, Tensor) else im.float()
        if t.ndim not in (2, 3):
            raise ValueError(f"image {i}: shape {tuple(t.shape)}; allowed: (H, W) grayscale or (C, H, W) colour")
        if out and t.shape[:-2] != out[0].shape[:-2]:
            raise ValueError(f"image {i}: shape {tuple(t.shape)} has other channels than image 0 {tuple(out[0].shape)}; "
                             f"allowed: every image (H, W), or every image (C, H, W) with one C")
        out.append(t)
    if not out:
        raise ValueError("no images given; need at least one (H, W) image")
    return out


def sample_patches(
    images: Sequence[np.ndarray | Tensor],
    size: tuple[int, int],
    n: int,
    generator: torch.Generator,
) -> Tensor:
    """``n`` random patches of ``size = (h, w)``: returns ``(n, h, w)`` float32, or ``(n, C, h, w)``
    from ``(C, H, W)`` images (the same draws as grayscale: one image and corner per patch)."""
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1 or n < 1:
        raise ValueError(f"patch size {size} and n={n} must be positive")
    imgs = as_tensors(images)
    fits = [i for i, im in enumerate(imgs) if im.shape[-2] >= h and im.shape[-1] >= w]
    if not fits:
        largest = max((tuple(im.shape[-2:]) for im in imgs), key=lambda s: s[0] * s[1])
        raise ValueError(f"patch {h}x{w} is larger than every image (largest {largest[0]}x{largest[1]}); "
                         f"allowed: h <= image height and w <= image width")
    which = torch.tensor(fits)[torch.randint(len(fits), (n,), generator=generator)]  # (n,)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)  # corner draws
    channels = tuple(imgs[0].shape[:-2])  # () grayscale, (C,) colour
    out = torch.empty(n, *channels, h, w, dtype=torch.float32)
    dy, dx = torch.arange(h), torch.arange(w)
    for i in fits:
        sel = (which == i).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        im = imgs[i]
        y0 = (u[sel, 0] * (im.shape[-2] - h + 1)).long()  # (m,)
        x0 = (u[sel, 1] * (im.shape[-1] - w + 1)).long()
        rows = (y0[:, None] + dy)[:, :, None]  # (m, h, 1)
        cols = (x0[:, None] + dx)[:, None, :]  # (m, 1, w)
        out[sel] = im[..., rows, cols].movedim(0, 1) if channels else im[rows, cols]  # (m, [C,] h, w)
    return out


def remove_mean(x: Tensor, dims: tuple[int, ...] = (-2, -1)) -> Tensor:
    """Subtract each patch's mean over ``dims``."""
    return x - x.mean(dim=dims, keepdim=True)
