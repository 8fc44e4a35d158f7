"""Entropy and mutual-information estimators (all in nats), registry ``"estimator"``.

Convention: samples by features. ``z: (N, d)`` holds ``N`` samples of a ``d``-dimensional
variable (a vector ``(N,)`` is read as ``d = 1``). This is the transpose of the MCR^2
paper's ``Z in R^{d x m}``. Results are 0-d tensors on the input's device, computed in
``dtype`` (float64 by default: k-NN log-distances and log-determinants lose digits in
float32); ``dtype=None`` keeps the input's dtype.

Registered (``ESTIMATORS.create(name, **kwargs)``); entropies are called as ``est(z)``,
mutual informations as ``est(x, y)``:

============  =====================================================  =================
name          quantity                                               ``normalization``
============  =====================================================  =================
coding_rate   R(Z, eps) = 1/2 logdet(I + d/(m eps^2) Z^T Z)          ``"unit_norm"``
gaussian      1/2 logdet(2 pi e Sigma_hat)                           ``"standardize"``
knn           Kozachenko-Leonenko k-NN differential entropy          ``"standardize"``
ksg           Kraskov-Stoegbauer-Grassberger MI, algorithm 1 or 2    ``"standardize"``
binned        plug-in MI of two scalars on a histogram, Miller-Madow ``"none"``
============  =====================================================  =================

The scale problem. Differential entropy is not scale invariant: ``H(aZ) = H(Z) + d log|a|``
(and ``H(AZ) = H(Z) + log|det A|``), and the k-NN estimator obeys the same law exactly
(every distance scales by ``|a|``). Two layers whose codes differ only by a gain would
therefore show an "entropy gain" of ``d log|a|``. Before layers are compared, features go
through :func:`normalize` with the estimator's ``normalization`` attribute:

- ``coding_rate`` -> ``"unit_norm"``: every sample on the unit sphere, as in MCR^2 (Yu et al.
  2020); R is then bounded and invariant to per-sample gains.
- ``gaussian`` and ``knn`` -> ``"standardize"``: per-feature zero mean and unit variance.
  This removes each unit's gain but keeps the dependence between units, which is what an
  entropy gain should measure; the Gaussian estimate becomes
  ``1/2 logdet(2 pi e C)`` with ``C`` the correlation matrix, i.e. ``d/2 log(2 pi e)``
  minus the Gaussian total correlation. (``"whiten"`` would make the Gaussian estimate the
  constant ``d/2 log(2 pi e)``; after whitening the k-NN estimate measures only
  non-Gaussianity, ``H(Z_white) = d/2 log(2 pi e) - negentropy``.)
- ``ksg`` -> ``"standardize"``: MI is invariant to invertible per-variable maps, but the
  estimator's max-norm neighbourhoods are not; standardising each variable is the usual
  practice (scikit-learn's ``mutual_info_regression`` scales to unit variance too).
- ``binned`` -> ``"none"``: its bins span each variable's range (or a given range), so it
  is already invariant to affine maps of each variable.

Duplicates. Repeated points (8-bit pixels, sparse codes with exact zeros) give zero k-NN
distances and ``log 0``. The k-NN and KSG estimators add ``jitter * std_j * n`` to feature
``j``, with ``n ~ N(0, 1)`` drawn from the ``generator`` argument (a fresh
``torch.Generator`` seeded with 0 on the input's device when ``None``, so results are
reproducible). The default ``jitter = 1e-10`` is the low-amplitude noise that Kraskov
et al. (2004) add against degeneracies; it breaks ties without moving any estimate measurably. It does NOT
make the entropy of a distribution with point masses finite: that entropy is ``-inf``; use
a larger ``jitter`` as an explicit additive-noise level (and report it), the coding rate,
or the binned estimator. A zero k-NN distance left after jitter raises ``ValueError``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from scipy.special import digamma
from torch import Tensor

from structlearn.functional.rate import coding_rate
from structlearn.info.neighbors import (
    DEFAULT_MAX_ELEMENTS,
    check_metric,
    chunk_rows,
    knn_distances,
    mask_self,
    pairwise_distance,
    prepare,
)
from structlearn.params import check_choice
from structlearn.registry import Registry


class EntropyEstimator(Protocol):
    """Protocol of an entropy estimator: ``kind = "entropy"``, a ``normalization`` for
    :func:`normalize`, and ``est(z) -> 0-d tensor`` (nats) for ``z: (N, d)``."""

    kind: str
    normalization: str

    def __call__(self, z: Tensor) -> Tensor: ...


class MIEstimator(Protocol):
    """Protocol of a mutual-information estimator: ``kind = "mi"`` and ``est(x, y) -> 0-d tensor`` (nats)."""

    kind: str
    normalization: str

    def __call__(self, x: Tensor, y: Tensor) -> Tensor: ...


ESTIMATORS: Registry = Registry("estimator")  # EntropyEstimator or MIEstimator factories
NORMALIZATIONS = ("whiten", "unit_norm", "standardize", "none")
BINNINGS = ("uniform", "quantile")
KSG_ALGORITHMS = (1, 2)
LOG_2PIE = math.log(2 * math.pi * math.e)


# ----------------------------------------------------------------------------- helpers
def as_samples(z: Tensor, name: str = "z") -> Tensor:
    """``(N,)`` -> ``(N, 1)``; ``(N, d)`` unchanged; anything else raises ``ValueError``."""
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, d) or (N,); got {type(z).__name__}")
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"{name} has shape {tuple(z.shape)}; allowed: (N, d) or (N,) with N >= 2, d >= 1")
    if not z.is_floating_point():
        raise ValueError(f"{name} has dtype {z.dtype}; allowed: a floating dtype")
    return z


def _cast(z: Tensor, dtype: torch.dtype | None) -> Tensor:
    return z if dtype is None else z.to(dtype)


def _psi(x: float) -> float:
    return float(digamma(x))


def _check_positive_int(name: str, value: int, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} out of range; allowed: integers >= {low}")


def default_generator(device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with 0 (the documented default)."""
    return torch.Generator(device=device).manual_seed(0)


