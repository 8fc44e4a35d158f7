"""Per-unit receptive-field metrics over a stack of filters ``W: (n_units, H, W)``.

Each unit's filter ``w`` (a row of a :class:`~structlearn.models.dense.DenseLayer` reshaped to
the input image) is read as a distribution of energy ``p(y, x) = w(y, x)^2 / sum w^2``:

- centre of mass     ``c = sum_{y,x} p(y, x) (y, x)``                          (row, column)
- spatial spread     ``s = sqrt(sum_{y,x} p(y, x) ((y - c_y)^2 + (x - c_x)^2))``
- window energy      ``max over k x k windows of sum_{window} w^2 / sum w^2``   (in [k^2/(HW), 1])
- participation ratio ``PR = (sum w^2)^2 / sum w^4``  (1 for one weight, H W for a uniform field;
  Ingrosso and Goldt, PNAS 2022; :func:`structlearn.structure.locality.participation_ratio`)
- energy radius      ``r_q = min r such that sum_{|(y,x) - c| <= r} p(y, x) >= q`` (q = 0.9: the
  radius around the centre of mass that holds 90% of the energy; 0 for a single weight)
- excess kurtosis    ``m4 / m2^2 - 3`` of the ``H W`` weights of the unit, centred on their mean
  (biased moments, as ``scipy.stats.kurtosis(..., fisher=True, bias=True)``).

Empty (all-zero) units are not an error: they are flagged in ``empty`` and get finite
placeholder values (centre of the image, spread 0, window energy 0, PR 0, kurtosis 0); the
summary medians skip them. A constant field has zero weight variance; its kurtosis is reported
as 0. Everything is batched over units and stays on the input's device and dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from structlearn.structure.locality import participation_ratio

__all__ = ["best_windows", "check_filters", "energy_radius", "receptive_field_stats", "receptive_field_summary", "window_energy"]


def check_filters(filters: Tensor, name: str = "filters") -> None:
    """Raise ``ValueError`` unless ``filters`` is a finite floating tensor ``(n_units, H, W)``
    with ``n_units, H, W >= 1``."""
    if not isinstance(filters, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (n_units, H, W), got {type(filters).__name__}")
    if filters.ndim != 3:
        raise ValueError(
            f"{name} must have 3 dimensions (n_units, H, W), got shape {tuple(filters.shape)}; "
            "reshape DenseLayer rows with layer.filters()"
        )
    if min(filters.shape) < 1:
        raise ValueError(f"{name} has an empty dimension, shape {tuple(filters.shape)}; need n_units, H, W >= 1")
    if not filters.is_floating_point():
        raise ValueError(f"{name} must be floating point (float32 or float64), got {filters.dtype}")
    if not bool(torch.isfinite(filters).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def _check_window(k: int, shape: tuple[int, int]) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k > min(shape):
        raise ValueError(f"window size k={k!r} out of range; allowed: integers in [1, {min(shape)}] for input {shape}")


def window_energy(filters: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Best ``k x k`` window of ``|w|^2`` per unit.

    Args:
        filters: ``(n, H, W)``.
        k: window side, ``1 <= k <= min(H, W)``.

    Returns:
        ``(fraction, top_left)``: ``fraction (n,)`` = max window sum of ``w^2`` / total ``w^2``
        (0 for empty units) and ``top_left (n, 2)`` long, the (row, column) of that window.
    """
    check_filters(filters)
    _check_window(k, (filters.shape[1], filters.shape[2]))
    return best_windows(filters.square(), k)


