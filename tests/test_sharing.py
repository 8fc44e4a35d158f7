"""Weight sharing with full coverage (issue 13, first part): planted kernels are recovered, the
error-vs-C curve has its knee at the planted C, the convolution path equals the dense
reconstruction, and the error never rises with C."""
from __future__ import annotations

import pytest
import torch

from structlearn.structure.sharing import fit_shared_kernels, sharing_curve, unit_error


def planted(C: int, k: int, size: int, n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` units, each one of ``C`` random unit-norm ``k x k`` kernels at a random position
    fully inside a ``size x size`` image, with a random signed gain in ±[0.5, 2], plus white
    noise of relative size ``noise`` on the kernel's own support. Returns (filters, kernels, channel)."""
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(C, k, k, generator=g, dtype=torch.float64)
    K = K / K.flatten(1).norm(dim=1)[:, None, None]
    chan = torch.randint(C, (n,), generator=g)
    r = torch.randint(size - k + 1, (n,), generator=g)
    q = torch.randint(size - k + 1, (n,), generator=g)
    gain = (0.5 + 1.5 * torch.rand(n, generator=g, dtype=torch.float64)) * torch.where(
        torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    f = torch.zeros(n, size, size, dtype=torch.float64)
    for i in range(n):
        patch = K[chan[i]] + noise * torch.randn(k, k, generator=g, dtype=torch.float64) / k
        f[i, r[i]:r[i] + k, q[i]:q[i] + k] = gain[i] * patch
    return f, K, chan


def test_planted_kernels_are_recovered_at_the_knee():
    f, K, chan = planted(C=4, k=5, size=16, n=200, noise=0.05, seed=0)
    fit, curve = fit_shared_kernels(f, kernel_size=5)
    assert curve["knee_C"] == 4 and fit.channels == 4 and fit.kernel_size == 5
    assert fit.coverage == 1.0
    cos = (fit.kernels.flatten(1) @ K.flatten(1).T).abs()  # (4, 4)
    assert bool((cos.max(1).values > 0.995).all()) and sorted(cos.argmax(1).tolist()) == [0, 1, 2, 3]
    # every unit lands on its planted kernel (a permutation of the labels)
    perm = cos.argmax(1)
    assert torch.equal(perm[fit.channel], chan)
    assert fit.weight_error < 0.06  # the planted noise, about 0.05 of each unit's norm
    errs = curve["weight_error"]
    assert errs[curve["C"].index(2)] > 0.3 > errs[curve["C"].index(4)]


def test_error_never_rises_with_C_and_exact_planting_is_exact():
    f, _, _ = planted(C=3, k=4, size=12, n=120, noise=0.0, seed=1)
    fits = sharing_curve(f, kernel_size=4)
    errs = [s.weight_error for s in fits]
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:])), errs
    at3 = next(s for s in fits if s.channels >= 3)
    assert at3.weight_error < 1e-10
    assert float(unit_error(f, at3).max()) < 1e-10


def test_the_convolution_equals_the_dense_reconstruction():
    """``W_hat x`` through Conv2d(padding=k-1) + gather + gain, on real-valued random inputs, also
    for kernels placed partly outside the image (top/left may be negative)."""
    g = torch.Generator().manual_seed(2)
    f = torch.randn(40, 10, 10, generator=g, dtype=torch.float64) * (torch.rand(40, 10, 10, generator=g) < 0.15)
    fit, _ = fit_shared_kernels(f, kernel_size=3, channels=8)
    x = torch.randn(25, 10, 10, generator=g, dtype=torch.float64)
    dense = x.flatten(1) @ fit.dense().flatten(1).T
    torch.testing.assert_close(fit.conv_responses(x), dense, rtol=1e-10, atol=1e-10)
    # and the weight error is what it says
    err = (f - fit.dense()).norm() / f.norm()
    assert fit.weight_error == pytest.approx(float(err), rel=1e-12)


def test_empty_units_stay_empty_and_bad_arguments_are_named():
    f, _, _ = planted(C=2, k=3, size=8, n=20, noise=0.0, seed=3)
    f[5] = 0
    fit, _ = fit_shared_kernels(f, kernel_size=3)
    assert int(fit.channel[5]) == -1 and float(fit.gain[5]) == 0 and fit.coverage == pytest.approx(19 / 20)
    assert float(fit.dense()[5].abs().max()) == 0
    with pytest.raises(ValueError, match="all 3 units are empty"):
        sharing_curve(torch.zeros(3, 5, 5))
    with pytest.raises(ValueError, match=r"kernel_size=9 out of range; allowed: integers in \[1, 8\]"):
        sharing_curve(f, kernel_size=9)
    with pytest.raises(ValueError, match="max_shift=-1 out of range"):
        sharing_curve(f, max_shift=-1)


@pytest.mark.parametrize("C", [3, 6])
def test_the_knee_finds_a_planted_C_that_is_not_a_power_of_two(C):
    f, K, _ = planted(C=C, k=4, size=14, n=240, noise=0.05, seed=10 + C)
    fit, curve = fit_shared_kernels(f, kernel_size=4)
    assert curve["knee_C"] == C, curve
    assert bool(((fit.kernels.flatten(1) @ K.flatten(1).T).abs().max(1).values > 0.99).all())


def test_a_curve_without_a_knee_says_so():
    """Units that are all different (random local filters: nothing to share) give a curve that
    falls about evenly in log C: no knee, and C is the smallest with weight error <= max_error."""
    from structlearn.structure.sharing import convex_knee

    g = torch.Generator().manual_seed(5)
    f = torch.zeros(64, 12, 12, dtype=torch.float64)
    r, q = torch.randint(8, (64,), generator=g), torch.randint(8, (64,), generator=g)
    for i in range(64):
        f[i, r[i]:r[i] + 4, q[i]:q[i] + 4] = torch.randn(4, 4, generator=g, dtype=torch.float64)
    fit, curve = fit_shared_kernels(f, kernel_size=4, max_error=0.5)
    assert curve["knee_C"] is None and curve["chosen_by"] == "max_error"
    i = curve["C"].index(fit.channels)
    assert curve["weight_error"][i] <= 0.5 < curve["weight_error"][i - 1]
    assert convex_knee([1, 2, 4, 8, 16], [1.0, 0.8, 0.6, 0.4, 0.2]) is None  # straight in log C
    assert convex_knee([1, 2, 4, 8, 16], [1.0, 0.9, 0.1, 0.08, 0.05]) == 2


def planted_colour(C: int, k: int, size: int, n: int, noise: float, seed: int):
    """As :func:`planted`, with colour kernels ``(C, 3, k, k)`` whose channels are independent
    random fields (not colour (x) space: no single colour axis explains them)."""
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(C, 3, k, k, generator=g, dtype=torch.float64)
    K = K / K.flatten(1).norm(dim=1)[:, None, None, None]
    chan = torch.randint(C, (n,), generator=g)
    r = torch.randint(size - k + 1, (n,), generator=g)
    q = torch.randint(size - k + 1, (n,), generator=g)
    gain = (0.5 + 1.5 * torch.rand(n, generator=g, dtype=torch.float64)) * torch.where(
        torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    f = torch.zeros(n, 3, size, size, dtype=torch.float64)
    for i in range(n):
        patch = K[chan[i]] + noise * torch.randn(3, k, k, generator=g, dtype=torch.float64) / (k * 3 ** 0.5)
        f[i, :, r[i]:r[i] + k, q[i]:q[i] + k] = gain[i] * patch
    return f, K, chan


def test_colour_units_share_colour_kernels():
    """Colour units ``(n, 3, H, W)`` built from 4 planted colour kernels ``(3, k, k)`` (channels
    unrelated, so the dominant-colour split cannot explain them): the knee is at 4, the kernels
    come back ``(4, 3, k, k)``, every unit on its own, and the colour convolution equals the dense
    reconstruction on RGB inputs; fields of one channel ``(n, 1, H, W)`` give exactly the
    grayscale fit."""
    f, K, chan = planted_colour(C=4, k=5, size=14, n=160, noise=0.05, seed=4)
    fit, curve = fit_shared_kernels(f)
    assert curve["knee_C"] == 4 and fit.kernels.shape == (4, 3, 5, 5) and fit.in_channels == 3
    cos = (fit.kernels.flatten(1) @ K.flatten(1).T).abs()
    perm = cos.argmax(1)
    assert bool((cos.max(1).values > 0.995).all()) and sorted(perm.tolist()) == [0, 1, 2, 3]
    assert torch.equal(perm[fit.channel], chan)
    assert fit.weight_error < 0.06 and fit.dense().shape == f.shape
    assert fit.weight_error == pytest.approx(float((f - fit.dense()).norm() / f.norm()), rel=1e-12)
    x = torch.randn(30, 3, 14, 14, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(fit.conv_responses(x), x.flatten(1) @ fit.dense().flatten(1).T, rtol=1e-10, atol=1e-10)
    assert float(unit_error(f, fit).max()) < 0.1
    # a colour field with one channel is the grayscale fit: the same kernels and placements
    grey, _ = fit_shared_kernels(f[:, :1], kernel_size=5, channels=4)
    plain, _ = fit_shared_kernels(f[:, 0], kernel_size=5, channels=4)
    torch.testing.assert_close(grey.kernels[:, 0], plain.kernels, rtol=0, atol=0)
    assert torch.equal(grey.channel, plain.channel) and grey.weight_error == plain.weight_error
    with pytest.raises(ValueError, match=r"\(n_units, H, W\) or, for colour units, \(n_units, c, H, W\); got \(2, 3, 1, 4, 4\)"):
        sharing_curve(torch.ones(2, 3, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        sharing_curve(torch.full((2, 3, 4, 4), float("nan"), dtype=torch.float64))