def add_jitter(z: Tensor, jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """``z + jitter * std_j * n``, ``n ~ N(0, 1)`` from ``generator``; ``std_j = 1`` if 0.

    ``z: (N, d)``. Relative noise keeps the scale law exact: jittering ``a z`` with the same
    generator state gives ``a`` times the jittered ``z`` (for ``a > 0``).
    """
    if jitter < 0:
        raise ValueError(f"jitter={jitter!r} out of range; allowed: >= 0")
    if jitter == 0:
        return z
    g = default_generator(z.device) if generator is None else generator
    noise = torch.randn(z.shape, generator=g, device=g.device, dtype=z.dtype).to(z.device)
    s = z.std(0, correction=0)  # (d,)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return z + jitter * s * noise


# ----------------------------------------------------------------------------- normalize
def normalize(z: Tensor, how: str, eps: float = 1e-10) -> Tensor:
    """Put features on a common scale before entropies of layers are compared.

    ``z: (N, d)`` -> ``(N, d)``. ``how``:

    - ``"standardize"``: ``(z - mean_j) / std_j`` per feature (population std); constant
      features become 0.
    - ``"unit_norm"``: every sample (row) divided by its L2 norm (rows of zeros stay 0),
      as MCR^2 does with its unit-norm columns.
    - ``"whiten"``: ZCA, ``(z - mean) V diag(max(lambda, eps * max(lambda)))^{-1/2} V^T``
      with ``Sigma_hat = V diag(lambda) V^T`` (population covariance); the floor only
      touches (near-)null directions of rank-deficient codes.
    - ``"none"``: ``z`` unchanged.
    """
    check_choice("how", how, NORMALIZATIONS)
    z = as_samples(z)
    if how == "none":
        return z
    if how == "unit_norm":
        n = z.norm(dim=1, keepdim=True)  # (N, 1)
        return z / torch.where(n > 0, n, torch.ones_like(n))
    zc = z - z.mean(0, keepdim=True)
    if how == "standardize":
        s = zc.pow(2).mean(0, keepdim=True).sqrt()  # (1, d)
        return zc / torch.where(s > 0, s, torch.ones_like(s))
    cov = zc.mT @ zc / z.shape[0]  # (d, d)
    lam, v = torch.linalg.eigh(cov)
    lam = torch.maximum(lam, eps * lam.amax().clamp_min(torch.finfo(lam.dtype).tiny))
    return zc @ (v * lam.rsqrt()) @ v.mT


# ----------------------------------------------------------------------------- pure math
def gaussian_entropy(z: Tensor, bias_correction: bool = False) -> Tensor:
    """Entropy of the Gaussian with ``z``'s covariance: ``1/2 logdet(2 pi e Sigma_hat)``.

    ``z: (N, d)``, ``Sigma_hat`` the unbiased sample covariance (divisor ``N - 1 = nu``);
    needs ``N > d`` (else ``Sigma_hat`` is singular and the result is ``-inf``). It is the
    exact entropy for Gaussian data and an upper bound for any other law of equal
    covariance. ``bias_correction`` subtracts the Wishart expectation
    ``E[logdet Sigma_hat] - logdet Sigma = d log(2 / nu) + sum_{i=1}^d psi((nu - i + 1) / 2)``
    (e.g. Ahmed and Gokhale 1989), which makes the estimate unbiased for Gaussian data.
    """
    z = as_samples(z)
    n, d = z.shape
    zc = z - z.mean(0, keepdim=True)
    cov = zc.mT @ zc / (n - 1)  # (d, d)
    sign, logabs = torch.linalg.slogdet(cov)
    logdet = torch.where(sign > 0, logabs, torch.full_like(logabs, -math.inf))
    if bias_correction:
        nu = n - 1
        logdet = logdet - (d * math.log(2 / nu) + sum(_psi((nu - i + 1) / 2) for i in range(1, d + 1)))
    return 0.5 * (d * LOG_2PIE + logdet)


def log_unit_ball_volume(d: int, metric: str) -> float:
    """``log V_d``: ``d/2 log pi - log Gamma(d/2 + 1)`` (euclidean) or ``d log 2`` (max)."""
    check_metric(metric)
    if metric == "max":
        return d * math.log(2.0)
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)


