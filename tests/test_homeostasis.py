"""Homeostasis in sparse coding: per-atom thresholds ``lam_j = lam exp(theta_j)`` that adapt
until every atom fires equally often (SAILnet's adaptive thresholds; module docstring of
:mod:`structlearn.objectives.sparse_coding`)."""
import math

import pytest
import torch

from structlearn.functional.sparse import fista, lipschitz
from structlearn.models.dense import DenseLayer
from structlearn.objectives.group_sparse import GroupSparseCoding
from structlearn.objectives.sparse_coding import THRESHOLD_LOG_RANGE, SparseCoding
from structlearn.testing.objectives import interrupted_and_resumed


def skewed(k=32, d=16, n=4000, seed=0):
    """Data from a fixed overcomplete dictionary whose atoms are used with probabilities from
    1% to 30% (a 30x spread)."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(k, d, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    p = torch.logspace(math.log10(0.01), math.log10(0.3), k, dtype=torch.float64)
    codes = torch.randn(n, k, generator=g, dtype=torch.float64) * (torch.rand(n, k, generator=g, dtype=torch.float64) < p)
    return D, codes @ D + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64), g


def test_codes_solve_the_weighted_lasso():
    """With thresholds set, ``encode`` solves ``min 1/2||x - zD||^2 + lam sum_j w_j |z_j|``:
    equal (1e-9, float64) to plain FISTA on the reference reformulation ``u_j = w_j z_j``,
    ``D'_j = D_j / w_j`` (a LASSO in ``u``), and the weighted KKT conditions hold."""
    g = torch.Generator().manual_seed(3)
    k, d, n, lam = 12, 16, 50, 0.5  # undercomplete: strongly convex, FISTA converges linearly
    obj = SparseCoding(DenseLayer(d, k, generator=g).double(), lam=lam, eval_iter=5000, homeostasis=0.1)
    obj.log_threshold.copy_(torch.randn(k, generator=g, dtype=torch.float64).clamp(-1, 1))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = obj.encode(x)
    D, w = obj.layer.effective_weight().detach(), obj.log_threshold.exp()
    Dp = D / w[:, None]
    u = fista(x, Dp, lam, 5000, L=lipschitz(Dp))
    torch.testing.assert_close(z, u / w, rtol=0, atol=1e-9)
    grad = (z @ D - x) @ D.T  # (n, k), the smooth part's gradient
    on = z != 0
    assert on.any() and (~on).any()
    lam_j = (lam * w).expand_as(z)
    torch.testing.assert_close(grad[on], -(lam_j * z.sign())[on], rtol=0, atol=1e-8)
    assert bool((grad.abs()[~on] <= lam_j[~on] + 1e-8).all())
    torch.testing.assert_close(obj.penalty(z), (z.abs() * w).sum(1), rtol=1e-14, atol=0)


def test_thresholds_equalise_how_often_atoms_fire():
    """On data whose atoms fire 1% to 30% of the time, a fixed dictionary (no dictionary
    step) with homeostasis ends with firing shares within a 1.5x spread (from over 5x), the
    rarely used atoms cheaper and the common ones dearer, and the thresholds' geometric
    mean still ``lam`` (the updates sum to zero)."""
    D, x, g = skewed()
    k, d = D.shape

    def firing(eta):
        layer = DenseLayer(d, k).double()
        layer.weight.data.copy_(D)
        obj = SparseCoding(layer, lam=0.1, n_iter=60, homeostasis=eta, resample_every=0)
        obj._bcd_ = lambda: None  # the dictionary stays the planted one: only the thresholds move
        for _ in range(400):
            obj.train_step(x[torch.randint(x.shape[0], (128,), generator=g)])
        return (obj.encode(x) != 0).double().mean(0), obj

    before, _ = firing(0.0)
    after, obj = firing(0.05)
    assert float(before.max() / before.min()) > 5, before
    assert float(after.max() / after.min()) < 1.5, after
    theta = obj.log_threshold
    assert abs(float(theta.mean())) < 1e-12
    assert float(torch.corrcoef(torch.stack([theta, before]))[0, 1]) > 0.8  # common atoms got dearer
    assert float(theta.abs().max()) <= THRESHOLD_LOG_RANGE


def test_an_atom_that_never_fires_gets_cheaper_until_the_clamp():
    """An atom the data never needs (orthogonal to it) has its threshold lowered by ``eta``
    per step, down to ``lam / 100``, and the others' rise by the same total."""
    g = torch.Generator().manual_seed(1)
    layer = DenseLayer(4, 3).double()
    layer.weight.data.copy_(torch.eye(3, 4, dtype=torch.float64))
    obj = SparseCoding(layer, lam=0.05, n_iter=50, homeostasis=0.5, resample_every=0)
    obj._bcd_ = lambda: None
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    x[:, 2] = 0  # atom 2 is never needed
    for step in range(1, 20):
        obj.train_step(x)
        if step == 1:
            assert float(obj.log_threshold[2]) == pytest.approx(-0.5, abs=1e-12)
            assert float(obj.log_threshold.sum()) == pytest.approx(0.0, abs=1e-12)
    assert float(obj.log_threshold[2]) == pytest.approx(-THRESHOLD_LOG_RANGE, abs=1e-12)


def test_homeostasis_is_opt_in_fixed_and_resumes():
    """Off by default (no state); on, its thresholds are state and a resumed run continues bit
    for bit; the rate cannot change once built, is in [0, 1], and group sparse coding refuses it."""
    assert "log_threshold" not in SparseCoding(DenseLayer(8, 6)).state_dict()
    D, x, g = skewed(k=12, d=8, n=600)
    batches = [x[torch.randint(600, (64,), generator=g)] for _ in range(12)]

    def build():
        return SparseCoding(DenseLayer(8, 12, generator=torch.Generator().manual_seed(0)).double(), lam=0.1,
                            homeostasis=0.1, resample_every=4)

    a, c = interrupted_and_resumed(build, batches, 5)
    assert torch.equal(a.layer.weight, c.layer.weight) and torch.equal(a.log_threshold, c.log_threshold)
    assert float(a.log_threshold.abs().max()) > 0
    with pytest.raises(ValueError, match="homeostasis is fixed"):
        a.set_params(homeostasis=0.0)
    with pytest.raises(ValueError, match="homeostasis"):
        SparseCoding(DenseLayer(4, 4), homeostasis=1.5)
    with pytest.raises(ValueError, match="allowed: 0"):
        GroupSparseCoding(DenseLayer(4, 4), group_size=2, homeostasis=0.1)
