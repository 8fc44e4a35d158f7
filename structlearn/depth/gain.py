"""Entropy of each layer's codes and the entropy gain of each layer.

Layer 0 is the whitened input; layer ``l >= 1`` is the held-out codes of the ``l``-th
trained layer after its nonlinearity, ``z_l: (m, d_l)`` (samples x features). The gain of
layer ``l`` is ``g_l = H_l - H_{l-1}`` (nats); a stack is deep enough once a new layer's gain
falls below a threshold (:func:`choose_depth`).

Default measure, ``"coding_rate"``: the coding rate (Yu et al. 2020, MCR^2) of the
normalised codes at a precision fixed by the input's dimension ``d_ref = d_0``,

    H_l = R_ref(Z_l) = 1/2 logdet(I + d_ref/(m eps^2) Zhat_l^T Zhat_l),   eps^2 = eps2 = 0.5,

    Zhat_l = rows of standardise(z_l) divided by their L2 norm  (every sample on the sphere).

Why this normalisation (differential entropy is not scale invariant, H(aZ) = H(Z) + d log a):

- standardising each feature removes per-unit gains (an invertible diagonal map carries no
  information); features whose standard deviation is below ``dead = 1e-6`` of the largest
  are dead units and set to 0 (standardising them would promote rounding noise);
- unit-norm rows make ``tr(Zhat^T Zhat) = m`` for every layer, so R is bounded,
  ``R_ref <= d/2 log(1 + d_ref / (d eps^2)) < d_ref / (2 eps^2)``, whatever the width;
- ``d_ref`` fixed across layers (MCR^2 uses the layer's own ``d``): R_ref depends on the
  codes only through the ``m x m`` Gram matrix ``Zhat Zhat^T``, which is unchanged by any
  isometry of the feature space. A layer that copies its input (``z -> [z, z]``), rotates
  it, pads it with dead units, or re-whitens an already white input has exactly zero gain.
  With MCR^2's own ``d`` the duplicate ``[z, z]`` would gain ``1/2 logdet(I + 2cG) -
  1/2 logdet(I + cG) > 0``, and a per-dimension rate ``R / d`` would change too; hence the
  gain is the plain difference ``H_l - H_{l-1}`` of this width-free measure, not a
  per-dimension difference. At layer 0 R_ref equals MCR^2's R(Z, eps) exactly.
- Adding independent dimensions or noise spreads the spectrum of ``Zhat^T Zhat`` and
  raises R_ref (a positive gain); R_ref is largest, ``d/2 log(1 + d_ref/(d eps^2))``, for
  isotropic codes.

``"total_correlation"`` (the search's default): the entropy per unit of the codes after a
per-unit Gaussianisation, ``H_l = 1/2 log(2 pi e) - TC(z_l) / d_l`` nats/unit, with the
total correlation ``TC`` estimated by :func:`structlearn.info.total_correlation.total_correlation`
(second order + ICA negentropy + magnitude coupling, split-half; ``d_l`` counts live units,
a copy of a unit counted once). The gain ``H_l - H_{l-1}`` is the redundancy per unit that
layer ``l`` removed. It sees the higher-order dependence that a coding rate cannot (the
variance coupling left after an ICA or sparse-coding layer) and it is invariant to
permutations, rescalings and any per-unit increasing map of the units (``|z|`` and
``log|z|`` of positive codes measure the same); an identity or copying layer gains exactly
zero; a rotation of a white Gaussian input gains zero up to noise. It is not rotation
invariant for non-Gaussian codes: rotating independent non-Gaussian units creates
dependence and the gain is negative, which is the right answer for a depth rule. Validated
on closed forms and on planted depth (README, "Depth that means something").

Optional measures (extensive in ``d``, so their gain is per dimension,
``H_l / d_l - H_{l-1} / d_{l-1}``, over live features only; neither is invariant to
duplication, because duplicated features are singular in d_l dimensions):

- ``"gaussian"``: ``1/2 logdet(2 pi e C) / d`` of the standardised codes (``C`` their
  correlation matrix): ``1/2 log(2 pi e)`` minus the Gaussian total correlation per unit;
- ``"knn"``: Kozachenko-Leonenko k-NN entropy of the standardised codes per dimension
  (biased upwards above ~10 dimensions; compare only at equal ``m`` and ``k``).

The log-determinant comes from :mod:`structlearn.functional.rate`, the other estimators
from :mod:`structlearn.info` (``gaussian_entropy``, ``KNNEntropy``); computations run in float64 on the input's device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from structlearn.functional.rate import logdet_identity_plus
from structlearn.info import KNNEntropy, gaussian_entropy
from structlearn.info.total_correlation import HALF_LOG_2PIE, total_correlation

MEASURES = ("total_correlation", "coding_rate", "gaussian", "knn")
DEFAULT_EPS2 = 0.5  # eps^2, MCR^2's setting (its reference code calls it eps)
DEAD = 1e-6  # a feature is dead when its std < DEAD * the largest std of the layer


def _check_codes(z: Tensor, name: str = "codes") -> Tensor:
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (m, d); got {type(z).__name__}")
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"{name} has shape {tuple(z.shape)}; allowed: (m, d) with m >= 2 samples, d >= 1")
    if not z.is_floating_point():
        raise ValueError(f"{name} has dtype {z.dtype}; allowed: a floating dtype")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or Inf; allowed: finite values")
    return z


def standardize_live(z: Tensor, dead: float = DEAD) -> tuple[Tensor, Tensor]:
    """Per-feature zero mean and unit (population) variance; dead features become 0.

    ``z: (m, d)`` -> ``(zs: (m, d) float64, live: (d,) bool)``; ``live_j`` iff
    ``std_j >= dead * max_k std_k`` and ``std_j > 0``.
    """
    z = _check_codes(z).to(torch.float64)
    zc = z - z.mean(0, keepdim=True)
    s = zc.pow(2).mean(0).sqrt()  # (d,)
    live = (s > 0) & (s >= dead * s.amax())
    zs = torch.where(live, zc / torch.where(live, s, torch.ones_like(s)), torch.zeros_like(zc))
    return zs, live


def sphere_codes(z: Tensor, dead: float = DEAD) -> Tensor:
    """``Zhat``: standardised live features, each sample scaled to unit L2 norm (zero rows
    stay 0). ``z: (m, d)`` -> ``(m, d)`` float64."""
    zs, _ = standardize_live(z, dead)
    n = zs.norm(dim=1, keepdim=True)  # (m, 1)
    return zs / torch.where(n > 0, n, torch.ones_like(n))


def reference_coding_rate(z: Tensor, d_ref: int | None = None, eps2: float = DEFAULT_EPS2, dead: float = DEAD) -> Tensor:
    """``R_ref(z) = 1/2 logdet(I + d_ref/(m eps^2) Zhat^T Zhat)`` nats (module docstring).

    ``z: (m, d)`` raw codes; ``d_ref`` defaults to ``d`` (then it is MCR^2's R(Zhat, eps),
    :func:`structlearn.functional.rate.coding_rate`). The log-determinant is taken on the
    smaller side of ``logdet(I_d + c Zhat^T Zhat) = logdet(I_m + c Zhat Zhat^T)``.
    """
    zhat = sphere_codes(z, dead)
    m, d = zhat.shape
    d_ref = d if d_ref is None else d_ref
    if not isinstance(d_ref, int) or isinstance(d_ref, bool) or d_ref < 1:
        raise ValueError(f"d_ref={d_ref!r} out of range; allowed: integers >= 1")
    if not eps2 > 0:
        raise ValueError(f"eps2={eps2!r} out of range; allowed: > 0 (eps2 is eps^2)")
    gram = zhat @ zhat.T if m <= d else zhat.T @ zhat  # (min(m, d), min(m, d))
    return 0.5 * logdet_identity_plus(gram, d_ref / (m * eps2))


def layer_entropy(z: Tensor, measure: str = "coding_rate", *, d_ref: int | None = None, eps2: float = DEFAULT_EPS2,
                  k: int = 3, dead: float = DEAD) -> Tensor:
    """Entropy of one layer's codes ``z: (m, d)`` under ``measure`` (nats, 0-d float64).

    ``"coding_rate"``: :func:`reference_coding_rate` (total, width-free). ``"gaussian"``,
    ``"knn"``: entropy of the standardised live features divided by their number (per
    dimension); a layer without live features has entropy ``-inf``.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r} is not allowed; allowed: {', '.join(MEASURES)}")
    if measure == "coding_rate":
        return reference_coding_rate(z, d_ref, eps2, dead)
    if measure == "total_correlation":
        tc = total_correlation(z)
        return torch.tensor(HALF_LOG_2PIE - tc.total / max(tc.units, 1), dtype=torch.float64)
    zs, live = standardize_live(z, dead)
    n_live = int(live.sum())
    if n_live == 0:
        return torch.full((), -math.inf, dtype=torch.float64, device=z.device)
    zs = zs[:, live]
    if measure == "gaussian":
        return gaussian_entropy(zs) / n_live
    return KNNEntropy(k=k)(zs) / n_live