def kl_entropy(z: Tensor, k: int = 3, metric: str = "euclidean", chunk_size: int | None = None) -> Tensor:
    """Kozachenko-Leonenko k-NN differential entropy (Kozachenko and Leonenko 1987).

    ``H_hat = psi(N) - psi(k) + log V_d + d/N sum_i log rho_k(i)``

    with ``rho_k(i)`` the distance from ``z_i`` to its ``k``-th nearest other point in
    ``metric`` and ``V_d`` the volume of that norm's unit ball (Kraskov et al. 2004
    writes the same with ``eps = 2 rho`` and the unit-diameter ball). ``z: (N, d)``.
    Consistent for any fixed ``k``; its finite-``N`` bias grows quickly with ``d`` (negative
    for Gaussians: neighbourhoods are not small compared with the curvature of the
    density), so above ~10 dimensions compare estimates at equal ``N`` and ``k`` only.
    Raises ``ValueError`` on zero distances (duplicated points; see module docstring).
    """
    z = as_samples(z)
    n, d = z.shape
    rho = knn_distances(z, k, metric, chunk_size)[:, k - 1]  # (N,)
    if bool((rho <= 0).any()):
        raise ValueError(
            "zero k-NN distance: duplicated points; pass jitter > 0 (additive noise) or use "
            "the 'binned' estimator for discrete data"
        )
    return _psi(n) - _psi(k) + log_unit_ball_volume(d, metric) + d * torch.log(rho).mean()


