"""Colour receptive fields: each unit as a colour direction times a spatial field.

A colour unit ``W_i: (C, H, W)`` is the ``C x HW`` matrix ``M_i = U S V^T``. Its leading term
``s_1 u_1 v_1^T`` is the unit's *dominant colour component*: the colour direction
``axis_i = u_1`` (unit norm over the channels) times the signed spatial field
``spatial_i = s_1 v_1`` (reshaped ``(H, W)``). ``separability_i = s_1^2 / sum_j s_j^2`` is the share
of the unit's squared weight that this term holds: 1 for a colour-separable filter (one colour
profile everywhere), ``1 / C`` at the least for a field whose channels are unrelated.
The sign is fixed by ``sum_c axis_c >= 0``, so an achromatic unit has ``axis = (1, 1, 1)/sqrt(3)``
and its sign lives in the spatial field.

Hoyer and Hyvarinen (2000, "Independent component analysis applied to feature extraction from
colour and stereo images", Network 11:191-210) found the ICA filters of colour patches to be
mostly achromatic edge filters plus red-green and blue-yellow opponent ones, nearly
colour-separable: :func:`color_summary` reports the share of achromatic units
(``|cos(axis, (1,1,1)/sqrt 3)| >= cos 25 deg``) and the median separability.

The spatial read-outs (Gabor fits, shared kernels, the convolution read-out) of a colour layer
run on ``spatial``; the locality measures on the whole colour field
(:func:`structlearn.structure.locality.pixel_field`).

Colour convolution: a channel ``c`` of the spatial read-out (kernel ``K_c``, covered units ``i``
with ``spatial_i ~ g_i place(K_c)``, ``g_i = sign_i scale_i``) gets one colour ``a_c``, the leading
eigenvector of ``sum_i g_i^2 axis_i axis_i^T`` (sign: ``sum a_c >= 0``), so its
``Conv2d(3, C, k)`` kernel is ``a_c (x) K_c`` and unit ``i``'s response is
``g_i (axis_i . a_c) Conv2d(x)[c, o_y, o_x]``. :func:`color_equivalence_error` compares it with
the dense responses on real colour inputs: it is small only when the units of a channel share
one colour as well as one spatial kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from structlearn.structure.conv import ConvReadout, response_error

ACHROMATIC_DEGREES = 25.0  # a colour axis within this angle of grey is achromatic


@dataclass
class ColorSplit:
    spatial: Tensor  # (n, H, W) signed field of the dominant colour component (zeros for empty units)
    axis: Tensor  # (n, C) unit-norm colour direction, sum >= 0 (NaN for empty units)
    separability: Tensor  # (n,) s_1^2 / sum s_j^2 (NaN for empty units)


def color_split(W: Tensor) -> ColorSplit:
    """Dominant colour component of every unit of ``W: (n, C, H, W)`` (module docstring); one
    batched SVD in float64."""
    if W.ndim != 4 or W.shape[0] == 0 or W.shape[1] < 2:
        raise ValueError(f"colour fields must be (n_units >= 1, C >= 2, H, W); got shape {tuple(W.shape)}")
    n, C, H, Wd = W.shape
    M = W.detach().double().reshape(n, C, H * Wd)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # (n, C, C), (n, C), (n, C, HW)
    axis, s1, v1 = U[:, :, 0], S[:, 0], Vh[:, 0, :]
    flip = torch.where(axis.sum(1) < 0, -1.0, 1.0).to(axis.dtype)
    axis, v1 = axis * flip[:, None], v1 * flip[:, None]
    tot = (S * S).sum(1)
    alive = tot > 0
    spatial = torch.where(alive[:, None], s1[:, None] * v1, torch.zeros_like(v1)).reshape(n, H, Wd)
    nan = torch.full_like(s1, math.nan)
    return ColorSplit(spatial.to(W.dtype), torch.where(alive[:, None], axis, nan[:, None]).to(W.dtype),
                      torch.where(alive, s1 * s1 / tot.clamp_min(torch.finfo(tot.dtype).tiny), nan).to(W.dtype))


def color_summary(split: ColorSplit) -> dict[str, float]:
    """Median separability, the achromatic share and the median angle to grey (degrees) over
    non-empty units."""
    alive = ~split.separability.isnan()
    if not bool(alive.any()):
        return {"separability_median": math.nan, "achromatic_fraction": math.nan, "angle_to_gray_median": math.nan}
    C = split.axis.shape[1]
    cos = (split.axis[alive].double().sum(1) / math.sqrt(C)).clamp(-1, 1).abs()
    angle = torch.rad2deg(torch.arccos(cos))
    return {"separability_median": float(split.separability[alive].median()),
            "achromatic_fraction": float((angle <= ACHROMATIC_DEGREES).double().mean()),
            "angle_to_gray_median": float(angle.median())}


@dataclass
class ColorConv:
    kernels: Tensor  # (C, 3, k, k): a_c (x) K_c
    colour: Tensor  # (C, 3) unit-norm channel colours a_c
    gain: Tensor  # (n_covered,) g_i (axis_i . a_c), the unit's factor on its conv output
    coherence: Tensor  # (n_covered,) |axis_i . a_c| (1: the unit has its channel's colour)


def color_conv(readout: ConvReadout, split: ColorSplit) -> ColorConv:
    """The colour convolution of a spatial read-out (module docstring)."""
    cov = readout.covered
    if not bool(cov.any()):
        raise ValueError("no unit is covered by a channel; no colour kernels to read")
    ch = readout.channel[cov]
    axis = split.axis[cov].double().nan_to_num(0.0)  # (m, 3)
    g = (readout.sign * readout.scale)[cov].double()
    scatter = torch.zeros(readout.channels, axis.shape[1], axis.shape[1], dtype=torch.float64)
    scatter.index_add_(0, ch, (g * g)[:, None, None] * axis[:, :, None] * axis[:, None, :])  # (C, 3, 3)
    colour = torch.linalg.eigh(scatter).eigenvectors[:, :, -1]  # (C, 3): the leading eigenvectors
    colour = colour * torch.where(colour.sum(1) < 0, -1.0, 1.0).to(colour.dtype)[:, None]
    dot = (axis * colour[ch]).sum(1)
    dt = readout.kernels.dtype
    return ColorConv((colour[:, :, None, None] * readout.kernels.double()[:, None]).to(dt), colour.to(dt),
                     (g * dot).to(dt), dot.abs().to(dt))


def color_equivalence_error(filters: Tensor, readout: ConvReadout, cc: ColorConv, x: Tensor) -> Tensor:
    """``||dense(x) - conv(x)||_F / ||dense(x)||_F`` over the covered units, for colour inputs
    ``x: (n, 3, H, W)`` and filters ``(n_units, 3, H, W)``; ``conv(x)`` is the ``Conv2d(3, C, k)``
    of ``cc.kernels`` times each unit's ``cc.gain`` (:func:`color_conv`)."""
    if filters.ndim != 4 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(filters.shape[1:]):
        raise ValueError(f"x must be (n_samples, *filters.shape[1:]) with filters (n_units, 3, H, W); "
                         f"got x {tuple(x.shape)} and filters {tuple(filters.shape)}")
    cov = readout.covered
    x = x.to(device=cc.kernels.device, dtype=cc.kernels.dtype)
    out = F.conv2d(x, cc.kernels, stride=readout.stride, padding=readout.padding)  # (m, C, Ho, Wo)
    conv = out[:, readout.channel[cov], readout.out_y[cov], readout.out_x[cov]] * cc.gain[None]
    dense = x.flatten(1) @ filters[cov].to(x).flatten(1).T  # (m, n_covered)
    return response_error(dense, conv)