def choose_depth(gains: Sequence[float], threshold: float) -> int:
    """Number of leading layers whose gain is at least ``threshold``: the depth after which
    the gain per layer falls below it (0 when the first layer already gains too little)."""
    depth = 0
    for g in gains:
        if not g >= threshold:  # NaN counts as a stall
            break
        depth += 1
    return depth


@dataclass(frozen=True)
class EntropyProfile:
    """Entropy per layer (index 0 = whitened input) and gain per layer (index l-1 = layer l)."""

    entropies: tuple[float, ...]  # (L + 1,) nats (per dimension for gaussian / knn)
    dims: tuple[int, ...]  # (L + 1,) features per layer
    measure: str
    eps2: float
    d_ref: int

    @property
    def gains(self) -> tuple[float, ...]:
        """``g_l = H_l - H_{l-1}``, l = 1..L."""
        h = self.entropies
        return tuple(h[i] - h[i - 1] for i in range(1, len(h)))

    @property
    def relative_gains(self) -> tuple[float, ...]:
        """``g_l / |H_0|``: each layer's gain as a share of the input's entropy."""
        h0 = abs(self.entropies[0])
        return tuple(g / h0 if h0 > 0 else math.nan for g in self.gains)

    def chosen_depth(self, threshold: float, relative: bool = True) -> int:
        return choose_depth(self.relative_gains if relative else self.gains, threshold)

    def to_dict(self) -> dict:
        return {"measure": self.measure, "eps2": self.eps2, "d_ref": self.d_ref, "dims": list(self.dims),
                "entropies": list(self.entropies), "gains": list(self.gains),
                "relative_gains": list(self.relative_gains)}

    def table(self) -> str:
        """Markdown table: layer, width, H_l, g_l, g_l / H_0."""
        unit = "nats" if self.measure == "coding_rate" else "nats/unit"
        rows = [f"| layer | width | H ({self.measure}, {unit}) | gain | gain / H_0 |", "|---:|---:|---:|---:|---:|"]
        for i, (d, h) in enumerate(zip(self.dims, self.entropies)):
            if i == 0:
                rows.append(f"| 0 (input) | {d} | {h:.3f} | | |")
            else:
                rows.append(f"| {i} | {d} | {h:.3f} | {self.gains[i - 1]:+.3f} | {self.relative_gains[i - 1]:+.4f} |")
        return "\n".join(rows) + "\n"