def ksg_mutual_information(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    algorithm: int = 1,
    metric: str = "max",
    chunk_size: int | None = None,
) -> Tensor:
    """KSG mutual information ``I(X; Y)`` (Kraskov, Stoegbauer and Grassberger 2004).

    ``x: (N, dx)``, ``y: (N, dy)``. Joint distance ``max(|x - x'|, |y - y'|)`` with the
    marginal norm ``metric`` (max-norm in the paper). For each point the ``k``-th joint
    neighbour fixes the neighbourhood and the marginal counts exclude the point itself:

    - algorithm 1: ``eps_i`` = distance to the k-th joint neighbour,
      ``n_x(i) = #{j : |x_i - x_j| < eps_i}``;
      ``I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >``
    - algorithm 2: ``eps_x(i)`` = largest x-distance among the k joint neighbours,
      ``n_x(i) = #{j : |x_i - x_j| <= eps_x(i)}``;
      ``I = psi(k) - 1/k + psi(N) - < psi(n_x) + psi(n_y) >``

    Memory: per block of query rows three ``(chunk, N)`` matrices (x, y and joint
    distances); the top-k and the counts are taken per block.
    """
    check_choice("algorithm", algorithm, KSG_ALGORITHMS)
    check_metric(metric)
    x, y = as_samples(x, "x"), as_samples(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y need the same number of samples; got {n} and {y.shape[0]}")
    if not 1 <= k < n:
        raise ValueError(f"k={k} out of range; allowed: 1 <= k < N = {n}")
    xc, yc = prepare(x, metric), prepare(y, metric)
    step = chunk_rows(n, chunk_size, DEFAULT_MAX_ELEMENTS // 3)
    nx, ny = [], []
    for s in range(0, n, step):
        dx = mask_self(pairwise_distance(xc[s : s + step], xc, metric), s)  # (c, N)
        dy = mask_self(pairwise_distance(yc[s : s + step], yc, metric), s)  # (c, N)
        val, idx = torch.topk(torch.maximum(dx, dy), k, dim=1, largest=False)  # (c, k)
        if algorithm == 1:
            eps = val[:, k - 1 : k]  # (c, 1)
            nx.append((dx < eps).sum(1))
            ny.append((dy < eps).sum(1))
        else:
            ex = dx.gather(1, idx).amax(1, keepdim=True)  # (c, 1)
            ey = dy.gather(1, idx).amax(1, keepdim=True)
            nx.append((dx <= ex).sum(1))
            ny.append((dy <= ey).sum(1))
    cx = torch.cat(nx).to(x.dtype)  # (N,)
    cy = torch.cat(ny).to(x.dtype)
    if algorithm == 1:
        return _psi(k) + _psi(n) - (torch.special.digamma(cx + 1) + torch.special.digamma(cy + 1)).mean()
    return _psi(k) - 1.0 / k + _psi(n) - (torch.special.digamma(cx) + torch.special.digamma(cy)).mean()


def bin_index(
    v: Tensor, n_bins: int, value_range: tuple[float, float] | None = None, binning: str = "uniform"
) -> Tensor:
    """Bin of every sample: ``v: (B, N)`` -> ``(B, N)`` long in ``[0, n_bins)``.

    ``"uniform"``: ``n_bins`` equal bins on ``value_range`` (values outside go to the edge
    bins) or, when ``None``, on each row's ``[min, max]``. ``"quantile"``: equal-frequency
    bins by rank (ties broken by position: use ``"uniform"`` for quantised data).
    """
    check_choice("binning", binning, BINNINGS)
    if binning == "quantile":
        rank = torch.argsort(torch.argsort(v, dim=1), dim=1)  # (B, N)
        return rank * n_bins // v.shape[1]
    lo: Tensor | float
    hi: Tensor | float
    if value_range is None:
        lo, hi = v.amin(1, keepdim=True), v.amax(1, keepdim=True)  # (B, 1)
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range={value_range!r} is empty; allowed: (low, high) with high > low")
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span)) if isinstance(span, Tensor) else span
    return ((v - lo) / span * n_bins).floor().clamp(0, n_bins - 1).long()


def binned_mutual_information(
    x: Tensor,
    y: Tensor,
    n_bins: int = 16,
    value_range: tuple[float, float] | None = None,
    binning: str = "uniform",
    miller_madow: bool = True,
) -> Tensor:
    """Plug-in MI of two scalars on an ``n_bins x n_bins`` histogram, batched.

    ``x, y: (..., N)`` (last axis = samples) -> ``(...)``.
    ``I = H(X) + H(Y) - H(X, Y)`` with ``H = -sum p log p`` of the bin frequencies; the
    Miller-Madow correction adds ``(m - 1) / (2N)`` to each entropy (``m`` = occupied bins,
    Miller 1955; Paninski 2003), i.e. ``(m_x + m_y - m_xy - 1) / (2N)`` to ``I``, removing
    the first-order ``O(1/N)`` upward bias of the plug-in MI. ``value_range`` is shared by
    ``x`` and ``y`` (pixel pairs); ``None`` bins each variable on its own range.
    """
    if x.shape != y.shape or x.ndim < 1:
        raise ValueError(f"x and y need the same shape (..., N); got {tuple(x.shape)} and {tuple(y.shape)}")
    _check_positive_int("n_bins", n_bins, 2)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"need N >= 2 samples; got N = {n}")
    batch = x.shape[:-1]
    bx = bin_index(x.reshape(-1, n), n_bins, value_range, binning)  # (B, N)
    by = bin_index(y.reshape(-1, n), n_bins, value_range, binning)
    dtype = x.dtype if x.is_floating_point() else torch.float64
    return mutual_information_from_bins(bx, by, n_bins, miller_madow, dtype).reshape(batch)


