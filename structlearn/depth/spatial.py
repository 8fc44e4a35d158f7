"""Spatial stacking: dense layers applied convolutionally, each seeing ``k x k``
neighbourhoods of the previous layer's feature map, and the entropy of every layer's map.

    maps (n, C, H, W) --windows(k, stride)--> (n, H', W', C k k)
         --PCA-whiten to `units` + InfoMax (extended, relative Newton)--> codes
         --log|.|, standardised--> next maps (n, units, H', W')

This is the setting of the published entropy-per-layer curve (Yuan et al.): receptive fields
grow with depth, and the entropy is measured on the feature maps. :func:`spatial_profile`
returns ``[H_0, ..., H_L]``: ``H_0`` for the whitened first-layer windows (pixels), ``H_l``
for layer ``l``'s codes at the centre position, both as entropy per unit of the Gaussianised
codes, ``1/2 log(2 pi e) - TC / units`` (:mod:`structlearn.info.total_correlation`), on the
held-out samples. A layer's PCA and ICA are fitted on up to ``fit_samples`` training windows.

``shuffle`` (a generator) is the spatial control: every offset of a window is taken from an
independently permuted copy of the samples, so neighbouring positions of a map are
independent while each keeps its own channels' statistics.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from structlearn.build import PCAWhitening, log_abs
from structlearn.depth.gain import layer_entropy
from structlearn.functional.ica import infomax_newton, symmetric_orthogonalize


def windows(maps: Tensor, k: int, stride: int, shuffle: torch.Generator | None = None) -> Tensor:
    """``maps: (n, C, H, W)`` -> ``(n, H', W', C k k)`` (channel-major, then row, column of
    the window); with ``shuffle`` each of the ``k x k`` offsets comes from its own permutation
    of the ``n`` samples."""
    if maps.ndim != 4 or k < 1 or stride < 1 or k > min(maps.shape[2:]):
        raise ValueError(f"windows of {k}x{k} at stride {stride} on maps {tuple(maps.shape)}; allowed: "
                         f"(n, C, H, W) maps with k <= min(H, W) and stride >= 1")
    n, c, h, w = maps.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    if shuffle is None:
        p = maps.unfold(2, k, stride).unfold(3, k, stride)  # (n, C, H', W', k, k)
        return p.permute(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * k * k)
    parts = [maps[torch.randperm(n, generator=shuffle)][:, :, dy::stride, dx::stride][:, :, :ho, :wo]
             for dy in range(k) for dx in range(k)]
    return torch.stack(parts, -1).permute(0, 2, 3, 1, 4).reshape(n, ho, wo, c * k * k)


def fit_ica_layer(x: Tensor, units: int, g: torch.Generator, max_iter: int = 100) -> Callable[[Tensor], Tensor]:
    """PCA-whitening of ``x: (n, D)`` to ``units`` components, then full-batch extended InfoMax
    from a random orthonormal start; returns ``encode: (m, D) -> (m, units)`` float64."""
    pca = PCAWhitening(x, units)
    W0 = symmetric_orthogonalize(torch.randn(units, units, generator=g, dtype=torch.float64))
    W, _ = infomax_newton(pca(x).double(), W0, score="extended", max_iter=max_iter)
    return lambda z: pca(z).double() @ W.T


def entropy_per_unit(z: Tensor) -> float:
    return float(layer_entropy(z, "total_correlation"))


def spatial_profile(train: Tensor, test: Tensor, layers: Sequence[tuple[int, int]], units: int, g: torch.Generator,
                    shuffle: torch.Generator | None = None, max_iter: int = 100, fit_samples: int = 40000,
                    neighbourhoods: list[float | None] | None = None) -> list[float]:
    """Entropy per layer ``[H_0, ..., H_L]`` (nats per unit) of a spatial stack on images
    ``train, test: (n, C, H, W)``; ``layers``: ``(window, stride)`` per layer. The control
    ``shuffle`` applies from layer 2 on (layer 1's windows are pixels).

    ``neighbourhoods`` (a list, filled in place): for each layer ``l``, the entropy per unit
    of the ``k x k`` window of its map that layer ``l + 1`` reads (``k`` its window; ``None``
    for the last layer): the redundancy across neighbouring positions plus within them, i.e.
    what the next layer could remove."""
    maps = {"train": train, "test": test}
    H: list[float] = []
    for li, (k, stride) in enumerate(layers):
        win = {s: windows(m, k, stride, shuffle if li > 0 else None) for s, m in maps.items()}
        flat = win["train"].reshape(-1, win["train"].shape[-1])
        pick = torch.randperm(flat.shape[0], generator=g)[:fit_samples]
        h, w = win["test"].shape[1:3]
        if li == 0:
            H.append(entropy_per_unit(PCAWhitening(flat[pick], units)(win["test"][:, h // 2, w // 2])))
        encode = fit_ica_layer(flat[pick], units, g, max_iter)
        new = {}
        for s, wv in win.items():
            n, hh, ww, d = wv.shape
            codes = log_abs(encode(wv.reshape(-1, d)))
            codes = (codes - codes.mean(0)) / codes.std(0)
            new[s] = codes.reshape(n, hh, ww, units).permute(0, 3, 1, 2).float()
        maps = new
        H.append(entropy_per_unit(maps["test"][:, :, h // 2, w // 2]))
        if neighbourhoods is not None:
            if li + 1 < len(layers):
                side = None
                if shuffle is not None:  # its own copy of the stream: measuring must not change the stack
                    side = torch.Generator()
                    side.set_state(shuffle.get_state())
                nb = windows(maps["test"], layers[li + 1][0], layers[li + 1][1], side)
                neighbourhoods.append(entropy_per_unit(nb[:, nb.shape[1] // 2, nb.shape[2] // 2]))
            else:
                neighbourhoods.append(None)
    return H
