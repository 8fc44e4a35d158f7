"""Weight sharing with full coverage: every unit is one of ``C`` shared kernels, with its own gain and position.

Model: unit ``i`` (filter ``w_i: (H, W)``) is ``w_i ~ a_i place(K_{c_i}, t_i)``: kernel ``K_c``
(``k x k``, unit Frobenius norm) placed with its top-left at pixel ``t_i = (r_i, q_i)`` of a zero
``H x W`` image (cropping what falls outside), times a signed gain ``a_i``. Colour units
``w_i: (c, H, W)`` share colour kernels ``K_c: (c, k, k)`` (unit norm over all ``c k^2`` entries,
one placement for every input channel, not constrained to colour (x) space): everything below
holds with the patches and kernels flattened over the channels too, and a window's energy is
the sum over its channels. Every non-empty unit is covered by construction; how well is the
*weight error*

    E(C) = ||W - W_hat||_F / ||W||_F,

a rate-distortion curve of weight sharing (``C`` shared kernels against the error of the dense
layer they replace). ``W_hat x`` is exactly a ``Conv2d(c, C, k, padding=k-1)`` (``c = 1`` for
grayscale) followed by a per-unit gather and gain (:meth:`SharedKernels.conv_responses`), so
``E`` bounds how far the convolution is from the dense layer on any input.

Fit, a k-SVD with one atom per signal (Aharon, Elad and Bruckstein 2006; with shifts, as the
shift-invariant variants): each unit's ``k x k`` support window (its best window, ``k`` from
:func:`~structlearn.structure.conv.support_kernel_size`) is cut with a margin of ``max_shift``
pixels, then, alternately,

1. assign: each unit takes the kernel, shift ``|d| <= max_shift`` and sign that maximise
   ``|<p_i(d), K_c>|`` (its gain is that inner product);
2. update: ``K_c`` moves to the leading eigenvector of ``sum_{i in c} p_i p_i^T`` (the best
   unit-norm kernel for its members in the least-squares sense, sign-free) by power iterations
   warm-started at the current kernel, without forming the ``k^2 x k^2`` matrices.

``C`` grows one kernel at a time up to 16, then by doubling, each step adding as seeds the
worst-explained units' patches (farthest-first); as the old kernels stay candidates, the error
can only fall with ``C`` (up to the alternation's local optimum). ``C`` is taken at the knee
of ``E`` against ``log C`` (:func:`convex_knee`) when the curve has one, else at the smallest
``C`` with ``E <= max_error``: a layer whose units are local but all different (no small set of
kernels explains them) has no knee, and the read-out says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlearn.structure.conv import KernelBank, support_kernel_size
from structlearn.structure.receptive_fields import best_windows, check_filters

__all__ = ["SharedKernels", "convex_knee", "fit_shared_kernels", "sharing_curve", "unit_error"]


@dataclass(frozen=True)
class SharedKernels(KernelBank):
    """``C`` kernels and, per unit, ``channel`` (-1: empty unit), signed ``gain`` and the kernel's
    top-left pixel ``(top, left)`` (may lie outside the image: the kernel is then cropped)."""

    kernels: Tensor  # (C, k, k), or (C, c, k, k) for c-channel (colour) units; unit norm
    channel: Tensor  # (n,) long
    gain: Tensor  # (n,)
    top: Tensor  # (n,) long
    left: Tensor  # (n,) long
    input_shape: tuple[int, int]
    weight_error: float  # ||W - W_hat||_F / ||W||_F

    @property
    def coverage(self) -> float:
        """Share of all units (empty ones included, as :attr:`ConvReadout.coverage`) that a kernel
        explains; every non-empty unit is, by construction."""
        return float((self.channel >= 0).double().mean())

    @property
    def in_channels(self) -> int:
        """Input channels ``c`` the kernels read (1 for grayscale)."""
        return 1 if self.kernels.ndim == 3 else int(self.kernels.shape[1])

    def dense(self) -> Tensor:
        """``W_hat: (n, H, W)`` (``(n, c, H, W)`` for colour kernels): each unit's gain times its
        kernel, placed and cropped."""
        return _place(self.kernels, self.channel, self.gain, self.top, self.left, self.input_shape)

    def conv2d(self) -> nn.Conv2d:
        """``Conv2d(c, C, k, padding=k-1, bias=False)`` holding the kernels: output cell
        ``(r + k - 1, q + k - 1)`` is the kernel placed at top-left ``(r, q)``."""
        k = self.kernel_size
        conv = nn.Conv2d(self.in_channels, self.channels, k, padding=k - 1, bias=False, device=self.kernels.device,
                         dtype=self.kernels.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.kernels if self.kernels.ndim == 4 else self.kernels[:, None])
        return conv

    def conv_responses(self, x: Tensor) -> Tensor:
        """Unit responses through the convolution: ``x (m, H, W)`` (``(m, c, H, W)`` for colour
        kernels) -> ``(m, n)``, equal to ``x.flatten(1) @ self.dense().flatten(1).T``."""
        k = self.kernel_size
        x4 = x if self.kernels.ndim == 4 else x[:, None]
        with torch.no_grad():
            out = self.conv2d()(x4.to(self.kernels.dtype))  # (m, C, H + k - 1, W + k - 1)
        live = self.channel >= 0
        r = (self.top + k - 1).clamp(0, out.shape[2] - 1)
        q = (self.left + k - 1).clamp(0, out.shape[3] - 1)
        picked = out[:, self.channel.clamp_min(0), r, q]  # (m, n)
        return torch.where(live[None], picked * self.gain[None], torch.zeros_like(picked))

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "kernel_size": self.kernel_size, "coverage": self.coverage,
                "weight_error": self.weight_error, "units_per_channel":
                torch.bincount(self.channel[self.channel >= 0], minlength=self.channels).tolist()}


def _place(kernels: Tensor, channel: Tensor, gain: Tensor, top: Tensor, left: Tensor,
           shape: tuple[int, int]) -> Tensor:
    """``(n, H, W)`` (``(n, c, H, W)`` for kernels ``(C, c, k, k)``): unit ``i``'s gain times its
    kernel with its top-left at ``(top_i, left_i)``, cropped to the image."""
    h, w = shape
    k = kernels.shape[-1]
    n = channel.shape[0]
    kern = kernels if kernels.ndim == 4 else kernels[:, None]  # (C, c, k, k)
    canvas = torch.zeros(n, h + 2 * k, w + 2 * k, kern.shape[1], dtype=kernels.dtype, device=kernels.device)
    live = channel >= 0
    if bool(live.any()):
        idx = live.nonzero()[:, 0]
        ar = torch.arange(k, device=kernels.device)
        rows = (top[idx].clamp(-k, h) + k)[:, None, None] + ar[None, :, None]
        cols = (left[idx].clamp(-k, w) + k)[:, None, None] + ar[None, None, :]
        canvas[idx[:, None, None], rows, cols] = gain[idx, None, None, None] * kern[channel[idx]].permute(0, 2, 3, 1)
    out = canvas[:, k:k + h, k:k + w].permute(0, 3, 1, 2)  # channels last while placing: one index per pixel
    return out if kernels.ndim == 4 else out[:, 0]


def _fields(filters: Tensor) -> Tensor:
    """``(n, c, H, W)`` from grayscale ``(n, H, W)`` (``c = 1``) or colour ``(n, c, H, W)``
    filters, checked (finite floating point, no empty dimension)."""
    if not isinstance(filters, Tensor) or filters.ndim not in (3, 4):
        shape = tuple(filters.shape) if isinstance(filters, Tensor) else type(filters).__name__
        raise ValueError(f"filters must be (n_units, H, W) or, for colour units, (n_units, c, H, W); got {shape}")
    check_filters(filters.flatten(0, 1) if filters.ndim == 4 else filters)
    return filters if filters.ndim == 4 else filters[:, None]


def _patches(f: Tensor, k: int, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each unit's best ``k x k`` window (``f: (n, c, H, W)``; a window's energy summed over the
    channels) with every shift ``|d| <= m``: ``(n, D, c*k*k)``, channel-major as ``(c, k, k)``,
    and the windows' top-left rows and columns per shift ``(n, D)``."""
    n, c, h, w = f.shape
    _, tl = best_windows(f.square().sum(1), k)  # (n, 2)
    pad = k + m
    padded = F.pad(f, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (n, Hp, Wp, c)
    ar = torch.arange(k, device=f.device)
    shifts = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    tops = torch.stack([tl[:, 0] + dy for dy, _ in shifts], 1)  # (n, D)
    lefts = torch.stack([tl[:, 1] + dx for _, dx in shifts], 1)
    ys = (tops + pad)[:, :, None, None] + ar[None, None, :, None]  # (n, D, k, 1)
    xs = (lefts + pad)[:, :, None, None] + ar[None, None, None, :]
    idx = torch.arange(n, device=f.device)[:, None, None, None]
    return padded[idx, ys, xs].permute(0, 1, 4, 2, 3).flatten(2), tops, lefts


def _assign(p: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Best (kernel, shift) per unit by ``|<p(d), K_c>|``: channel ``(n,)``, shift index ``(n,)``, gain ``(n,)``."""
    n, d, _ = p.shape
    s = p.reshape(n * d, -1) @ K.reshape(K.shape[0], -1).T  # (n D, C)
    s = s.reshape(n, d * K.shape[0])
    best = s.abs().argmax(1)
    gain = s.gather(1, best[:, None])[:, 0]
    return best % K.shape[0], best // K.shape[0], gain


def _update(p: Tensor, chan: Tensor, shift: Tensor, K: Tensor, steps: int = 10) -> Tensor:
    """Each used kernel -> towards the leading eigenvector of its members' scatter matrix
    ``sum_i p_i p_i^T``, by ``steps`` power iterations warm-started at the current kernel
    (``v <- S^T S v / ||.||``, batched over kernels without forming the ``k^2 x k^2`` matrices:
    O(n k^2) per step; each step can only raise ``sum_i <p_i, v>^2``, so the error never rises);
    sign fixed so that the largest entry is positive; unused kernels stay."""
    sel = p[torch.arange(p.shape[0], device=p.device), shift]  # (n, k*k)
    c, d = K.shape[0], sel.shape[1]
    v = K.reshape(c, d)
    for _ in range(steps):
        proj = (sel * v[chan]).sum(1)  # (n,)
        new = torch.zeros(c, d, dtype=p.dtype, device=p.device).index_add_(0, chan, proj[:, None] * sel)
        norm = new.norm(dim=1, keepdim=True)
        v = torch.where(norm > 0, new / norm.clamp_min(torch.finfo(p.dtype).tiny), v)
    sign = torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    return (v * torch.where(sign == 0, torch.ones_like(sign), sign)).reshape(K.shape)


def _refine(p: Tensor, K: Tensor, max_iter: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    chan, shift, gain = _assign(p, K)
    for _ in range(max_iter):
        K = _update(p, chan, shift, K)
        c2, s2, g2 = _assign(p, K)
        done = bool(torch.equal(c2, chan) and torch.equal(s2, shift))
        chan, shift, gain = c2, s2, g2
        if done:
            break
    return K, chan, shift, gain


def _seeds(p: Tensor, resid: Tensor, K: Tensor, count: int, max_cos: float = 0.999) -> Tensor:
    """Up to ``count`` new kernels, farthest-first weighted by misfit: each next seed is the
    centred patch of the unit maximising ``resid_i (1 - max |cos(p_i, kernels so far)|)`` (so
    seeds come from different groups of badly explained units); none within ``max_cos`` of a
    kernel already there."""
    centre = p.shape[1] // 2
    cand = p[:, centre]  # (n, k*k), each unit's own best window
    norms = cand.norm(dim=1)
    u = cand / norms.clamp_min(torch.finfo(p.dtype).tiny)[:, None]
    near = (u @ K.reshape(K.shape[0], -1).T).abs().amax(1)  # (n,)
    ok = (norms > 0) & (resid > 0)
    chosen: list[Tensor] = []
    for _ in range(count):
        score = torch.where(ok & (near < max_cos), resid * (1 - near), torch.full_like(resid, -1.0))
        i = int(score.argmax())
        if float(score[i]) <= 0:
            break
        chosen.append(u[i])
        near = torch.maximum(near, (u @ u[i]).abs())
    return torch.stack(chosen).reshape(-1, *K.shape[1:]) if chosen else K[:0]


def _result(f: Tensor, live: Tensor, K: Tensor, chan: Tensor, shift: Tensor, gain: Tensor, tops: Tensor,
            lefts: Tensor) -> SharedKernels:
    n = f.shape[0]
    full_c = torch.full((n,), -1, dtype=torch.long, device=f.device)
    full_g = torch.zeros(n, dtype=f.dtype, device=f.device)
    full_t = torch.zeros(n, dtype=torch.long, device=f.device)
    full_l = torch.zeros(n, dtype=torch.long, device=f.device)
    rows = torch.arange(chan.shape[0], device=f.device)
    full_c[live], full_g[live] = chan, gain
    full_t[live], full_l[live] = tops[rows, shift], lefts[rows, shift]
    shape = (int(f.shape[-2]), int(f.shape[-1]))
    w_hat = _place(K, full_c, full_g, full_t, full_l, shape)
    err = float((f - w_hat).norm() / f.norm().clamp_min(torch.finfo(f.dtype).tiny))
    return SharedKernels(K, full_c, full_g, full_t, full_l, shape, err)


def sharing_curve(filters: Tensor, *, kernel_size: int | None = None, max_shift: int = 1,
                  max_channels: int | None = None, max_iter: int = 20, fine_up_to: int = 16) -> list[SharedKernels]:
    """Fits with ``C = 1, 2, ..., fine_up_to`` kernels, then doubling (module docstring), up to
    ``max_channels`` (default: the number of non-empty units): one :class:`SharedKernels` per
    ``C``, in order.

    Args:
        filters: ``(n, H, W)`` effective (pruned) weights, or ``(n, c, H, W)`` colour units
            (kernels ``(C, c, k, k)``); float64 recommended.
        kernel_size: ``k`` (default: :func:`support_kernel_size`, 98% of the median unit's energy).
        max_shift: alignment shifts ``|d| <= max_shift`` around each unit's best window.
        max_iter: assign/update rounds per ``C``.
    """
    f4 = _fields(filters).detach()
    f = filters.detach()
    n, _, h, w = f4.shape
    live = f.flatten(1).abs().amax(1) > 0
    if not bool(live.any()):
        raise ValueError(f"all {n} units are empty (all-zero filters); no kernels to share")
    k = support_kernel_size(f) if kernel_size is None else int(kernel_size)
    if not 1 <= k <= min(h, w):
        raise ValueError(f"kernel_size={kernel_size!r} out of range; allowed: integers in [1, {min(h, w)}]")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift={max_shift!r} out of range; allowed: integers >= 0")
    n_live = int(live.sum())
    cap = n_live if max_channels is None else min(int(max_channels), n_live)
    if cap < 1:
        raise ValueError(f"max_channels={max_channels!r} out of range; allowed: integers >= 1")
    p, tops, lefts = _patches(f4[live], k, max_shift)
    centre = p[:, p.shape[1] // 2]
    _, vecs = torch.linalg.eigh(centre.T @ centre)
    K = vecs[:, -1].reshape(1, *f.shape[1:-2], k, k)
    K = K * torch.sign(K.flatten()[K.abs().flatten().argmax()])
    out = []
    while True:
        K, chan, shift, gain = _refine(p, K, max_iter)
        out.append(_result(f, live, K, chan, shift, gain, tops, lefts))
        if K.shape[0] >= cap:
            return out
        resid = p[torch.arange(p.shape[0]), shift].square().sum(1) - gain.square()
        step = 1 if K.shape[0] < fine_up_to else K.shape[0]  # C = 1, 2, ..., fine_up_to, then doubling
        new = _seeds(p, resid, K, min(step, cap - K.shape[0]))
        if new.shape[0] == 0:  # every unit is explained as well as a new seed would
            return out
        K = torch.cat([K, new])


def convex_knee(C: Sequence[int], error: Sequence[float], min_gap: float = 0.1) -> int | None:
    """Index of the knee of a falling curve ``error(log C)``: the point farthest *below* the chord
    from the first to the last point, both axes scaled to [0, 1] (Kneedle, Satopaa et al. 2011,
    for a convex decreasing curve); ``None`` when no point lies at least ``min_gap`` below it
    (the curve has no knee: every added kernel buys about as much as the last)."""
    u = np.log(np.asarray(C, dtype=np.float64))
    v = np.asarray(error, dtype=np.float64)
    if u.size < 3 or u[-1] == u[0] or v[0] == v[-1]:
        return None
    un = (u - u[0]) / (u[-1] - u[0])
    vn = (v - v[-1]) / (v[0] - v[-1])  # 1 at the first point, 0 at the last
    below = (1 - un) - vn  # chord minus curve
    i = int(np.argmax(below))
    return i if below[i] >= min_gap else None


def fit_shared_kernels(filters: Tensor, *, channels: int | None = None, max_error: float = 0.25,
                       **kwargs: Any) -> tuple[SharedKernels, dict[str, Any]]:
    """The fit at ``channels`` kernels when given; else at the knee of the error-vs-``C`` curve
    (:func:`convex_knee`) when it has one, else at the smallest ``C`` whose weight error is at
    most ``max_error`` (else the largest ``C``). Returns the fit and the curve ``{"C", "weight_error",
    "knee_C" (None: no knee), "chosen_by": "channels" | "knee" | "max_error"}``."""
    if not 0 < max_error <= 1:
        raise ValueError(f"max_error={max_error!r} out of range; allowed: (0, 1]")
    fits = sharing_curve(filters, **kwargs)
    cs = [s.channels for s in fits]
    errs = [s.weight_error for s in fits]
    k = convex_knee(cs, errs)
    if channels is not None:
        pick, how = next((s for s in fits if s.channels >= channels), fits[-1]), "channels"
    elif k is not None:
        pick, how = fits[k], "knee"
    else:
        pick, how = next((s for s in fits if s.weight_error <= max_error), fits[-1]), "max_error"
    return pick, {"C": cs, "weight_error": errs, "knee_C": None if k is None else cs[k], "chosen_by": how}


def unit_error(filters: Tensor, fit: SharedKernels) -> Tensor:
    """Per-unit relative error ``||w_i - w_hat_i|| / ||w_i||`` (0 for empty units): ``(n,)``."""
    f = filters.detach().to(fit.kernels.dtype)
    num = (f - fit.dense()).flatten(1).norm(dim=1)
    den = f.flatten(1).norm(dim=1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(f.dtype).tiny), torch.zeros_like(den))