def entropy_profile(codes: Sequence[Tensor], measure: str = "coding_rate", *, eps2: float = DEFAULT_EPS2,
                    d_ref: int | None = None, k: int = 3) -> EntropyProfile:
    """``codes[0]``: whitened input ``(m, d_0)``; ``codes[l]``: layer ``l``'s codes ``(m, d_l)``
    on the same ``m`` held-out samples. ``d_ref`` defaults to ``d_0``."""
    if len(codes) < 1:
        raise ValueError("codes is empty; allowed: [input (m, d_0), layer 1 codes, ...]")
    m = codes[0].shape[0] if isinstance(codes[0], Tensor) else None
    for i, z in enumerate(codes):
        _check_codes(z, f"codes[{i}]")
        if z.shape[0] != m:
            raise ValueError(f"codes[{i}] has {z.shape[0]} samples, codes[0] has {m}; allowed: the same held-out samples")
    d_ref = codes[0].shape[1] if d_ref is None else d_ref
    h = tuple(float(layer_entropy(z, measure, d_ref=d_ref, eps2=eps2, k=k)) for z in codes)
    return EntropyProfile(h, tuple(int(z.shape[1]) for z in codes), measure, float(eps2), int(d_ref))


class LayerEntropyRecorder:
    """``Trainer(on_layer=recorder)``: records ``H_l`` of each trained layer's held-out codes.

    ``recorder = LayerEntropyRecorder(x_test)`` with the whitened held-out input ``(m, d_0)``
    (layer 0); after each layer ``recorder.entropies`` grows by one and ``on_gain(l, g_l,
    H_l)`` is called (``l`` = 1-based layer index; e.g. ``trial.report`` and pruning).
    """

    def __init__(self, x_input: Tensor, measure: str = "coding_rate", *, eps2: float = DEFAULT_EPS2, k: int = 3,
                 on_gain=None) -> None:
        self.measure, self.eps2, self.k = measure, float(eps2), k
        self.d_ref = int(_check_codes(x_input, "x_input").shape[1])
        self.dims = [self.d_ref]
        self.entropies = [float(layer_entropy(x_input, measure, d_ref=self.d_ref, eps2=eps2, k=k))]
        self.on_gain = on_gain

    def __call__(self, li: int, objective, codes: Tensor) -> None:
        h = float(layer_entropy(codes, self.measure, d_ref=self.d_ref, eps2=self.eps2, k=self.k))
        self.entropies.append(h)
        self.dims.append(int(codes.shape[1]))
        if self.on_gain is not None:
            self.on_gain(li + 1, h - self.entropies[-2], h)

    def profile(self) -> EntropyProfile:
        return EntropyProfile(tuple(self.entropies), tuple(self.dims), self.measure, self.eps2, self.d_ref)
