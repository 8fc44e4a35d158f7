"""Weight sharing -> convolution: read a ``torch.nn.Conv2d`` out of a stack of receptive fields.

Model: unit ``i`` with filter ``w_i: (H, W)`` is explained by channel ``c`` at output cell
``(o_y, o_x)`` when ``w_i ~ sign_i * scale_i * place(K_c, o_y s_y - p_y, o_x s_x - p_x)``, where
``place(K, r, q)`` puts the ``k x k`` kernel with its top-left at pixel ``(r, q)`` of an ``H x W``
zero image (cropping what falls outside). Then ``<w_i, x> ~ sign_i scale_i Conv2d(x)[c, o_y, o_x]``
for a ``Conv2d(1, C, k, stride=(s_y, s_x), padding=(p_y, p_x), bias=False)`` with weights ``K``.
The match score is the cosine ``NCC = <w_i, place(K_c, .)> / (||w_i|| ||place(K_c, .)||)``
(uncentred: zero-padded kernels have no meaningful mean); a unit is *covered* when
``|NCC| >= threshold``. ``scale_i = |<w_i, place>| / ||place||^2``.

Steps (all batched over units; Python loops only over clusters):

1. kernel size ``k``: the smallest window whose best placement holds ``energy_keep`` of ``|w|^2``
   for the median unit (:func:`support_kernel_size`), unless given.
2. align: crop a ``P x P`` window (``P = k + 2 max(max_shift, (k-1)//2)``) around each unit's
   rounded centre of mass (``|w|^2``-weighted).
3. cluster: cosine similarity of the aligned crops maximised over shifts ``|d| <= max_shift`` and
   over sign; greedy seeds by degree (the unit with most neighbours above ``threshold`` founds a
   cluster of its unassigned neighbours; clusters smaller than ``min_units`` are dropped). Each
   cluster's sign- and shift-aligned mean crop, cut to its best ``k x k`` window, is one kernel.
4. stride: template-match every unit against every kernel at stride 1; per axis the stride is the
   most common gap between neighbouring distinct kernel positions of one channel, the phase the
   most common position modulo the stride, the padding the smallest one putting that phase on the
   grid and the matched kernels inside the padded input.
5. assign on the conv grid, then refine: each kernel becomes the sign-aligned mean of its covered
   units' patches (re-cut to the best ``k x k`` window of a ``k + 2`` margin, which corrects
   one-pixel misalignment), and the units are assigned again (``refine`` rounds).

Pooling (optional): unit groups -> :func:`structlearn.structure.pooling.pooling_from_groups`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlearn.structure.pooling import PoolSpec, _mode, pooling_from_groups
from structlearn.structure.receptive_fields import best_windows, check_filters, receptive_field_stats, window_energy

__all__ = [
    "ConvReadout",
    "conv_from_filters",
    "conv_unit_responses",
    "equivalence_error",
    "support_kernel_size",
]


class KernelBank:
    """``channels`` and ``kernel_size`` of a read-out holding ``kernels: (C, k, k)``."""

    kernels: Tensor

    @property
    def channels(self) -> int:
        return int(self.kernels.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.kernels.shape[-1])


@dataclass(frozen=True)
class ConvReadout(KernelBank):
    """A convolutional stage equivalent to (part of) a dense layer.

    Per-unit tensors have shape ``(n_units,)``; uncovered units have ``channel = out_y = out_x = -1``,
    ``sign = scale = 0``.
    """

    kernels: Tensor  # (C, k, k) channel kernels
    stride: tuple[int, int]  # (rows, columns)
    padding: tuple[int, int]  # zero padding per side (rows, columns)
    input_shape: tuple[int, int]  # (H, W)
    output_shape: tuple[int, int]  # (H_out, W_out) of the conv
    channel: Tensor  # (n,) long
    out_y: Tensor  # (n,) long
    out_x: Tensor  # (n,) long
    sign: Tensor  # (n,) +1 / -1
    scale: Tensor  # (n,) >= 0
    ncc: Tensor  # (n,) best |NCC| on the conv grid (also for uncovered units)
    covered: Tensor  # (n,) bool: |NCC| >= threshold
    empty: Tensor  # (n,) bool: all-zero filter
    threshold: float
    pooling: PoolSpec | None = None

    @property
    def coverage(self) -> float:
        """Share of all units (empty ones included) that a channel explains."""
        return float(self.covered.to(torch.float64).mean())

    def conv2d(self) -> nn.Conv2d:
        """A fresh ``nn.Conv2d(1, C, k, stride, padding, bias=False)`` holding the kernels."""
        c, k = self.channels, self.kernel_size
        conv = nn.Conv2d(1, c, k, stride=self.stride, padding=self.padding, bias=False,
                         device=self.kernels.device, dtype=self.kernels.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.kernels[:, None])
        return conv

    def to_dict(self) -> dict:
        """JSON-ready summary (no tensors)."""
        return {
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "stride": list(self.stride),
            "padding": list(self.padding),
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "coverage": self.coverage,
            "n_units": int(self.covered.numel()),
            "n_covered": int(self.covered.sum()),
            "n_empty": int(self.empty.sum()),
            "threshold": self.threshold,
            "pooling": None if self.pooling is None else self.pooling.to_dict(),
        }


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"[{low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name}={value!r} out of range; allowed: integers in {allowed}")


def support_kernel_size(filters: Tensor, energy_keep: float = 0.98, quantile: float = 0.5) -> int:
    """Smallest ``k`` such that the ``quantile`` over non-empty units of the best ``k x k`` window's
    share of ``|w|^2`` is at least ``energy_keep`` (``min(H, W)`` if none is). Colour units
    ``(n, c, H, W)``: a pixel's energy is the sum over its channels."""
    if isinstance(filters, Tensor) and filters.ndim == 4:
        check_filters(filters.flatten(0, 1))
        energy = filters.square().sum(1)
    else:
        check_filters(filters)
        energy = filters.square()
    if not 0 < energy_keep <= 1:
        raise ValueError(f"energy_keep={energy_keep!r} out of range; allowed: (0, 1]")
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile={quantile!r} out of range; allowed: [0, 1]")
    keep = filters.flatten(1).abs().amax(1) > 0
    if not bool(keep.any()):
        raise ValueError(f"all {filters.shape[0]} units are empty (all-zero filters); no support to size")
    e = energy[keep]
    lo, hi = 1, min(e.shape[1], e.shape[2])
    while lo < hi:  # the best-window share is non-decreasing in k: bisect
        mid = (lo + hi) // 2
        share = best_windows(e, mid)[0]
        if float(torch.quantile(share, quantile)) >= energy_keep * (1 - 1e-6):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _crops(img: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """``size x size`` crops of ``img (n, H, W)`` at top-left ``(top, left)`` (``(n,)`` long, may be
    negative or run past the border: zero fill). Returns ``(n, size, size)``."""
    n, h, w = img.shape
    pad = size
    padded = F.pad(img, (pad, pad, pad, pad))  # (n, H+2pad, W+2pad)
    ar = torch.arange(size, device=img.device)
    ys = (top.clamp(-pad, h) + pad)[:, None] + ar[None]  # (n, size)
    xs = (left.clamp(-pad, w) + pad)[:, None] + ar[None]
    idx = torch.arange(n, device=img.device)[:, None, None]
    return padded[idx, ys[:, :, None], xs[:, None, :]]


def _shifted(patches: Tensor, s: int) -> list[tuple[int, int, Tensor]]:
    """All zero-filled shifts ``A(i + dy, j + dx)`` of ``patches (n, P, P)`` for ``|d| <= s``."""
    n, p, _ = patches.shape
    padded = F.pad(patches, (s, s, s, s))
    return [(dy, dx, padded[:, s + dy:s + dy + p, s + dx:s + dx + p])
            for dy in range(-s, s + 1) for dx in range(-s, s + 1)]


def _similarity(patches: Tensor, s: int) -> Tensor:
    """``max_{|d|<=s} |cos(A_i, shift_d A_j)|``, symmetrised: ``(n, n)`` for unit-norm ``patches``."""
    a = patches.flatten(1)  # (n, P^2)
    best = torch.zeros(a.shape[0], a.shape[0], device=a.device, dtype=a.dtype)
    for _, _, sh in _shifted(patches, s):
        best = torch.maximum(best, (a @ sh.flatten(1).T).abs())  # (n, n)
    return torch.maximum(best, best.T)


def _clusters(sim: Tensor, threshold: float, min_units: int, max_channels: int | None) -> list[Tensor]:
    """Greedy degree-seeded clusters of the graph ``sim >= threshold``; returns (seed-first) index lists."""
    adj = sim >= threshold
    free = torch.ones(sim.shape[0], dtype=torch.bool, device=sim.device)
    out: list[Tensor] = []
    while bool(free.any()) and (max_channels is None or len(out) < max_channels):
        deg = (adj & free[None, :]).sum(1)  # (n,)
        deg = torch.where(free, deg, torch.full_like(deg, -1))
        seed = int(deg.argmax())
        if int(deg[seed]) < min_units:
            break
        members = (adj[seed] & free).nonzero()[:, 0]
        members = torch.cat([members.new_tensor([seed]), members[members != seed]])
        out.append(members)
        free[members] = False
    return out


def _aligned_mean(patches: Tensor, members: Tensor, s: int) -> Tensor:
    """Mean of the members' crops after sign and shift alignment to the first (seed): ``(P, P)``."""
    seed = patches[members[0]].flatten()  # (P^2,)
    best = torch.full((members.numel(),), -1.0, device=patches.device, dtype=patches.dtype)
    aligned = torch.zeros_like(patches[members])
    for _, _, sh in _shifted(patches[members], s):
        dot = sh.flatten(1) @ seed  # (m,)
        better = dot.abs() > best
        best = torch.where(better, dot.abs(), best)
        aligned = torch.where(better[:, None, None], torch.sign(dot)[:, None, None] * sh, aligned)
    return aligned.mean(0)


def _best_window(img: Tensor, k: int) -> Tensor:
    """The ``k x k`` window of ``img (C, P, P)`` holding most ``|w|^2``, per channel: ``(C, k, k)``."""
    _, tl = window_energy(img, k)
    return _crops(img, tl[:, 0], tl[:, 1], k)


def _match(filters: Tensor, kernels: Tensor, stride: tuple[int, int], padding: tuple[int, int],
           min_overlap: float = 0.0, chunk: int = 256) -> dict[str, Tensor]:
    """Best channel and output cell per unit by cosine between the filter and the placed kernel.

    Placements that keep less than ``min_overlap`` of the kernel's energy inside the image
    (or none of it) are ignored.
    Returns per-unit ``ncc`` (signed), ``channel``, ``oy``, ``ox``, ``scale``, ``per_channel``
    ``(n, C)`` (best ``|NCC|`` per channel) and ``out_shape``.
    """
    n, h, w = filters.shape
    kw = kernels[:, None]  # (C, 1, k, k)
    ones = torch.ones(1, 1, h, w, device=filters.device, dtype=filters.dtype)
    kn2 = F.conv2d(ones, kw.square(), stride=stride, padding=padding)[0]  # (C, Ho, Wo) placed energy
    full = kernels.square().flatten(1).sum(1)[:, None, None]  # (C, 1, 1)
    valid = (kn2 >= min_overlap * full) & (kn2 > 1e-6 * full)
    denom = torch.where(valid, kn2, torch.ones_like(kn2)).sqrt()
    co, ho, wo = kn2.shape
    res: dict[str, list[Tensor]] = {key: [] for key in ("ncc", "channel", "oy", "ox", "scale", "per_channel")}
    for start in range(0, n, chunk):
        f = filters[start:start + chunk]
        rn = f.flatten(1).norm(dim=1)  # (m,)
        corr = F.conv2d(f[:, None], kw, stride=stride, padding=padding)  # (m, C, Ho, Wo)
        ncc = corr / denom / torch.where(rn > 0, rn, torch.ones_like(rn))[:, None, None, None]
        ncc = torch.where(valid[None], ncc, torch.zeros_like(ncc))
        idx = ncc.abs().flatten(1).argmax(1)  # (m,)
        ncc_best = ncc.flatten(1).gather(1, idx[:, None])[:, 0]
        c, rest = idx // (ho * wo), idx % (ho * wo)
        oy, ox = rest // wo, rest % wo
        res["per_channel"].append(ncc.abs().flatten(2).amax(2))  # (m, C)
        res["ncc"].append(ncc_best)
        res["channel"].append(c)
        res["oy"].append(oy)
        res["ox"].append(ox)
        res["scale"].append(corr.flatten(1).gather(1, idx[:, None])[:, 0].abs() / kn2[c, oy, ox])
    out = {key: torch.cat(v) for key, v in res.items()}
    out["out_shape"] = torch.tensor([ho, wo])
    return out


def _set_cover(per_channel: Tensor, live: Tensor, threshold: float, min_units: int) -> Tensor:
    """Greedy set cover: indices of the channels that, taken by most newly covered units first,
    each add at least ``min_units`` units with ``|NCC| >= threshold`` (at least one channel)."""
    can = (per_channel >= threshold) & live[:, None]  # (n, C)
    todo = live.clone()
    keep: list[int] = []
    while True:
        gain = (can & todo[:, None]).sum(0)  # (C,)
        c = int(gain.argmax())
        if int(gain[c]) < min_units and keep:
            break
        keep.append(c)
        todo &= ~can[:, c]
        if int(gain[c]) < min_units:
            break
    return torch.tensor(keep, device=per_channel.device, dtype=torch.long)


def _grid(pos: Tensor, chan: Tensor, k: int, size: int) -> tuple[int, int]:
    """Stride and padding along one axis from kernel top-left positions ``pos`` of one channel each."""
    gaps = [torch.unique(pos[chan == c]).diff() for c in torch.unique(chan)]
    stride = max(_mode(torch.cat(gaps), 1), 1)
    phase = _mode(torch.remainder(pos, stride), 0)
    on = torch.remainder(pos, stride) == phase
    need = max(0, -int(pos[on].min()), int(pos[on].max()) + k - size)
    pad = -phase % stride
    while pad < need:
        pad += stride
    return stride, min(pad, k - 1)


def conv_from_filters(
    filters: Tensor,
    *,
    kernel_size: int | None = None,
    threshold: float = 0.9,
    max_shift: int = 2,
    min_units: int = 2,
    energy_keep: float = 0.98,
    max_channels: int | None = None,
    refine: int = 2,
    groups: Tensor | None = None,
    pool_extent: int = 4,
) -> ConvReadout:
    """Read a convolution out of receptive fields (module docstring for the steps).

    Args:
        filters: ``(n_units, H, W)`` float, typically pruned (exact zeros); any device.
        kernel_size: ``k``; ``None`` = :func:`support_kernel_size` with ``energy_keep``.
        threshold: cosine needed to join a cluster and to count as covered, in (0, 1].
        max_shift: largest alignment shift (pixels) tried when comparing crops, ``>= 0``.
        min_units: smallest cluster that becomes a channel, ``>= 1``.
        energy_keep: energy share for the automatic kernel size, in (0, 1].
        max_channels: cap on the number of channels (``None``: no cap).
        refine: kernel re-estimation rounds after the first assignment, ``>= 0``.
        groups: optional ``(n_units,)`` group id per unit -> pooling stage.
        pool_extent: largest pooling window span in conv cells, ``>= 1``.

    Returns:
        :class:`ConvReadout`. Raises ``ValueError`` for bad shapes or ranges, when every unit is
        empty, or when no cluster reaches ``min_units`` (no weight sharing to read out).
    """
    check_filters(filters)
    n, h, w = filters.shape
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} out of range; allowed: (0, 1]")
    _check_int("max_shift", max_shift, 0)
    _check_int("min_units", min_units, 1)
    _check_int("refine", refine, 0)
    if max_channels is not None:
        _check_int("max_channels", max_channels, 1)
    if groups is not None and (groups.shape != (n,) or groups.is_floating_point()):
        raise ValueError(f"groups must be an integer tensor of shape ({n},), got {groups.dtype} {tuple(groups.shape)}")
    if kernel_size is not None:
        _check_int("kernel_size", kernel_size, 1, min(h, w))
    f = filters.detach()
    empty = f.flatten(1).abs().amax(1) == 0  # (n,)
    if bool(empty.all()):
        raise ValueError(f"all {n} units are empty (all-zero filters); nothing to read out")
    k = kernel_size if kernel_size is not None else support_kernel_size(f, energy_keep)

    # 2. aligned crops around the rounded centre of mass
    live = (~empty).nonzero()[:, 0]  # (n_live,)
    fl = f[live]
    com = receptive_field_stats(fl, k=1)["com"].round().long()  # (n_live, 2)
    p = k + 2 * max(max_shift, (k - 1) // 2)
    crops = _crops(fl, com[:, 0] - p // 2, com[:, 1] - p // 2, p)  # (n_live, P, P)
    cn = crops.flatten(1).norm(dim=1)
    ok = cn > 0
    crops = crops[ok] / cn[ok][:, None, None]
    # 3. clusters -> kernels
    groups_idx = _clusters(_similarity(crops, max_shift), threshold, min_units, max_channels)
    if not groups_idx:
        raise ValueError(
            f"no cluster of >= min_units={min_units} units with cosine >= threshold={threshold}: "
            "no weight sharing found; lower threshold or min_units"
        )
    means = torch.stack([_aligned_mean(crops, g, max_shift) for g in groups_idx])  # (C, P, P)
    kernels = _best_window(means, k)  # (C, k, k)

    # 4. stride and padding from stride-1 template matching
    m1 = _match(f, kernels, (1, 1), (k - 1, k - 1), min_overlap=0.5)
    sel = _set_cover(m1["per_channel"], ~empty, threshold, min_units)  # drop redundant channels (e.g. border pieces)
    if sel.numel() < kernels.shape[0]:
        kernels = kernels[sel]
        m1 = _match(f, kernels, (1, 1), (k - 1, k - 1), min_overlap=0.5)
    good = (m1["ncc"].abs() >= threshold) & ~empty
    if not bool(good.any()):
        good = ~empty
    ty, tx = m1["oy"][good] - (k - 1), m1["ox"][good] - (k - 1)  # kernel top-left in pixels
    sy, py = _grid(ty, m1["channel"][good], k, h)
    sx, px = _grid(tx, m1["channel"][good], k, w)
    stride, padding = (sy, sx), (py, px)

    # 5. assign on the grid, refine kernels from the covered units' patches
    m = _match(f, kernels, stride, padding)
    for _ in range(refine):
        cov = (m["ncc"].abs() >= threshold) & ~empty
        if not bool(cov.any()):
            break
        top = m["oy"][cov] * sy - py
        left = m["ox"][cov] * sx - px
        ch = m["channel"][cov]
        inside = (top >= 0) & (left >= 0) & (top + k <= h) & (left + k <= w)  # kernel not cut by the border
        n_in = torch.bincount(ch, weights=inside.to(f.dtype), minlength=kernels.shape[0])
        use = (inside | (n_in[ch] == 0)).to(f.dtype)  # border units only for channels without inner ones
        patch = _crops(f[cov], top - 1, left - 1, k + 2) * torch.sign(m["ncc"][cov])[:, None, None]  # (m, k+2, k+2)
        wgt = use / m["scale"][cov].clamp_min(torch.finfo(f.dtype).tiny)
        acc = torch.zeros(kernels.shape[0], k + 2, k + 2, device=f.device, dtype=f.dtype)
        acc.index_add_(0, ch, patch * wgt[:, None, None])
        cnt = torch.bincount(ch, weights=use, minlength=kernels.shape[0])
        has = cnt > 0
        new = _best_window(acc / cnt.clamp_min(1)[:, None, None], k)
        kernels = torch.where(has[:, None, None], new, kernels)
        m = _match(f, kernels, stride, padding)
    sel = _set_cover(m["per_channel"], ~empty, threshold, min_units)
    if sel.numel() < kernels.shape[0]:
        kernels = kernels[sel]
        m = _match(f, kernels, stride, padding)

    covered = (m["ncc"].abs() >= threshold) & ~empty
    neg = torch.full_like(m["channel"], -1)
    zero = torch.zeros_like(m["scale"])
    channel = torch.where(covered, m["channel"], neg)
    out_y = torch.where(covered, m["oy"], neg)
    out_x = torch.where(covered, m["ox"], neg)
    pool = None
    if groups is not None:
        pool = pooling_from_groups(channel, out_y, out_x, groups.to(channel.device), max_extent=pool_extent)
    ho, wo = (int(v) for v in m["out_shape"])
    return ConvReadout(
        kernels=kernels, stride=stride, padding=padding, input_shape=(h, w), output_shape=(ho, wo),
        channel=channel, out_y=out_y, out_x=out_x,
        sign=torch.where(covered, torch.sign(m["ncc"]), zero),
        scale=torch.where(covered, m["scale"], zero),
        ncc=m["ncc"].abs(), covered=covered, empty=empty, threshold=float(threshold), pooling=pool,
    )


def _check_inputs(x: Tensor, readout: ConvReadout) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or tuple(x.shape[1:]) != readout.input_shape or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (n_samples >= 1, {readout.input_shape[0]}, "
                         f"{readout.input_shape[1]}), got {shape}")


def conv_unit_responses(readout: ConvReadout, x: Tensor) -> Tensor:
    """Conv-stage responses of the covered units (in unit order): ``(n_samples, n_covered)``,
    ``sign_i scale_i Conv2d(x)[c_i, o_y_i, o_x_i]`` for inputs ``x: (n_samples, H, W)``."""
    _check_inputs(x, readout)
    x = x.to(device=readout.kernels.device, dtype=readout.kernels.dtype)
    out = F.conv2d(x[:, None], readout.kernels[:, None], stride=readout.stride, padding=readout.padding)  # (m, C, Ho, Wo)
    cov = readout.covered
    gain = (readout.sign * readout.scale)[cov]  # (n_cov,)
    return out[:, readout.channel[cov], readout.out_y[cov], readout.out_x[cov]] * gain[None]


def equivalence_error(filters: Tensor, readout: ConvReadout, x: Tensor) -> Tensor:
    """``||dense(x) - conv(x)||_F / ||dense(x)||_F`` over the covered units, a 0-d tensor.

    ``dense(x) = x_flat @ W_cov^T`` with ``W_cov`` the covered units' filters; ``conv(x)`` from
    :func:`conv_unit_responses`. Raises ``ValueError`` if no unit is covered or ``dense(x) = 0``.
    """
    check_filters(filters)
    if filters.shape[0] != readout.covered.numel():
        raise ValueError(f"filters has {filters.shape[0]} units, the read-out {readout.covered.numel()}")
    if not bool(readout.covered.any()):
        raise ValueError("no unit is covered by a channel; the equivalence error is undefined")
    conv = conv_unit_responses(readout, x)  # (m, n_cov)
    dense = x.to(device=filters.device, dtype=filters.dtype).flatten(1) @ filters[readout.covered].flatten(1).T  # (m, n_cov)
    return response_error(dense, conv)


def response_error(dense: Tensor, conv: Tensor) -> Tensor:
    """``||dense - conv||_F / ||dense||_F`` (0-d) for two ``(m, n_covered)`` response matrices;
    ``ValueError`` when ``dense`` is zero (the error is undefined)."""
    den = dense.norm()
    if float(den) == 0:
        raise ValueError("dense(x) is zero at every covered unit; the equivalence error is undefined")
    return (dense - conv).norm() / den
