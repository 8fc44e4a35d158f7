"""FISTA and the sparse-coding objective against exact references."""
import numpy as np
import pytest
import torch

from structlearn.functional.sparse import fista, group_soft_threshold, lasso_objective, lipschitz, soft_threshold
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding


def _problem(n=6, k=24, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(k, d, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, D


@pytest.mark.parametrize("lam", [0.05, 0.3, 1.0])
def test_fista_matches_sklearn_lasso(lam):
    from sklearn.linear_model import Lasso

    x, D = _problem()
    z = fista(x, D, lam, n_iter=5000)
    d = D.shape[1]
    for i in range(x.shape[0]):
        # sklearn: 1/(2 n_samples) ||y - X w||^2 + alpha ||w||_1 with y = x_i, X = D^T
        ref = Lasso(alpha=lam / d, fit_intercept=False, tol=1e-12, max_iter=200000).fit(D.T.numpy(), x[i].numpy()).coef_
        np.testing.assert_allclose(z[i].numpy(), ref, atol=1e-4)


def test_fista_kkt_conditions():
    x, D = _problem(n=20, k=40, d=30, seed=3)
    lam = 0.2
    z = fista(x, D, lam, n_iter=4000)
    grad = (x - z @ D) @ D.T  # = lam * sign(z) on the support, |.| <= lam off it
    on = z != 0
    torch.testing.assert_close(grad[on], lam * torch.sign(z[on]), atol=1e-6, rtol=0)
    assert float(grad[~on].abs().max()) <= lam + 1e-6


def test_fista_monotone_objective_in_iterations():
    x, D = _problem(n=50, k=64, d=32, seed=1)
    vals = [float(lasso_objective(x, D, fista(x, D, 0.1, n_iter=t), 0.1).mean()) for t in (5, 20, 100, 1000)]
    assert vals[0] > vals[1] > vals[2] >= vals[3] - 1e-12


def test_lipschitz_exact_and_power():
    _, D = _problem(k=30, d=20)
    s = torch.linalg.svdvals(D)[0] ** 2
    torch.testing.assert_close(lipschitz(D), s)
    torch.testing.assert_close(lipschitz(D, n_iter=500), s, rtol=1e-6, atol=0)


def test_prox_operators():
    v = torch.tensor([[-3.0, -0.5, 0.0, 0.4, 2.0]])
    torch.testing.assert_close(soft_threshold(v, 1.0), torch.tensor([[-2.0, 0.0, 0.0, 0.0, 1.0]]))
    groups = torch.tensor([0, 0, 1, 1, 1])
    out = group_soft_threshold(torch.tensor([[3.0, 4.0, 0.1, 0.1, 0.1]]), 1.0, groups)
    torch.testing.assert_close(out[0, :2], torch.tensor([3.0, 4.0]) * (1 - 1 / 5))  # ||(3,4)|| = 5
    assert torch.all(out[0, 2:] == 0)  # group norm 0.17 < 1: whole group zero


def test_fista_rejects_bad_shapes():
    x, D = _problem()
    with pytest.raises(ValueError, match="fista needs"):
        fista(x[:, :3], D, 0.1)
    with pytest.raises(ValueError, match="lam"):
        fista(x, D, -1.0)


def test_sparse_coding_recovers_planted_dictionary():
    """Data from a sparse planted dictionary: learned atoms match it (up to sign/order)."""
    g = torch.Generator().manual_seed(0)
    k, d, n = 24, 32, 6000
    true = torch.randn(k, d, generator=g)
    true = true / true.norm(dim=1, keepdim=True)
    codes = torch.randn(n, k, generator=g) * (torch.rand(n, k, generator=g) < 0.1)
    x = codes @ true + 0.01 * torch.randn(n, d, generator=g)
    layer = DenseLayer(d, k, generator=g)
    obj = SparseCoding(layer, lam=0.5, n_iter=100, generator=g)
    for _ in range(500):
        obj.train_step(x[torch.randint(n, (256,), generator=g)])
    sim = (layer.weight.detach() @ true.T).abs()  # (k, k) |cosines|
    assert float(sim.max(0).values.min()) > 0.99  # every true atom found
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(k), atol=1e-5, rtol=0)


def test_masked_weights_stay_zero_through_training():
    g = torch.Generator().manual_seed(0)
    layer = DenseLayer(20, 30, generator=g)
    mask = torch.rand(30, 20, generator=g) < 0.4
    layer.set_mask_(mask)
    obj = SparseCoding(layer, lam=0.1, n_iter=20, resample_every=2, dead_fraction=0.9, generator=g)
    for _ in range(10):
        obj.train_step(torch.randn(64, 20, generator=g))
    assert torch.all(layer.weight[~mask] == 0)
    assert torch.all(layer.weight[mask] != 0).item() or (layer.weight[mask] != 0).float().mean() > 0.9


@pytest.mark.parametrize("key, value", [("lam", 0.0), ("lam", -1), ("n_iter", 0), ("beta", 1.0)])
def test_sparse_coding_rejects_out_of_range(key, value):
    with pytest.raises(ValueError, match=key):
        SparseCoding(DenseLayer(4, 4), **{key: value})


def test_fista_row_blocks_equal_one_block():
    """A large CPU batch runs in blocks of rows (samples are independent): the codes equal
    those of one block, with and without a warm start, in float64."""
    from structlearn.functional.sparse import _block_rows, _fista_loop

    g = torch.Generator().manual_seed(21)
    D = torch.randn(64, 40, generator=g, dtype=torch.float64)
    D /= D.norm(dim=1, keepdim=True)
    x = torch.randn(700, 40, generator=g, dtype=torch.float64)
    assert _block_rows(700, 64, x.device) < 700  # the blocked route is the one under test
    L = float(lipschitz(D))
    step = 1.0 / L
    c = (x @ D.T) * step
    M = torch.eye(64, dtype=torch.float64) - D @ D.T * step
    z0 = torch.randn(700, 64, generator=g, dtype=torch.float64) * 0.1
    for start in (None, z0):
        ref = _fista_loop(c, D, M, step, 0.2 * step, 50, start, None, 0.0)
        torch.testing.assert_close(fista(x, D, 0.2, 50, L=L, z0=start), ref, rtol=0, atol=1e-12)


def test_blocked_dictionary_update_equals_per_atom_loop():
    """The blocked Gauss-Seidel pass gives the per-atom block-coordinate iterates (Mairal et
    al. 2010, Algorithm 2) in float64, with a pruning mask, an unused atom, and a block size
    that does not divide k."""
    from structlearn.objectives import sparse_coding as sc

    g = torch.Generator().manual_seed(31)
    layer = DenseLayer(48, 150, generator=g, dtype=torch.float64)
    layer.mask[:, :10] = False  # every unit pruned on the first 10 inputs
    obj = SparseCoding(layer, lam=0.3, n_iter=30, generator=g)
    obj.train_step(torch.randn(200, 48, generator=g, dtype=torch.float64))
    obj.A[7, :] = 0
    obj.A[:, 7] = 0  # an atom no code used: left as it is
    W = layer.weight.detach().clone() * layer.mask
    diag = obj.A.diagonal()
    for j in range(W.shape[0]):
        if diag[j] <= 1e-10 * diag.max():
            continue
        u = (W[j] + (obj.B[j] - obj.A[j] @ W) / diag[j]) * layer.mask[j]
        W[j] = u / u.norm()
    assert sc.BCD_BLOCK < 150 and 150 % sc.BCD_BLOCK
    obj._bcd_()
    torch.testing.assert_close(layer.weight.detach(), W, rtol=0, atol=1e-13)
    assert not layer.weight[:, :10].any()


def test_forgetting_schedule_matches_scikit_learn_and_data_init():
    """beta=None is scikit-learn's MiniBatchDictionaryLearning forgetting schedule (checked
    against its own update of the inner statistics), and init='data' starts from normalised
    samples of the first batch."""
    from sklearn.decomposition import MiniBatchDictionaryLearning

    g = torch.Generator().manual_seed(41)
    layer = DenseLayer(20, 8, generator=g, dtype=torch.float64)
    obj = SparseCoding(layer, lam=0.1, n_iter=20, beta=None, init="data", generator=g)
    sk = MiniBatchDictionaryLearning(n_components=8)
    for b in (5, 64):
        for t in (0, 1, b - 2, b - 1, b, 3 * b):
            obj.steps.fill_(t)
            sk._A, sk._B = np.ones((8, 8)), np.ones((20, 8))
            sk._update_inner_stats(np.zeros((b, 20)), np.zeros((b, 8)), b, t)
            assert obj.forgetting_factor(b) == pytest.approx(sk._A[0, 0], rel=1e-15)
    obj.steps.fill_(0)
    x = torch.randn(50, 20, generator=g, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(obj.seed))
    pick = torch.randperm(50, generator=gen)[:8]
    obj._init_from_data_(x)
    torch.testing.assert_close(layer.weight.detach(), x[pick] / x[pick].norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="allowed: random, data"):
        SparseCoding(DenseLayer(20, 8), init="pca")
    with pytest.raises(ValueError, match="beta"):
        SparseCoding(DenseLayer(20, 8), beta=1.0)


@pytest.mark.parametrize("stats", ["dense", "sparse"])
def test_rho_weighting_has_its_closed_form(stats):
    """rho: beta_t = (1 - 1/t)^rho, so after T batches the statistics are the closed-form
    weighted sum A_T = sum_s (s/T)^rho zz_s (prod_{u=s+1}^T ((u-1)/u)^rho = (s/T)^rho), and B_T
    likewise; on the dense path and on the sparse path's lazily scaled A."""
    g = torch.Generator().manual_seed(43)
    layer = DenseLayer(12, 16, generator=g, dtype=torch.float64)
    obj = SparseCoding(layer, lam=0.05, n_iter=30, rho=2.5, stats=stats, resample_every=0, generator=g)
    zzs, zxs = [], []
    T = 7
    for _ in range(T):
        st = obj.statistics(torch.randn(32, 12, generator=g, dtype=torch.float64))
        zz = st["zz"].to_dense() if st["zz"].is_sparse else st["zz"]
        zzs.append(zz.clone())
        zxs.append(st["zx"].clone())
        obj.update(st)
    w = [(s / T) ** 2.5 for s in range(1, T + 1)]
    scale = float(obj.A_scale) if stats == "sparse" else 1.0
    torch.testing.assert_close(obj.A * scale, sum(c * a for c, a in zip(w, zzs)), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(obj.B * scale, sum(c * b for c, b in zip(w, zxs)), rtol=1e-12, atol=1e-14)
    assert zzs[-1].abs().sum() > 0 and w[0] < 1e-2  # the first batch has faded, the last counts fully
    with pytest.raises(ValueError, match="rho"):
        SparseCoding(DenseLayer(20, 8), rho=0.0)