def mutual_information_from_bins(
    bx: Tensor, by: Tensor, n_bins: int, miller_madow: bool = True, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Plug-in MI (+ Miller-Madow) of bin labels ``bx, by`` in ``[0, n_bins)``.

    ``bx: (B, N)`` or ``(1, N)`` (broadcast), ``by: (B, N)`` long -> ``(B,)`` in ``dtype``.
    One ``bincount`` over all rows: ``(B, n_bins, n_bins)`` joint counts.
    """
    n = by.shape[-1]
    b = max(bx.shape[0], by.shape[0])
    cells = n_bins * n_bins
    flat = bx * n_bins + by + cells * torch.arange(b, device=by.device)[:, None]  # (B, N)
    p = torch.bincount(flat.reshape(-1), minlength=b * cells).reshape(b, n_bins, n_bins).to(dtype) / n
    px, py = p.sum(2), p.sum(1)  # (B, n_bins)
    h = lambda q: -torch.special.xlogy(q, q).flatten(1).sum(1)  # noqa: E731
    mi = h(px) + h(py) - h(p)  # (B,)
    if miller_madow:
        m = (px > 0).sum(1) + (py > 0).sum(1) - (p > 0).flatten(1).sum(1) - 1
        mi = mi + m.to(dtype) / (2 * n)
    return mi


# ----------------------------------------------------------------------------- null
@dataclass(frozen=True)
class NullSummary:
    """Shuffle null of an MI estimate: ``samples (n_shuffles,)``, their mean and the
    ``quantile``-quantile ``upper``; an estimate is "inside the null" when ``<= upper``."""

    samples: Tensor
    mean: Tensor
    upper: Tensor
    quantile: float


def summarize_null(samples: Tensor, quantile: float = 0.95, dim: int = -1) -> NullSummary:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile!r} out of range; allowed: (0, 1)")
    return NullSummary(samples, samples.mean(dim), torch.quantile(samples, quantile, dim=dim), quantile)


def shuffle_null(
    estimator,
    x: Tensor,
    y: Tensor,
    n_shuffles: int = 20,
    quantile: float = 0.95,
    generator: torch.Generator | None = None,
) -> NullSummary:
    """MI of ``x`` with randomly permuted ``y``: the estimator's law under independence with
    the same marginals and ``N``. ``estimator(x, y) -> Tensor``; ``x: (N, ...)``."""
    _check_positive_int("n_shuffles", n_shuffles, 2)
    g = torch.Generator().manual_seed(0) if generator is None else generator
    n = x.shape[0]
    out = [estimator(x, y[torch.randperm(n, generator=g, device=g.device).to(y.device)]) for _ in range(n_shuffles)]
    return summarize_null(torch.stack(out), quantile)


# ----------------------------------------------------------------------------- registered
@ESTIMATORS.register("coding_rate")
@dataclass(frozen=True)
class CodingRate:
    """``est(z: (m, d)) -> R(z, eps) = 1/2 logdet(I + d/(m eps^2) z^T z)`` nats.

    Calls :func:`structlearn.functional.rate.coding_rate` (Yu et al. 2020, eq. 5; smaller
    side of the Gram identity, Cholesky). ``eps2`` is ``eps^2``, the same quantity as the
    MCR^2 reference code's ``eps`` (0.5 there and here).
    """

    eps2: float = 0.5  # squared precision eps^2
    dtype: torch.dtype | None = torch.float64  # computation dtype; None keeps the input's
    kind = "entropy"
    normalization = "unit_norm"

    def __post_init__(self) -> None:
        if not self.eps2 > 0:
            raise ValueError(f"eps2={self.eps2!r} out of range; allowed: > 0 (eps2 is eps^2)")

    def __call__(self, z: Tensor) -> Tensor:
        return coding_rate(_cast(as_samples(z), self.dtype), self.eps2)


@ESTIMATORS.register("gaussian")
@dataclass(frozen=True)
class GaussianEntropy:
    """``est(z: (N, d)) -> 1/2 logdet(2 pi e Sigma_hat)`` nats; see :func:`gaussian_entropy`."""

    bias_correction: bool = False  # subtract the Wishart bias of logdet Sigma_hat
    dtype: torch.dtype | None = torch.float64
    kind = "entropy"
    normalization = "standardize"

    def __call__(self, z: Tensor) -> Tensor:
        return gaussian_entropy(_cast(as_samples(z), self.dtype), self.bias_correction)


@ESTIMATORS.register("knn")
@dataclass(frozen=True)
class KNNEntropy:
    """``est(z: (N, d)) -> H_hat`` nats; see :func:`kl_entropy` and :func:`add_jitter`."""

    k: int = 3  # neighbour order
    metric: str = "euclidean"  # "euclidean" or "max"
    jitter: float = 1e-10  # relative tie-breaking noise (module docstring)
    chunk_size: int | None = None  # query rows per block; None: sized by neighbors.knn_distances
    dtype: torch.dtype | None = torch.float64
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)
    kind = "entropy"
    normalization = "standardize"

    def __post_init__(self) -> None:
        _check_positive_int("k", self.k)
        check_metric(self.metric)
        if not self.jitter >= 0:
            raise ValueError(f"jitter={self.jitter!r} out of range; allowed: >= 0")

    def __call__(self, z: Tensor) -> Tensor:
        z = add_jitter(_cast(as_samples(z), self.dtype), self.jitter, self.generator)
        return kl_entropy(z, self.k, self.metric, self.chunk_size)


@ESTIMATORS.register("ksg")
@dataclass(frozen=True)
class KSGMutualInformation:
    """``est(x: (N, dx), y: (N, dy)) -> I_hat`` nats; see :func:`ksg_mutual_information`."""

    k: int = 3
    algorithm: int = 1  # 1 or 2 (Kraskov et al. 2004)
    metric: str = "max"
    jitter: float = 1e-10
    chunk_size: int | None = None
    dtype: torch.dtype | None = torch.float64
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)
    kind = "mi"
    normalization = "standardize"

    def __post_init__(self) -> None:
        _check_positive_int("k", self.k)
        check_choice("algorithm", self.algorithm, KSG_ALGORITHMS)
        check_metric(self.metric)
        if not self.jitter >= 0:
            raise ValueError(f"jitter={self.jitter!r} out of range; allowed: >= 0")

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = _cast(as_samples(x, "x"), self.dtype), _cast(as_samples(y, "y"), self.dtype)
        g = default_generator(x.device) if self.generator is None else self.generator
        x, y = add_jitter(x, self.jitter, g), add_jitter(y, self.jitter, g)
        return ksg_mutual_information(x, y, self.k, self.algorithm, self.metric, self.chunk_size)


@ESTIMATORS.register("binned")
@dataclass(frozen=True)
class BinnedMutualInformation:
    """``est(x: (N,) or (N, 1), y: same) -> I_hat`` nats; see :func:`binned_mutual_information`."""

    n_bins: int = 16
    value_range: tuple[float, float] | None = None  # shared range, e.g. (0, 1) for pixels
    binning: str = "uniform"  # "uniform" or "quantile"
    miller_madow: bool = True
    dtype: torch.dtype | None = torch.float64
    kind = "mi"
    normalization = "none"

    def __post_init__(self) -> None:
        _check_positive_int("n_bins", self.n_bins, 2)
        check_choice("binning", self.binning, BINNINGS)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = as_samples(x, "x"), as_samples(y, "y")
        if x.shape[1] != 1 or y.shape[1] != 1:
            raise ValueError(f"binned MI takes scalars; got x {tuple(x.shape)}, y {tuple(y.shape)}; allowed: (N,) or (N, 1)")
        x, y = _cast(x[:, 0], self.dtype), _cast(y[:, 0], self.dtype)
        return binned_mutual_information(x, y, self.n_bins, self.value_range, self.binning, self.miller_madow)
