"""Batched 2-D Gabor fits of receptive fields, with R^2 and Ringach's (n_x, n_y).

Model (pixel coordinates: ``x`` = column, ``y`` = row, pixel centres on integers)::

    x' =  (x - x0) cos(theta) + (y - y0) sin(theta)          # along the carrier (wave vector)
    y' = -(x - x0) sin(theta) + (y - y0) cos(theta)          # along the bars
    g(x, y) = A exp(-x'^2 / (2 sigma_x^2) - y'^2 / (2 sigma_y^2)) cos(2 pi f x' + phase)

``theta`` in [0, pi) is the direction of the wave vector (perpendicular to the bars), ``f`` in
cycles/pixel, ``A >= 0``, ``phase`` in (-pi, pi]. Goodness of fit ``R^2 = 1 - SSE / SST`` with
``SST = sum (w - mean w)^2``. Ringach's shape numbers (Ringach, J. Neurophysiol. 2002):
``n_x = sigma_x f``, ``n_y = sigma_y f``.

Fit: variable projection. For fixed ``(x0, y0, theta, f, sigma_x, sigma_y)`` the model is linear
in ``(a, b)`` with ``g = env (a cos(2 pi f x') + b sin(2 pi f x'))``; ``(a, b)`` solve a 2 x 2 least
squares per unit, so amplitude and phase never need a start. The six non-linear parameters of
every unit and every start are optimised together by Adam on ``SSE / ||w||^2`` (a block of
units with all their starts in one batch; each unit's fit is independent of the others); starts
come from the centre of mass (position), the FFT peak (orientation, frequency) and the spatial
spread (width). After a fifth of the steps each unit keeps its best
start, and only that one is polished.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from structlearn.structure.receptive_fields import check_filters, receptive_field_stats

__all__ = ["GaborFit", "fit_gabor", "gabor_render", "gabor_pairs", "gabor_summary"]

BLOCK_ELEMENTS = 2**18  # (starts x units, pixels) entries per fitted block
# blocks are multiples of MIN_BLOCK_UNITS: ATen's vectorised loops step by two vectors (32 floats
# with AVX-512) and leave a scalar tail that rounds differently, so each unit stays on its side
MIN_BLOCK_UNITS = 32


@dataclass(frozen=True)
class GaborFit:
    """Per-unit Gabor parameters, every field a tensor of shape ``(n_units,)``.

    Positions and widths in pixels, ``frequency`` in cycles/pixel, angles in radians.
    Empty (all-zero) units have ``empty = True``, ``amplitude = 0`` and ``r2 = 0``.
    """

    x0: Tensor  # column of the envelope centre
    y0: Tensor  # row of the envelope centre
    theta: Tensor  # wave-vector direction in [0, pi), from +x (columns) towards +y (rows)
    frequency: Tensor  # cycles / pixel
    phase: Tensor  # (-pi, pi]
    sigma_x: Tensor  # envelope width along the wave vector (pixels)
    sigma_y: Tensor  # envelope width along the bars (pixels)
    amplitude: Tensor  # >= 0
    r2: Tensor  # 1 - SSE / SST
    nx: Tensor  # sigma_x * frequency (Ringach 2002)
    ny: Tensor  # sigma_y * frequency
    empty: Tensor  # bool, all-zero filter

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _grid(h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor, float]:
    """Normalised coordinates ``u`` (columns) and ``v`` (rows), each ``(H*W,)``, and the
    scale ``L`` in pixels per normalised unit."""
    scale = max(h, w) / 2.0
    v = (torch.arange(h, device=like.device, dtype=like.dtype) - (h - 1) / 2) / scale
    u = (torch.arange(w, device=like.device, dtype=like.dtype) - (w - 1) / 2) / scale
    return u.repeat(h), v.repeat_interleave(w), scale


def _basis(params: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine and sine Gabor bases ``(B, P)`` for ``params (B, 6)`` =
    ``(x0, y0, theta, log f, log sigma_x, log sigma_y)`` in normalised units."""
    x0, y0, th, lf, lsx, lsy = params.unbind(1)  # (B,)
    du = u[None] - x0[:, None]  # (B, P)
    dv = v[None] - y0[:, None]
    c, s = torch.cos(th)[:, None], torch.sin(th)[:, None]
    xr = du * c + dv * s
    yr = -du * s + dv * c
    env = torch.exp(-0.5 * (xr * torch.exp(-lsx)[:, None]).square() - 0.5 * (yr * torch.exp(-lsy)[:, None]).square())
    arg = (2 * math.pi) * torch.exp(lf)[:, None] * xr
    return env * torch.cos(arg), env * torch.sin(arg)


