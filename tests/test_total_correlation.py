"""The total-correlation measure: closed forms, invariances, copies and rotations."""
import math

import pytest
import torch

from structlearn.depth.gain import entropy_profile, layer_entropy
from structlearn.info.total_correlation import (
    HALF_LOG_2PIE,
    expected_logdet_corr,
    gaussianize,
    live_units,
    negentropy,
    total_correlation,
)


def laplace(m, d, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.where(torch.rand(m, d, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return s * -torch.log1p(-torch.rand(m, d, generator=g, dtype=torch.float64)) / math.sqrt(2)  # unit variance


def test_gaussian_closed_form():
    g = torch.Generator().manual_seed(0)
    d, m = 8, 8000
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    C = A @ A.T / d + torch.eye(d, dtype=torch.float64)
    corr = C / torch.outer(C.diag().sqrt(), C.diag().sqrt())
    true = float(-0.5 * torch.linalg.slogdet(corr)[1])
    x = torch.randn(m, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(C).T
    tc = total_correlation(x)
    assert abs(tc.total - true) < 0.03 + 0.05 * true, (tc, true)
    assert abs(tc.gaussian - true) < 0.02 + 0.03 * true


def test_independent_units_have_zero_tc():
    for seed in range(2):
        tc = total_correlation(laplace(8000, 8, seed))
        assert abs(tc.total) < 0.03, tc
        assert abs(float(total_correlation(torch.randn(8000, 8, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(seed))).total)) < 0.03


def _entropy_of_density(f, lo, hi, n=400001):
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    p = f(t)
    integrand = torch.where(p > 0, -p * torch.log(p), torch.zeros_like(p))
    return float(torch.trapezoid(integrand, t))


def test_rotated_laplace_pair_matches_quadrature():
    """x = R_45 s, s two unit-variance Laplace sources: TC(x) = 2 h(x_1) - 2 h(s_1), with the
    density of x_1 = (s_1 + s_2)/sqrt 2 in closed form (sum of two Laplace(b), b = 1/sqrt 2:
    f(t) = (1 + |t|/b) exp(-|t|/b) / (4b))."""
    b = 1 / math.sqrt(2)
    h_sum = _entropy_of_density(lambda t: (1 + t.abs() / b) * torch.exp(-t.abs() / b) / (4 * b), -40, 40)
    h_x1 = h_sum - 0.5 * math.log(2)
    h_s = 1 + math.log(2 * b)
    true = 2 * h_x1 - 2 * h_s
    assert 0.05 < true < 0.2
    est = []
    for seed in range(3):
        s = laplace(20000, 2, seed)
        x = torch.stack([s[:, 0] + s[:, 1], s[:, 0] - s[:, 1]], 1) / math.sqrt(2)
        est.append(total_correlation(x).total)
    assert abs(sum(est) / 3 - true) < 0.02, (est, true)


def test_negentropy_of_laplace_closed_form():
    j = float(negentropy(laplace(20000, 4, 1)).mean())
    closed = HALF_LOG_2PIE - (1 + math.log(2 / math.sqrt(2)))  # 1/2 log(2 pi e) - h(Laplace, variance 1) = 0.0724
    assert abs(j - closed) < 0.01, (j, closed)


def test_expected_logdet_matches_simulation():
    g = torch.Generator().manual_seed(0)
    m, d = 200, 6
    sims = [float(torch.linalg.slogdet(torch.corrcoef(torch.randn(m, d, generator=g, dtype=torch.float64).T))[1])
            for _ in range(400)]
    assert abs(sum(sims) / len(sims) - expected_logdet_corr(m, d)) < 0.01


def test_variance_coupling_is_seen_on_signed_units():
    """s_i = u_i exp(v): uncorrelated, but the magnitudes share v."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(8000, 1, generator=g, dtype=torch.float64)
    s = laplace(8000, 6, 3) * torch.exp(v)
    tc = total_correlation(s)
    assert abs(tc.gaussian) < 0.02
    assert tc.total > 0.5, tc


def test_invariant_to_permutation_rescaling_and_monotone_maps():
    g = torch.Generator().manual_seed(0)
    x = laplace(6000, 5, 0) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    ref = total_correlation(x).total
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert total_correlation(x[:, perm]).total == pytest.approx(ref, abs=1e-6)
    scaled = x * torch.tensor([3.0, -0.01, 7.0, 1e3, -2.0], dtype=torch.float64)
    assert total_correlation(scaled).total == pytest.approx(ref, abs=1e-6)
    assert total_correlation(x.pow(3)).total == pytest.approx(ref, abs=1e-6)


def test_copies_and_dead_units_count_once():
    x = laplace(6000, 4, 1)
    x = x @ torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    copied = torch.cat([x, 2 * x[:, :2], torch.zeros(6000, 1, dtype=torch.float64)], 1)
    assert live_units(copied).tolist() == [0, 1, 2, 3]
    assert total_correlation(copied).total == pytest.approx(total_correlation(x).total, abs=1e-9)


def test_copy_and_identity_layers_gain_nothing_rotation_of_white_gaussian_gains_nothing():
    g = torch.Generator().manual_seed(0)
    z = laplace(6000, 6, 4) * torch.exp(torch.randn(6000, 1, generator=g, dtype=torch.float64))
    prof = entropy_profile([z, z.clone(), torch.cat([z, z], 1)], "total_correlation")
    assert prof.gains[0] == 0.0 and prof.gains[1] == pytest.approx(0.0, abs=1e-9)
    w = torch.randn(8000, 8, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    gain = entropy_profile([w, w @ Q.T], "total_correlation").gains[0]
    assert abs(gain) < 0.005
    # rotating independent non-Gaussian units creates dependence: a negative gain, never a positive one
    s = laplace(8000, 8, 5)
    assert entropy_profile([s, s @ Q.T], "total_correlation").gains[0] < -0.02


def test_layer_entropy_is_per_unit_and_refuses_bad_codes():
    z = laplace(4000, 4, 0)
    h = float(layer_entropy(z, "total_correlation"))
    assert h == pytest.approx(HALF_LOG_2PIE - total_correlation(z).total / 4)
    with pytest.raises(ValueError, match="finite"):
        total_correlation(torch.full((100, 3), float("nan")))
    with pytest.raises(ValueError, match="m > 2 d"):
        total_correlation(torch.randn(40, 30))
    with pytest.raises(ValueError, match="at least 16"):
        total_correlation(torch.randn(10, 3))


def test_gaussianize_is_standard_normal_ranks():
    y = gaussianize(torch.rand(1000, 2, dtype=torch.float64) ** 5)
    assert float(y.mean().abs()) < 1e-12 and float((y.std(0, correction=0) - 1).abs().max()) < 1e-12