def best_windows(e: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """:func:`window_energy` on a non-negative energy map ``e: (n, H, W)`` (e.g. ``w^2`` summed
    over a colour unit's channels), unchecked."""
    n, h, w = e.shape
    sums = F.avg_pool2d(e[:, None], k, stride=1)[:, 0] * (k * k)  # (n, H-k+1, W-k+1)
    best, idx = sums.flatten(1).max(dim=1)  # (n,)
    wo = w - k + 1
    top_left = torch.stack([idx // wo, idx % wo], dim=1)  # (n, 2)
    total = e.flatten(1).sum(1)  # (n,)
    frac = torch.where(total > 0, best / total.clamp_min(torch.finfo(e.dtype).tiny), torch.zeros_like(total))
    return frac.clamp(0.0, 1.0), top_left


def receptive_field_stats(filters: Tensor, k: int = 5) -> dict[str, Tensor]:
    """Locality metrics of every unit (see the module docstring for the equations).

    Args:
        filters: ``(n_units, H, W)`` float, possibly with exact zeros (pruned).
        k: side of the window for ``window_energy`` (``1 <= k <= min(H, W)``).

    Returns:
        dict of tensors, all with leading dimension ``n_units``:
        ``energy`` (sum w^2), ``empty`` (bool), ``com`` ``(n, 2)`` (row, column),
        ``spread``, ``window_energy``, ``window_top_left`` ``(n, 2)`` long,
        ``participation_ratio``, ``kurtosis``.
    """
    check_filters(filters)
    n, h, w = filters.shape
    _check_window(k, (h, w))
    dt, dev = filters.dtype, filters.device
    flat = filters.flatten(1)  # (n, HW)
    scale = flat.abs().amax(dim=1, keepdim=True)  # (n, 1)
    empty = scale[:, 0] == 0
    u = flat / torch.where(scale > 0, scale, torch.ones_like(scale))  # (n, HW), max |u| = 1: no w^4 underflow
    e = u.square()  # (n, HW)
    e_sum = e.sum(1)  # (n,)
    safe = torch.where(empty, torch.ones_like(e_sum), e_sum)
    p = e / safe[:, None]  # (n, HW)

    ys = torch.arange(h, device=dev, dtype=dt).repeat_interleave(w)  # (HW,)
    xs = torch.arange(w, device=dev, dtype=dt).repeat(h)  # (HW,)
    cy, cx = p @ ys, p @ xs  # (n,)
    centre_y = torch.full_like(cy, (h - 1) / 2)
    centre_x = torch.full_like(cx, (w - 1) / 2)
    cy = torch.where(empty, centre_y, cy)
    cx = torch.where(empty, centre_x, cx)
    var = (p * ((ys[None] - cy[:, None]).square() + (xs[None] - cx[:, None]).square())).sum(1)  # (n,)
    spread = var.clamp_min(0).sqrt()

    frac, top_left = window_energy(filters, k)

    pr = participation_ratio(u.reshape(n, h, w))  # (n,), NaN for empty units; scale-free, so on u
    pr = torch.where(empty, torch.zeros_like(pr), pr)

    d = u - u.mean(1, keepdim=True)  # (n, HW)
    m2 = d.square().mean(1)
    m4 = d.pow(4).mean(1)
    flat_var = m2 <= torch.finfo(dt).eps * 1e-3  # constant field (or empty): kurtosis reported as 0
    kurt = m4 / torch.where(flat_var, torch.ones_like(m2), m2.square()) - 3.0
    kurt = torch.where(flat_var, torch.zeros_like(kurt), kurt)

    return {
        "energy": flat.square().sum(1),
        "empty": empty,
        "com": torch.stack([cy, cx], dim=1),
        "spread": spread,
        "window_energy": frac,
        "window_top_left": top_left,
        "participation_ratio": pr,
        "kurtosis": kurt,
    }


def energy_radius(filters: Tensor, q: float = 0.9) -> Tensor:
    """``(n_units,)`` radius (pixels) around each unit's energy centre of mass holding a share
    ``q`` of its energy (module docstring); 0 for empty units. Batched: one sort of the pixels
    by distance per unit."""
    check_filters(filters)
    if not 0 < q <= 1:
        raise ValueError(f"q={q!r} out of range; allowed: (0, 1]")
    n, h, w = filters.shape
    st = receptive_field_stats(filters, k=1)
    e = filters.detach().flatten(1).to(torch.float64).square()  # (n, HW)
    tot = e.sum(1, keepdim=True)
    p = e / torch.where(tot > 0, tot, torch.ones_like(tot))
    ys = torch.arange(h, device=filters.device, dtype=torch.float64).repeat_interleave(w)
    xs = torch.arange(w, device=filters.device, dtype=torch.float64).repeat(h)
    com = st["com"].to(torch.float64)
    dist = ((ys[None] - com[:, :1]).square() + (xs[None] - com[:, 1:]).square()).sqrt()  # (n, HW)
    d_sorted, order = dist.sort(1)
    cum = p.gather(1, order).cumsum(1)
    idx = (cum < q - 1e-12).sum(1).clamp_max(h * w - 1)  # first pixel where the share reaches q
    r = d_sorted.gather(1, idx[:, None])[:, 0]
    return torch.where(st["empty"], torch.zeros_like(r), r).to(filters.dtype)


def receptive_field_summary(stats: dict[str, Tensor]) -> dict[str, float]:
    """Medians over the non-empty units of ``spread``, ``window_energy``,
    ``participation_ratio`` and ``kurtosis``, plus ``n_units`` and ``n_empty``.

    Raises ``ValueError`` when every unit is empty (all-zero mask): there is nothing to summarise.
    """
    empty = stats["empty"]
    keep = ~empty
    n_keep = int(keep.sum())
    if n_keep == 0:
        raise ValueError(f"all {empty.numel()} units are empty (all-zero filters); nothing to summarise")
    out: dict[str, float] = {"n_units": float(empty.numel()), "n_empty": float(empty.numel() - n_keep)}
    for key in ("spread", "window_energy", "participation_ratio", "kurtosis"):
        out[f"median_{key}"] = float(stats[key][keep].median())
    return out