def _project(w: Tensor, bc: Tensor, bs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares ``(a, b)`` for ``w ~ a bc + b bs`` per row, and the residual SSE; ``(B,)`` each."""
    cc, ss, cs = (bc * bc).sum(1), (bs * bs).sum(1), (bc * bs).sum(1)
    wc, ws = (w * bc).sum(1), (w * bs).sum(1)
    ridge = 1e-4 * (cc + ss) + 1e-6  # keeps det > 0 under float32 rounding (Cauchy-Schwarz: cc ss >= cs^2)
    det = (cc + ridge) * (ss + ridge) - cs * cs
    a = ((ss + ridge) * wc - cs * ws) / det
    b = ((cc + ridge) * ws - cs * wc) / det
    sse = (w - a[:, None] * bc - b[:, None] * bs).square().sum(1)
    return a, b, sse


def _fft_peak(filters: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Dominant non-DC spatial frequency of each filter: ``(fx, fy)`` in cycles/pixel, ``(n,)``
    each, from the zero-padded power spectrum (half plane ``fx >= 0``)."""
    n, h, w = filters.shape
    spec = torch.fft.rfft2(filters - filters.mean((1, 2), keepdim=True), s=(pad, pad)).abs().square()  # (n, pad, pad//2+1)
    fy = torch.fft.fftfreq(pad, device=filters.device, dtype=filters.dtype)  # (pad,)
    fx = torch.fft.rfftfreq(pad, device=filters.device, dtype=filters.dtype)  # (pad//2+1,)
    spec[:, 0, 0] = 0
    idx = spec.flatten(1).argmax(1)  # (n,)
    nx = fx.numel()
    return fx[idx % nx], fy[idx // nx]


def _init_starts(filters: Tensor, n_starts: int, scale: float) -> Tensor:
    """Starting points ``(S, n, 6)`` in normalised units."""
    n, h, w = filters.shape
    stats = receptive_field_stats(filters, k=1)
    com = stats["com"]  # (n, 2) row, col
    x0 = (com[:, 1] - (w - 1) / 2) / scale
    y0 = (com[:, 0] - (h - 1) / 2) / scale
    fx, fy = _fft_peak(filters, pad=4 * max(h, w))
    f = torch.sqrt(fx.square() + fy.square()).clamp(min=0.5 / max(h, w), max=0.5)  # cycles/pixel
    th = torch.atan2(fy, fx)
    sig = stats["spread"].clamp(min=0.7, max=float(max(h, w)))  # pixels
    # (frequency factor, width factor, orientation offset) per start; the first is the data-driven one.
    table = [(1.0, 1.0, 0.0), (1.0, 0.6, 0.0), (0.7, 1.0, 0.0), (1.3, 0.6, 0.0),
             (1.0, 1.0, math.pi / 8), (1.0, 1.0, -math.pi / 8), (0.5, 1.4, 0.0), (1.0, 0.4, 0.0)]
    if n_starts > len(table):
        raise ValueError(f"n_starts={n_starts} out of range; allowed: [1, {len(table)}]")
    starts = []
    for ff, sf, dth in table[:n_starts]:
        lf = torch.log(f * ff * scale)
        ls = torch.log(sig * sf / scale)
        starts.append(torch.stack([x0, y0, th + dth, lf, ls, ls], dim=1))  # (n, 6)
    return torch.stack(starts)  # (S, n, 6)


def fit_gabor(
    filters: Tensor,
    *,
    steps: int = 300,
    n_starts: int = 4,
    lr: float = 0.05,
) -> GaborFit:
    """Fit one Gabor (module docstring) to each filter, all starts of a block of units in one
    batch. Each unit's fit depends on its filter alone, so the units run in blocks of
    ``BLOCK_ELEMENTS / (n_starts H W)`` (at least ``MIN_BLOCK_UNITS``) whose working set stays in
    cache: 1.4-2x faster than one batch of a whole 1024-unit layer (one core; NOTES.md section
    18), and the one-batch fits bit for bit. The starts are computed for the whole layer first:
    their centre of mass is a matrix-vector product whose BLAS kernel, and so its rounding,
    depends on the number of rows.

    Args:
        filters: ``(n_units, H, W)`` float, any device; all-zero units are flagged, not fitted.
        steps: Adam steps (``>= 0``): the first ``steps // 5`` run every start at rate ``lr``, the
            rest polish each unit's best start with a cosine-decayed rate.
        n_starts: starting points per unit (1..8).
        lr: Adam learning rate on the normalised parameters (``> 0``).

    Returns:
        :class:`GaborFit` with tensors ``(n_units,)`` on the input's device and dtype.
    """
    check_filters(filters)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} out of range; allowed: integers >= 0")
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise ValueError(f"n_starts={n_starts!r} out of range; allowed: integers in [1, 8]")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} out of range; allowed: (0, inf)")
    n, h, w = filters.shape
    data = filters.detach()
    starts = _init_starts(data, n_starts, _grid(h, w, data)[2])  # (S, n, 6): one pass over the layer
    block = max(MIN_BLOCK_UNITS, BLOCK_ELEMENTS // (n_starts * h * w) // MIN_BLOCK_UNITS * MIN_BLOCK_UNITS)
    if n > block:  # units are independent: blocks whose working set stays in cache
        parts = [_fit_block(data[i : i + block], starts[:, i : i + block], steps, lr).as_dict() for i in range(0, n, block)]
        return GaborFit(**{k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    return _fit_block(data, starts, steps, lr)


def _fit_block(data: Tensor, starts: Tensor, steps: int, lr: float) -> GaborFit:
    """:func:`fit_gabor` of one block of units ``(n, H, W)`` from its starts ``(S, n, 6)``, all in
    one batch."""
    n_starts, (n, h, w) = starts.shape[0], data.shape
    u, v, scale = _grid(h, w, data)
    flat = data.flatten(1)  # (n, P)
    norm2 = flat.square().sum(1)  # (n,)
    empty = norm2 == 0
    target = flat / torch.where(empty, torch.ones_like(norm2), norm2.sqrt())[:, None]  # unit-norm rows
    tgt = target.repeat(n_starts, 1)  # (S*n, P)
    lo = torch.tensor([-2.0, -2.0, -1e9, math.log(0.2 / max(h, w) * scale), math.log(0.3 / scale), math.log(0.3 / scale)],
                      device=data.device, dtype=data.dtype)
    hi = torch.tensor([2.0, 2.0, 1e9, math.log(0.5 * scale), math.log(2.0 * max(h, w) / scale),
                       math.log(2.0 * max(h, w) / scale)], device=data.device, dtype=data.dtype)
    scout = steps // 5 if n_starts > 1 else 0  # all starts for a fifth of the steps, then the best only
    p = _adam(starts.reshape(-1, 6), tgt, u, v, scout, lr, lo, hi, decay=False)  # (S*n, 6)
    with torch.no_grad():
        sse = _project(tgt, *_basis(p, u, v))[2].reshape(n_starts, n)
        pick = sse.argmin(0) * n + torch.arange(n, device=data.device)  # (n,)
    p0 = p[pick]
    p1 = _adam(p0, target, u, v, steps - scout, lr, lo, hi, decay=True)
    with torch.no_grad():
        a0, b0, sse0 = _project(target, *_basis(p0, u, v))
        a, b, sse = _project(target, *_basis(p1, u, v))
        better = sse <= sse0  # keep the scout's point should the polish not improve it
        p = torch.where(better[:, None], p1, p0)
        a, b, sse = torch.where(better, a, a0), torch.where(better, b, b0), torch.where(better, sse, sse0)
        return _finalise(p, a, b, sse, target, norm2, empty, scale, h, w)


def _adam(start: Tensor, target: Tensor, u: Tensor, v: Tensor, steps: int, lr: float,
          lo: Tensor, hi: Tensor, decay: bool) -> Tensor:
    """``steps`` Adam steps on ``sum_b SSE_b`` (projected amplitudes) from ``start (B, 6)``, box
    ``[lo, hi]``; cosine-decayed learning rate when ``decay``. Returns detached ``(B, 6)``."""
    params = start.detach().clone().requires_grad_(True)
    if steps == 0:
        return params.detach()
    with torch.enable_grad():
        opt = torch.optim.Adam([params], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * (0.01 if decay else 1.0))
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            sse = _project(target, *_basis(params, u, v))[2]  # (B,)
            sse.sum().backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                params.copy_(torch.maximum(torch.minimum(params, hi), lo))
    return params.detach()


def _finalise(p: Tensor, a: Tensor, b: Tensor, sse: Tensor, target: Tensor, norm2: Tensor,
              empty: Tensor, scale: float, h: int, w: int) -> GaborFit:
    """Convert normalised parameters to pixels and canonical angles; compute R^2."""
    x0 = p[:, 0] * scale + (w - 1) / 2
    y0 = p[:, 1] * scale + (h - 1) / 2
    f = torch.exp(p[:, 3]) / scale
    sx = torch.exp(p[:, 4]) * scale
    sy = torch.exp(p[:, 5]) * scale
    amp = torch.sqrt(a.square() + b.square()) * norm2.sqrt()
    phase = -torch.atan2(b, a)  # a cos + b sin = A cos(arg + phase)
    th = p[:, 2]
    turns = torch.floor(th / math.pi)  # theta -> theta - turns pi; odd turns flip x' and so the phase
    theta = th - turns * math.pi
    odd = torch.remainder(turns, 2) == 1
    phase = torch.where(odd, -phase, phase)
    phase = torch.remainder(phase + math.pi, 2 * math.pi) - math.pi  # [-pi, pi)
    phase = torch.where(phase <= -math.pi, phase + 2 * math.pi, phase)
    sst = (target - target.mean(1, keepdim=True)).square().sum(1)
    r2 = torch.where(sst > 0, 1 - sse / torch.where(sst > 0, sst, torch.ones_like(sst)), torch.zeros_like(sst))
    zero = torch.zeros_like(amp)
    amp = torch.where(empty, zero, amp)
    r2 = torch.where(empty, zero, r2)
    return GaborFit(x0=x0, y0=y0, theta=theta, frequency=f, phase=phase, sigma_x=sx, sigma_y=sy,
                    amplitude=amp, r2=r2, nx=sx * f, ny=sy * f, empty=empty)


def gabor_render(fit: GaborFit, shape: tuple[int, int]) -> Tensor:
    """Evaluate each unit's fitted Gabor on an ``H x W`` pixel grid: ``(n_units, H, W)``."""
    h, w = shape
    y = torch.arange(h, device=fit.x0.device, dtype=fit.x0.dtype)[:, None]  # (H, 1)
    x = torch.arange(w, device=fit.x0.device, dtype=fit.x0.dtype)[None, :]  # (1, W)
    dx = x[None] - fit.x0[:, None, None]  # (n, 1, W)
    dy = y[None] - fit.y0[:, None, None]  # (n, H, 1)
    c, s = torch.cos(fit.theta)[:, None, None], torch.sin(fit.theta)[:, None, None]
    xr = dx * c + dy * s  # (n, H, W)
    yr = -dx * s + dy * c
    env = torch.exp(-0.5 * (xr / fit.sigma_x[:, None, None]).square() - 0.5 * (yr / fit.sigma_y[:, None, None]).square())
    carrier = torch.cos(2 * math.pi * fit.frequency[:, None, None] * xr + fit.phase[:, None, None])
    return fit.amplitude[:, None, None] * env * carrier


def gabor_pairs(filters: Tensor, fit: GaborFit) -> Tensor:
    """Filters beside their fits for a montage: ``(n_units, 2, H, W)``, pair ``i`` = (filter, fit),
    both divided by the filter's max ``|w|`` so a pair shares one colour scale."""
    check_filters(filters)
    model = gabor_render(fit, (filters.shape[1], filters.shape[2]))
    m = filters.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(filters.dtype).tiny)[:, None, None]
    return torch.stack([filters.detach() / m, model / m], dim=1)


def gabor_summary(fit: GaborFit) -> dict[str, float]:
    """Medians over non-empty units of R^2, frequency, widths, n_x, n_y; share with R^2 >= 0.85.

    Raises ``ValueError`` when every unit is empty.
    """
    keep = ~fit.empty
    if not bool(keep.any()):
        raise ValueError(f"all {fit.empty.numel()} units are empty (all-zero filters); nothing to summarise")
    out = {f"median_{k}": float(getattr(fit, k)[keep].median())
           for k in ("r2", "frequency", "sigma_x", "sigma_y", "nx", "ny")}
    out["share_r2_ge_0.85"] = float((fit.r2[keep] >= 0.85).to(fit.r2.dtype).mean())
    out["n_fitted"] = float(keep.sum())
    return out
