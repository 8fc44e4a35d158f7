"""Information estimators and pixel MI: closed forms, parity with float64 references,
invariances, the shuffle null and the pixel-MI curves on bundled images.

Tolerances (nats), set from measured errors:

- knn (Kozachenko-Leonenko, k=3, Euclidean, N=10,000), Gaussian with covariance
  A A^T/d + I/2: |H_hat - H - b(d)| <= 0.06 + 0.01 d, with b(d) the bias measured over 4
  seeds (KNN_BIAS below). The bias is below 0.07 for d <= 9 and grows to +3.5 at d = 32
  (positive: neighbourhoods are no longer small against the density's curvature; the
  bias decays only roughly like N^{-2/d}, Berrett, Samworth and Yuan 2019), so above ~10
  dimensions only differences at equal N and k are meaningful.
- gaussian log-det: |err| <= 4 sqrt(d / 2N) + d(d+1)/(4N) (sampling sd of 1/2 logdet of a
  Wishart matrix plus its first-order bias); bias-corrected: mean error within 4 SE.
- ksg (k=3, N=4,000): |err| <= 0.05 (measured sd 0.008-0.018 over 8 seeds, both algorithms).
- binned (16 uniform bins, Miller-Madow, N=4,000): |err| <= 0.03 for rho <= 0.5; at rho=0.9
  the coarse-graining bias is -0.07 (+-0.01), so -0.12 <= err <= 0.02.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from structlearn.info import (
    ESTIMATORS,
    NORMALIZATIONS,
    binned_mutual_information,
    count_within,
    gaussian_entropy,
    kl_entropy,
    knn_distances,
    ksg_mutual_information,
    mosaic_mi_vs_distance,
    normalize,
    offsets,
    pixel_mi_vs_distance,
    shuffle_null,
)
from structlearn.info.neighbors import smallest_k

torch.set_num_threads(1)
F64 = torch.float64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Mean of H_hat - H for gaussian_sample(d, 10_000, seed) over seeds 100..103, k = 3, Euclidean.
KNN_BIAS = {
    1: -0.004, 2: -0.004, 3: -0.020, 4: -0.035, 5: -0.042, 6: -0.048, 7: -0.061, 8: -0.027,
    9: -0.002, 10: 0.061, 11: 0.152, 12: 0.192, 13: 0.324, 14: 0.387, 15: 0.486, 16: 0.612,
    17: 0.720, 18: 0.901, 19: 1.037, 20: 1.176, 21: 1.363, 22: 1.532, 23: 1.689, 24: 1.834,
    25: 2.005, 26: 2.240, 27: 2.461, 28: 2.617, 29: 2.866, 30: 3.070, 31: 3.258, 32: 3.465,
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_sample(d: int, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """``n`` draws of N(0, C), C = A A^T / d + I / 2; returns (z, exact entropy)."""
    g = gen(seed)
    a = torch.randn(d, d, generator=g, dtype=F64) / math.sqrt(d)
    cov = a @ a.T + 0.5 * torch.eye(d, dtype=F64)
    z = torch.randn(n, d, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    return z, 0.5 * (d * math.log(2 * math.pi * math.e) + torch.logdet(cov).item())


def correlated(n: int, rho: float, seed: int, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor, float]:
    """x, y: (n, dim) with corr(x_j, y_j) = rho per coordinate; exact MI = -dim/2 log(1 - rho^2)."""
    g = gen(seed)
    a = torch.randn(n, dim, generator=g, dtype=F64)
    b = torch.randn(n, dim, generator=g, dtype=F64)
    return a, rho * a + math.sqrt(1 - rho**2) * b, -0.5 * dim * math.log(1 - rho**2)


# ----------------------------------------------------------------------------- registry
def test_registry_names_and_unknown_name():
    assert ESTIMATORS.available() == ["binned", "coding_rate", "gaussian", "knn", "ksg"]
    with pytest.raises(ValueError, match="available: binned, coding_rate"):
        ESTIMATORS.create("nope")


@pytest.mark.parametrize("name", ESTIMATORS.available())
def test_every_estimator_conforms(name):
    est = ESTIMATORS.create(name)
    assert est.kind in ("entropy", "mi") and est.normalization in NORMALIZATIONS
    x, y, _ = correlated(300, 0.5, seed=1, dim=1)
    args = (x, y) if est.kind == "mi" else (torch.cat([x, y], 1).float(),)
    out = est(*args)
    assert isinstance(out, torch.Tensor) and out.ndim == 0 and torch.isfinite(out)
    assert out.dtype == F64 and out.device == x.device
    assert est(*args).item() == out.item()  # deterministic (default generator seeded 0)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("knn", {"metric": "l1"}, "allowed: euclidean, max"),
        ("knn", {"k": 0}, "k=0 out of range"),
        ("ksg", {"algorithm": 3}, "allowed: 1, 2"),
        ("binned", {"binning": "kmeans"}, "allowed: uniform, quantile"),
        ("binned", {"n_bins": 1}, "n_bins=1 out of range"),
        ("coding_rate", {"eps2": 0.0}, "eps2=0.0 out of range"),
    ],
)
def test_bad_hyperparameters_raise(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ESTIMATORS.create(name, **kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="allowed: whiten, unit_norm, standardize, none"):
        normalize(torch.randn(10, 2), "l2")
    with pytest.raises(ValueError, match="allowed: 1 <= k < N"):
        kl_entropy(torch.randn(3, 2, dtype=F64), k=3)
    with pytest.raises(ValueError, match="shape"):
        ESTIMATORS.create("knn")(torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        ksg_mutual_information(torch.randn(10, 1), torch.randn(9, 1))
    with pytest.raises(ValueError, match="allowed: \\(N,\\) or \\(N, 1\\)"):
        ESTIMATORS.create("binned")(torch.randn(10, 2), torch.randn(10, 2))


# ----------------------------------------------------------------------------- closed forms
def _check_knn(d: int) -> None:
    z, h = gaussian_sample(d, 10_000, seed=7)
    err = ESTIMATORS.create("knn", k=3)(z).item() - h
    tol = 0.06 + 0.01 * d
    assert abs(err - KNN_BIAS[d]) <= tol, f"d={d}: err {err:.4f}, bias {KNN_BIAS[d]}, tol {tol}"


@pytest.mark.parametrize("d", [1, 2, 4, 8, 16, 32])
def test_knn_entropy_of_gaussian(d):
    _check_knn(d)


@pytest.mark.slow
@pytest.mark.parametrize("d", range(1, 33))
def test_knn_entropy_of_gaussian_all_d(d):
    _check_knn(d)


@pytest.mark.parametrize("d", [1, 3])
def test_knn_entropy_max_norm_low_d(d):  # measured err -0.046 .. +0.013 (seeds 3-5, N=5000)
    z, h = gaussian_sample(d, 5000, seed=3)
    assert abs(ESTIMATORS.create("knn", metric="max")(z).item() - h) <= 0.08


def test_gaussian_logdet_entropy_d1_to_32():
    n = 10_000
    for d in range(1, 33):
        z, h = gaussian_sample(d, n, seed=11 + d)
        err = ESTIMATORS.create("gaussian")(z).item() - h
        assert abs(err) <= 4 * math.sqrt(d / (2 * n)) + d * (d + 1) / (4 * n), (d, err)


def test_gaussian_bias_correction_is_unbiased():
    # N = 20, d = 5: logdet of the sample covariance is biased by about -0.8 nats.
    d, n, reps = 5, 20, 2000
    g = gen(5)
    z = torch.randn(reps, n, d, generator=g, dtype=F64)
    h = 0.5 * d * math.log(2 * math.pi * math.e)  # identity covariance
    raw = torch.stack([gaussian_entropy(zi) for zi in z]) - h
    cor = torch.stack([gaussian_entropy(zi, bias_correction=True) for zi in z]) - h
    nu = n - 1
    expected_bias = 0.5 * (d * math.log(2 / nu) + sum(digamma((nu - i + 1) / 2) for i in range(1, d + 1)))
    se = raw.std().item() / math.sqrt(reps)
    assert abs(raw.mean().item() - expected_bias) < 4 * se
    assert abs(cor.mean().item()) < 4 * se and expected_bias < -10 * se


def _coding_rate_ref(z: np.ndarray, eps2: float) -> float:
    """Paper convention: Z_p = z.T (d x m), R = 1/2 logdet(I_d + d/(m eps^2) Z_p Z_p^T)."""
    m, d = z.shape
    zp = z.T.astype(np.float64)
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps2) * zp @ zp.T)[1]


@pytest.mark.parametrize(
    "m, d, rank", [(5, 20, None), (50, 8, None), (30, 12, 3), (12, 30, 2), (16, 16, None)]
)
def test_coding_rate_matches_float64_reference(m, d, rank):
    rng = np.random.default_rng(m * 100 + d)
    z = rng.standard_normal((m, d)) if rank is None else rng.standard_normal((m, rank)) @ rng.standard_normal((rank, d))
    for eps2 in (0.5, 0.01):
        ref = _coding_rate_ref(z, eps2)
        est = ESTIMATORS.create("coding_rate", eps2=eps2)
        assert abs(est(torch.tensor(z)).item() - ref) <= 1e-10 * max(1.0, abs(ref))
        # float32 input, computed in float64
        assert abs(est(torch.tensor(z, dtype=torch.float32)).item() - ref) < 1e-4 * max(1.0, abs(ref))


# ----------------------------------------------------------------------------- mutual information
def _ksg_ref(x: np.ndarray, y: np.ndarray, k: int, algorithm: int) -> float:
    """Brute-force float64 KSG with max-norms (Kraskov et al. 2004, eqs. 8 and 9)."""
    n = len(x)
    dx = np.abs(x[:, None] - x[None]).max(-1)
    dy = np.abs(y[:, None] - y[None]).max(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    idx = np.argsort(np.maximum(dx, dy), 1, kind="stable")[:, :k]
    if algorithm == 1:
        eps = np.maximum(dx, dy)[np.arange(n)[:, None], idx][:, -1:]
        nx, ny = (dx < eps).sum(1), (dy < eps).sum(1)
        return digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    ex = np.take_along_axis(dx, idx, 1).max(1, keepdims=True)
    ey = np.take_along_axis(dy, idx, 1).max(1, keepdims=True)
    nx, ny = (dx <= ex).sum(1), (dy <= ey).sum(1)
    return digamma(k) - 1 / k + digamma(n) - np.mean(digamma(nx) + digamma(ny))


@pytest.mark.parametrize("algorithm", [1, 2])
@pytest.mark.parametrize("dim", [1, 2])
def test_ksg_matches_bruteforce_reference(algorithm, dim):
    x, y, _ = correlated(400, 0.6, seed=2, dim=dim)
    ref = _ksg_ref(x.numpy(), y.numpy(), 4, algorithm)
    got = ksg_mutual_information(x, y, k=4, algorithm=algorithm, chunk_size=37).item()
    assert abs(got - ref) < 1e-12


def test_ksg_algorithm1_matches_scikit_learn():
    from sklearn.feature_selection._mutual_info import _compute_mi_cc

    x, y, _ = correlated(800, 0.5, seed=4)
    ref = _compute_mi_cc(x[:, 0].numpy(), y[:, 0].numpy(), 3)  # sklearn clips at 0; here > 0
    assert ref > 0 and abs(ksg_mutual_information(x, y, k=3).item() - ref) < 1e-12


@pytest.mark.parametrize("algorithm", [1, 2])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ksg_correlated_gaussians(algorithm, rho):
    x, y, mi = correlated(4000, rho, seed=21)
    got = ESTIMATORS.create("ksg", algorithm=algorithm)(x, y).item()
    assert abs(got - mi) <= 0.05, (got, mi)


def test_ksg_two_dimensional_blocks():
    x, y, mi = correlated(3000, 0.7, seed=8, dim=2)
    got = ESTIMATORS.create("ksg", k=5)(x, y).item()
    assert abs(got - mi) <= 0.08, (got, mi)


@pytest.mark.parametrize("rho, low, high", [(0.3, -0.03, 0.03), (0.5, -0.03, 0.03), (0.9, -0.12, 0.02)])
def test_binned_correlated_gaussians(rho, low, high):
    x, y, mi = correlated(4000, rho, seed=31)
    err = ESTIMATORS.create("binned")(x, y).item() - mi
    assert low <= err <= high, (rho, err)


def test_binned_plugin_matches_scikit_learn_and_miller_madow_term():
    from sklearn.metrics import mutual_info_score

    x, y, _ = correlated(3000, 0.4, seed=9)
    x, y = x[:, 0], y[:, 0]
    bx = ((x - x.min()) / (x.max() - x.min()) * 12).floor().clamp(0, 11).long().numpy()
    by = ((y - y.min()) / (y.max() - y.min()) * 12).floor().clamp(0, 11).long().numpy()
    plug = binned_mutual_information(x, y, 12, miller_madow=False).item()
    assert abs(plug - mutual_info_score(bx, by)) < 1e-12
    mx, my = len(np.unique(bx)), len(np.unique(by))
    mxy = len(np.unique(bx * 12 + by))
    mm = binned_mutual_information(x, y, 12).item()
    assert abs(mm - plug - (mx + my - mxy - 1) / (2 * 3000)) < 1e-12


def test_binned_is_batched():
    x = torch.rand(3, 5, 500, generator=gen(1), dtype=F64)
    y = x + 0.1 * torch.rand(3, 5, 500, generator=gen(2), dtype=F64)
    out = binned_mutual_information(x, y, 8, value_range=(0.0, 1.1))
    assert out.shape == (3, 5)
    assert abs(out[1, 2].item() - binned_mutual_information(x[1, 2], y[1, 2], 8, value_range=(0.0, 1.1)).item()) < 1e-12


@pytest.mark.parametrize("name", ["ksg", "binned"])
def test_independent_inside_shuffle_null_dependent_outside(name):
    est = ESTIMATORS.create(name)
    x, y, _ = correlated(1500, 0.0, seed=13)
    null = shuffle_null(est, x, y, n_shuffles=20, quantile=0.95, generator=gen(0))
    assert null.samples.shape == (20,)
    assert est(x, y).item() <= null.upper.item()
    x2, y2, _ = correlated(1500, 0.25, seed=13)  # MI = 0.033 nats
    null2 = shuffle_null(est, x2, y2, n_shuffles=20, generator=gen(0))
    assert est(x2, y2).item() > null2.upper.item() + 0.01


def test_miller_madow_removes_first_order_bias():
    # independent uniform, 16 x 16 bins, N = 2000: plug-in bias ~ (B-1)^2 / 2N = 0.056 nats
    x, y = torch.rand(2, 64, 2000, generator=gen(3), dtype=F64)
    plug = binned_mutual_information(x, y, 16, value_range=(0, 1), miller_madow=False).mean().item()
    mm = binned_mutual_information(x, y, 16, value_range=(0, 1)).mean().item()
    assert abs(plug - 225 / 4000) < 0.005 and abs(mm) < 0.005


# ----------------------------------------------------------------------------- scale and normalisation
@pytest.mark.parametrize("metric", ["euclidean", "max"])
@pytest.mark.parametrize("a", [0.01, 3.0, -2.0])
def test_knn_scale_law(metric, a):
    z, _ = gaussian_sample(5, 1500, seed=1)
    est = ESTIMATORS.create("knn", metric=metric)
    assert abs(est(a * z).item() - est(z).item() - 5 * math.log(abs(a))) < 1e-8


def test_normalisations_remove_the_scale():
    z, _ = gaussian_sample(4, 1500, seed=2)
    gains = torch.tensor([0.1, 1.0, 5.0, 30.0], dtype=F64)
    knn = ESTIMATORS.create("knn")
    assert abs(knn(normalize(z * gains, "standardize")).item() - knn(normalize(z, "standardize")).item()) < 1e-8
    cr = ESTIMATORS.create("coding_rate")
    row_gain = torch.rand(1500, 1, generator=gen(0), dtype=F64) * 10 + 0.1
    assert abs(cr(normalize(z * row_gain, "unit_norm")).item() - cr(normalize(z, "unit_norm")).item()) < 1e-9
    w = normalize(z * gains + 3.0, "whiten")
    torch.testing.assert_close(w.T @ w / 1500, torch.eye(4, dtype=F64), atol=1e-6, rtol=0)
    s = normalize(z * gains + 3.0, "standardize")
    torch.testing.assert_close(s.std(0, correction=0), torch.ones(4, dtype=F64))
    torch.testing.assert_close(normalize(z, "unit_norm").norm(dim=1), torch.ones(1500, dtype=F64))


# ----------------------------------------------------------------------------- chunking, ties, devices
def test_chunked_equals_unchunked():
    z, _ = gaussian_sample(3, 700, seed=5)
    full = knn_distances(z, 4, chunk_size=700)
    for chunk in (1, 7, 300):
        assert torch.equal(knn_distances(z, 4, chunk_size=chunk), full)
    assert kl_entropy(z, chunk_size=13).item() == kl_entropy(z, chunk_size=700).item()
    x, y, _ = correlated(600, 0.5, seed=6)
    for alg in (1, 2):
        assert ksg_mutual_information(x, y, algorithm=alg, chunk_size=11).item() == ksg_mutual_information(
            x, y, algorithm=alg, chunk_size=600
        ).item()


@pytest.mark.parametrize("metric, d", [("euclidean", 3), ("euclidean", 40), ("max", 5)])
def test_knn_distances_and_counts_match_bruteforce(metric, d):
    z = torch.randn(300, d, generator=gen(d), dtype=F64)
    diff = z[:, None] - z[None]
    dist = diff.norm(dim=-1) if metric == "euclidean" else diff.abs().amax(-1)
    dist.fill_diagonal_(math.inf)
    ref = dist.sort(1).values[:, :5]
    torch.testing.assert_close(knn_distances(z, 5, metric, chunk_size=64), ref, atol=1e-9, rtol=0)
    radius = ref[:, 2] * 1.0001
    assert torch.equal(count_within(z, radius, metric, chunk_size=50), (dist < radius[:, None]).sum(1))


@pytest.mark.parametrize("n", [64 * 21, 64 * 21 + 37, 5000])
def test_smallest_k_equals_sort(n):
    """The two-level selection returns the sorted k smallest values of every row, with ties
    (integers), +inf entries and a leftover partial group."""
    g = gen(n)
    for k in (1, 3, 5):
        x = torch.randint(0, 50, (9, n), generator=g).double()
        x[0, :] = math.inf
        x[0, 7] = 2.0
        x[1, -3:] = -1.0  # the smallest values sit in the leftover columns
        vals, idx = smallest_k(x, k)
        assert torch.equal(vals, x.sort(1).values[:, :k])
        assert torch.equal(x.gather(1, idx), vals)
        y = torch.randn(9, n, generator=g, dtype=F64)
        vals, idx = smallest_k(y, k)
        assert torch.equal(vals, y.sort(1).values[:, :k])
        assert torch.equal(idx, y.sort(1).indices[:, :k])


def test_knn_two_level_path_matches_bruteforce():
    z = torch.randn(3000, 12, generator=gen(12), dtype=F64)
    dist = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").fill_diagonal_(math.inf)
    ref = dist.sort(1).values[:, :4]
    torch.testing.assert_close(knn_distances(z, 4), ref, atol=1e-9, rtol=0)


def test_knn_float32_ranking_falls_back_on_near_ties():
    """Lattice points with 1e-7 jitter: many neighbours tie below float32 resolution, so the
    float32 ranking cannot certify them and those rows are re-ranked in float64; the
    distances still equal a direct float64 brute force."""
    g = gen(99)
    base = torch.unique(torch.randint(0, 3, (3000, 12), generator=g).double(), dim=0)
    z = base + 1e-7 * torch.randn(base.shape, generator=g, dtype=F64)
    dist = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist").fill_diagonal_(math.inf)
    torch.testing.assert_close(knn_distances(z, 4), dist.sort(1).values[:, :4], atol=1e-12, rtol=0)


def test_duplicates_need_jitter():
    z = torch.randn(200, 2, generator=gen(0), dtype=F64).repeat(4, 1)  # every point 4 times
    with pytest.raises(ValueError, match="duplicated points"):
        ESTIMATORS.create("knn", jitter=0.0)(z)
    h1 = ESTIMATORS.create("knn")(z)
    assert torch.isfinite(h1)
    assert ESTIMATORS.create("knn", generator=gen(4))(z).item() == ESTIMATORS.create("knn", generator=gen(4))(z).item()


@pytest.mark.parametrize("device", DEVICES)
def test_device_follows_input(device):
    z, _ = gaussian_sample(4, 2000, seed=12)
    x, y, _ = correlated(2000, 0.5, seed=12)
    for name, args in (("knn", (z,)), ("gaussian", (z,)), ("coding_rate", (z,)), ("ksg", (x, y)), ("binned", (x, y))):
        est = ESTIMATORS.create(name)
        cpu = est(*args)
        dev = est(*[a.to(device) for a in args])
        assert dev.device.type == device
        if name in ("knn", "ksg"):  # jitter is drawn from a generator on the input's device
            assert abs(dev.item() - cpu.item()) < 1e-6
        else:
            assert abs(dev.item() - cpu.item()) < 1e-9


# ----------------------------------------------------------------------------- pixel MI
def _bundled(names):
    import skimage.data
    from skimage.color import rgb2gray

    out = []
    for n in names:
        im = getattr(skimage.data, n)()
        out.append(rgb2gray(im) if im.ndim == 3 else im / 255.0)
    return out


def test_offsets():
    assert offsets(3).tolist() == [[0, 3]] and offsets(2, "vertical").tolist() == [[2, 0]]
    ring = offsets(5, "all")
    r = ring.double().norm(dim=1).round()
    assert torch.all(r == 5) and len({tuple(o) for o in ring.tolist()}) == len(ring)
    assert not any((-dy, -dx) in {tuple(o) for o in ring.tolist()} for dy, dx in ring.tolist())
    with pytest.raises(ValueError, match="allowed: horizontal, vertical, all"):
        offsets(2, "diagonal")


def test_natural_image_pixel_mi_decays_with_distance():
    images = _bundled(["camera", "coffee", "grass"])
    ds = [1, 4, 16, 64]
    for direction in ("horizontal", "all"):
        c = pixel_mi_vs_distance(images, ds, direction=direction, n_pairs=20_000, generator=gen(0))
        mi = c.mi.tolist()
        assert all(a > b + 0.05 for a, b in zip(mi, mi[1:])), mi
        assert mi[0] > 0.8 and not c.inside_null().any()
        assert torch.all(c.null_mean.abs() < 0.002)
    json.dumps(c.to_dict())


def test_pixel_mi_with_ksg_decays():
    c = pixel_mi_vs_distance(_bundled(["camera"]), [1, 32], estimator="ksg", n_pairs=1500, n_null=3,
                             generator=gen(2))
    assert c.mi[0] > c.mi[1] + 0.2 and (c.mi > c.null_upper).all(), c.to_dict()


def test_pixel_mi_of_shuffled_pixels_is_inside_null():
    # white-noise "images": pixels independent at every distance
    noise = [np.random.default_rng(s).random((128, 128)) for s in range(3)]
    c = pixel_mi_vs_distance(noise, [1, 3, 9], n_pairs=20_000, n_null=100, quantile=0.99,
                             null="independent", generator=gen(1))
    assert c.inside_null().all(), c.to_dict()


def _mosaics(n, seed):
    from structlearn.data.mosaics import make_mosaics

    images = _bundled(["camera", "coffee", "grass", "astronaut", "chelsea", "rocket", "moon", "gravel", "brick"])
    return make_mosaics(images, grid=(3, 3), tile=(8, 8), n=n, generator=gen(seed))


def test_mosaic_cross_tile_inside_null_within_tile_outside():
    m = _mosaics(1000, seed=0)
    ds = [1, 2, 3, 4, 6, 8, 12, 16]
    # 8 distances: the null's 1 - 0.04/8 quantile keeps the family-wise false alarm at 4%
    c = mosaic_mi_vs_distance(m.x, m.tile_map, ds, n_pairs=20_000, n_null=200, quantile=0.995, generator=gen(0))
    assert c.cross.inside_null().all(), c.cross.to_dict()
    within = c.within.mi[:5]  # distances < tile width have within-tile pairs
    assert (within > c.within.null_upper[:5] + 0.05).all() and within[0] > within[-1]
    assert torch.isnan(c.within.mi[5:]).all() and (c.within.n_pairs[5:] == 0).all()
    # planted dependence: copy tile column 0 into column 1, cross-tile MI at r = 8 explodes
    x = m.x.clone()
    x[:, :, 8:16] = x[:, :, 0:8]
    c2 = mosaic_mi_vs_distance(x, m.tile_map, [8], n_pairs=20_000, generator=gen(0))
    assert c2.cross.mi[0] > c2.cross.null_upper[0] + 0.2
