"""From a :class:`DataConfig` to whitened train/test matrices, deterministically from a seed.

    images -> (1/f whitening of whole images) -> mosaics or patches -> (Gaussian clone)
           -> mean removal -> ZCA (fitted on train) -> train (n_train, d), test (n_test, d)

Two sources skip the images: ``kind: hierarchical`` draws the planted-depth model
(:mod:`structlearn.data.hierarchical`), ``kind: array`` draws ``n_train + n_test`` samples
without replacement from the user's ``.npy``/``.npz`` (:mod:`structlearn.data.arrays`;
per-sample mean removal for ``(n, H, W)`` images unless ``remove_mean: none``). Vectors
``(n, d)`` have ``input_shape (1, d)``. With ``data.color`` the images are RGB and every
sample is ``(3, H, W)``: means are removed per channel, ZCA whitens the ``3 H W`` values jointly
(so it decorrelates the channels too), the 1/f filter acts on each channel.

The same seed gives bit-identical data on CPU, so a resumed run rebuilds exactly the data it
was trained on instead of storing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from structlearn.data.arrays import load_array
from structlearn.data.hierarchical import hierarchical
from structlearn.data.images import load_images
from structlearn.data.mosaics import gaussian_clone, make_mosaics
from structlearn.data.patches import sample_patches
from structlearn.data.whiten import DEVICE_MIN_DIM, ZCA, whiten_one_over_f

if TYPE_CHECKING:  # the config is read, never imported: data sits below config
    from structlearn.config import DataConfig


@dataclass
class Prepared:
    train: Tensor  # (n_train, d) float32, whitened
    test: Tensor  # (n_test, d) float32, whitened with the train statistics
    input_shape: tuple[int, ...]  # (H, W), or (C, H, W) for colour: rows of a first-layer weight are images
    tile_map: Tensor | None  # (H, W) long for mosaics, else None
    whitener: ZCA | None


def _draw(cfg: DataConfig, images, n: int, g: torch.Generator) -> Tensor:
    if cfg.kind == "mosaic":
        return make_mosaics(images, cfg.grid, cfg.tile, n, g, remove_mean=cfg.remove_mean).x
    p = sample_patches(images, cfg.patch, n, g)
    return p - p.mean(dim=(-2, -1), keepdim=True) if cfg.remove_mean != "none" else p


def _samples(cfg: "DataConfig", n: int, g: torch.Generator) -> Tensor:
    """``n`` samples ``(n, H, W)`` (vectors as ``(n, 1, d)``) of a planted or user-array source."""
    if cfg.kind == "hierarchical":
        x, _ = hierarchical(n, cfg.depth, tuple(cfg.dims), tuple(cfg.modulation), g)
        return x.float()[:, None, :]
    a = torch.from_numpy(load_array(cfg.source))
    if a.shape[0] < n:
        raise ValueError(f"array file {cfg.source!r} has {a.shape[0]} samples; data.n_train + data.n_test = {n}; "
                         f"allowed: at most {a.shape[0]}")
    a = a[torch.randperm(a.shape[0], generator=g)[:n]]
    if a.ndim == 2:
        return a[:, None, :]
    return a - a.mean(dim=(1, 2), keepdim=True) if cfg.remove_mean != "none" else a


def prepare(cfg: "DataConfig", seed: int, device: torch.device | str | None = None) -> Prepared:
    """Build the data of a run (CPU, float32). ``device``: the run's accelerator; when it is not
    the CPU and the samples have at least ``DEVICE_MIN_DIM`` values, ZCA is fitted and applied
    there (:class:`~structlearn.data.whiten.ZCA`); the result comes back to the CPU."""
    g = torch.Generator().manual_seed(seed)
    if cfg.kind in ("hierarchical", "array"):
        x = _samples(cfg, cfg.n_train + cfg.n_test, g)
    else:
        images = load_images(cfg.source, cfg.images, cfg.color)
        need = cfg.tile if cfg.kind == "mosaic" else cfg.patch
        if not any(im.shape[-2] >= need[0] and im.shape[-1] >= need[1] for im in images):
            largest = max(images, key=lambda im: im.size).shape[-2:]
            raise ValueError(f"{cfg.kind} size {list(need)} is larger than every image (largest {largest[0]}x{largest[1]}); "
                             f"allowed: at most the image size")
        if cfg.whitening == "one_over_f":
            images = [whiten_one_over_f(im, cfg.f0_fraction) for im in images]
        x = _draw(cfg, images, cfg.n_train + cfg.n_test, g)  # (n, H, W) or (n, C, H, W)
    shape = tuple(x.shape[1:])
    x = x.reshape(x.shape[0], -1)
    if cfg.gaussian_clone:
        d = x.shape[1]
        if cfg.n_train <= d:
            raise ValueError(f"data.gaussian_clone needs n_train > d={d}; got n_train={cfg.n_train}")
        x = gaussian_clone(x[: cfg.n_train], cfg.n_train + cfg.n_test, g)
    train, test = x[: cfg.n_train], x[cfg.n_train:]
    whitener = None
    if cfg.whitening == "zca":
        on = device if device is not None and torch.device(device).type != "cpu" and train.shape[1] >= DEVICE_MIN_DIM else None
        whitener = ZCA(train.shape[1], cfg.zca_floor).fit(train, on)
        train, test = whitener(train, on).float(), whitener(test, on).float()
    elif cfg.whitening == "one_over_f":  # images already whitened: scale to unit pixel variance
        s = train.std()
        train, test = train / s, test / s
    tile_map = None
    if cfg.kind == "mosaic":
        from structlearn.data.mosaics import make_tile_map

        tile_map = make_tile_map(cfg.grid, cfg.tile)
    return Prepared(train.contiguous(), test.contiguous(), tuple(int(v) for v in shape), tile_map, whitener)
