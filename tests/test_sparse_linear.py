"""Linear-cost sparse coding (issue 11): projected-gradient dictionary updates, sparse
statistics with a lazy forgetting scale, and the warm power-iteration Lipschitz constant."""
import pytest
import torch

from structlearn.functional.sparse import lipschitz
from structlearn.models.dense import DenseLayer
from structlearn.objectives.group_sparse import GroupSparseCoding
from structlearn.objectives.sparse_coding import DICT_UPDATES, SparseCoding
from structlearn.testing.host_reads import counting_reads, host_counters
from structlearn.testing.objectives import interrupted_and_resumed


def planted(k=24, d=32, n=6000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(k, d, generator=g, dtype=dtype)
    true = true / true.norm(dim=1, keepdim=True)
    codes = torch.randn(n, k, generator=g, dtype=dtype) * (torch.rand(n, k, generator=g) < 0.1)
    return true, codes @ true + 0.01 * torch.randn(n, d, generator=g, dtype=dtype), g


@pytest.mark.parametrize("update", ["sgd", "usage", "adam"])
def test_gradient_updates_recover_a_planted_dictionary(update):
    """The projected-gradient updates find every planted atom (|cos| > 0.98 or 0.99: a constant
    step leaves a noise floor), keep unit rows, and hold no (k, k) statistics."""
    true, x, g = planted()
    k, d = true.shape
    layer = DenseLayer(d, k, generator=g)
    lr, floor = {"sgd": (10.0, 0.98), "usage": (0.3, 0.99), "adam": (0.03, 0.98)}[update]  # (constant steps: a noise floor)
    obj = SparseCoding(layer, lam=0.5, n_iter=100, dict_update=update, dict_lr=lr, generator=g)
    assert not hasattr(obj, "A") and "A" not in obj.state_dict()
    for _ in range(600):
        obj.train_step(x[torch.randint(x.shape[0], (256,), generator=g)])
    sim = (layer.weight.detach() @ true.T).abs()
    assert float(sim.max(0).values.min()) > floor
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(k), atol=1e-5, rtol=0)


def test_gradient_step_equals_a_float64_reference():
    """One sgd, usage and adam step against the formulas written out: G = -z^T r / n, tangent
    part, the step, the mask, unit rows."""
    g = torch.Generator().manual_seed(1)
    k, d, n = 12, 10, 40
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    mask = torch.rand(k, d, generator=g) < 0.7
    for update, lr in (("sgd", 0.5), ("usage", 0.3), ("adam", 0.01)):
        layer = DenseLayer(d, k, generator=torch.Generator().manual_seed(2)).double()
        layer.set_mask_(mask)
        obj = SparseCoding(layer, lam=0.2, n_iter=30, dict_update=update, dict_lr=lr, resample_every=0)
        W0 = layer.weight.detach().clone()
        stats = obj.statistics(x)
        z = obj.infer(x, 30)
        r = x - z @ W0
        G = -(z.T @ r) / n
        torch.testing.assert_close(stats["grad"], G, rtol=1e-12, atol=1e-12)
        Gt = G - (G * W0).sum(1, keepdim=True) * W0
        if update == "sgd":
            step = lr * Gt
        elif update == "usage":
            u = 0.01 * (z * z).mean(0) / (1 - 0.99)  # the bias-corrected running mean after one step
            step = lr * Gt / u.clamp_min(1e-3 * u.mean() + 1e-30)[:, None]
        else:
            m, v = 0.1 * Gt / (1 - 0.9), 0.001 * Gt * Gt / (1 - 0.999)
            step = lr * m / (v.sqrt() + 1e-8)
        want = (W0 - step) * mask
        want = want / want.norm(dim=1, keepdim=True)
        obj.update(stats)
        torch.testing.assert_close(layer.weight.detach(), want, rtol=1e-10, atol=1e-12)
        assert torch.all(layer.weight[~mask] == 0)


def test_sparse_statistics_follow_the_dense_trajectory():
    """stats='sparse' (z^T z from the non-zeros, the forgetting as a lazy scale) gives the dense
    path's dictionary to rounding in float64, with scikit-learn's forgetting schedule and the
    scale folded back in when it underflows."""
    true, x, _ = planted(k=20, d=16, n=2000, dtype=torch.float64)
    layers = {s: DenseLayer(16, 20, generator=torch.Generator().manual_seed(3)).double() for s in ("dense", "sparse")}
    objs = {s: SparseCoding(layers[s], lam=0.3, n_iter=40, beta=None, stats=s, resample_every=4) for s in layers}
    g = torch.Generator().manual_seed(4)
    for step in range(12):  # (longer runs part at rounding level: FISTA's supports flip chaotically)
        xb = x[torch.randint(x.shape[0], (64,), generator=g)]
        for s in ("dense", "sparse"):
            objs[s].train_step(xb)
        if step == 6:  # force the fold-back path once
            sp = objs["sparse"]
            factor = float(sp.A_scale) / 1e-101  # the same A = A_scale * A_hat, at a scale about to underflow
            sp.A_scale.fill_(1e-101)
            sp.A.mul_(factor)
            sp.B.mul_(factor)
    torch.testing.assert_close(layers["sparse"].weight, layers["dense"].weight, rtol=1e-9, atol=1e-10)
    scale = float(objs["sparse"].A_scale)
    torch.testing.assert_close(objs["sparse"].A * scale, objs["dense"].A, rtol=1e-9, atol=1e-12)


def test_power_lipschitz_never_falls_below_the_true_constant_along_training():
    """lipschitz='power': along 200 training batches (a moving dictionary, with re-seeded atoms)
    every FISTA step size uses an L at least the exact ||D||_2^2 and at most the margin above it."""
    true, x, g = planted(k=96, d=32, n=4000)
    layer = DenseLayer(32, 96, generator=g)
    for update in ("bcd", "usage"):
        obj = SparseCoding(layer, lam=0.3, n_iter=20, lipschitz="power", dict_update=update, resample_every=25,
                           generator=g)
        used, exact = [], []
        original = obj.lipschitz_constant

        def spy(D):
            L = original(D)
            used.append(float(L))
            exact.append(float(lipschitz(D.double())))
            return L

        obj.lipschitz_constant = spy
        for _ in range(200):
            obj.train_step(x[torch.randint(x.shape[0], (128,), generator=g)])
        ratio = torch.tensor(used) / torch.tensor(exact)
        assert float(ratio.min()) >= 1.0 and float(ratio.max()) <= 1.05 * 1.0001 + 1e-6, (update, ratio.min(), ratio.max())
        assert int(obj.power_calls) == 200


def test_default_path_and_its_state_are_unchanged():
    """The options are opt-in: the default objective's state_dict keys are today's."""
    obj = SparseCoding(DenseLayer(8, 6))
    assert set(obj.state_dict()) == {"A", "B", "steps", "seed", "layer.weight", "layer.mask"}
    assert obj.mean_statistics() == ("zz", "zx", "loss", "active_codes")
    adam = SparseCoding(DenseLayer(8, 6), dict_update="adam")
    assert adam.mean_statistics() == ("grad", "usage", "loss", "active_codes")
    assert {"usage", "adam_m", "adam_v"} <= set(adam.state_dict())


def test_adam_training_resumes_bit_identically():
    true, x, g = planted(k=16, d=12, n=1000)
    batches = [x[torch.randint(1000, (64,), generator=g)] for _ in range(20)]

    def build():
        return SparseCoding(DenseLayer(12, 16, generator=torch.Generator().manual_seed(0)), dict_update="adam",
                            lipschitz="power", lipschitz_every=4, resample_every=5)

    a, c = interrupted_and_resumed(build, batches, 9)
    assert torch.equal(a.layer.weight, c.layer.weight)


@pytest.mark.parametrize("params, msg", [
    ({"dict_update": "lbfgs"}, "allowed: bcd, sgd, usage, adam"),
    ({"dict_update": "sgd", "stats": "sparse"}, "stats 'sparse' only with dict_update 'bcd'"),
    ({"lipschitz_margin": 0.9}, "lipschitz_margin"),
    ({"dict_lr": 0.0}, "dict_lr"),
])
def test_bad_options_are_named(params, msg):
    with pytest.raises(ValueError, match=msg):
        SparseCoding(DenseLayer(4, 4), **params)


def test_options_are_fixed_once_built():
    obj = SparseCoding(DenseLayer(4, 4), dict_update="usage")
    with pytest.raises(ValueError, match="dict_update is fixed"):
        obj.set_params(dict_update="bcd")
    obj.set_params(dict_lr=0.1)  # a step size may change (e.g. fine-tuning)
    assert DICT_UPDATES == ("bcd", "sgd", "usage", "adam")


def test_lanczos_reaches_a_crowded_top_eigenvalue_from_below():
    """The fallback when warm power iterations do not settle: 20 Lanczos steps on a random
    dictionary (a Marchenko-Pastur spectrum, whose top eigenvalues crowd together) give a Ritz
    value within 0.1% below ||D||_2^2, never above it, and the Ritz vector as the next start."""
    g = torch.Generator().manual_seed(5)
    D = torch.randn(1024, 256, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    obj = SparseCoding(DenseLayer(256, 1024).double(), lipschitz="power")
    exact = float(lipschitz(D))
    theta, ritz = obj._lanczos_top(D, torch.randn(256, generator=g, dtype=torch.float64), 20)
    assert 0.999 * exact <= theta <= exact * (1 + 1e-12)
    assert float((D @ ritz).pow(2).sum()) >= 0.99 * exact  # a good start for the next call
    v = torch.randn(256, generator=g, dtype=torch.float64)
    for _ in range(12):  # what 12 power iterations reach from the same kind of start
        v = D.T @ (D @ v)
        v = v / v.norm()
    assert float((D @ v).pow(2).sum()) < theta


@pytest.mark.parametrize("update", ["bcd", "usage"])
def test_a_dead_atom_is_reseeded_from_the_residual_on_its_step_only(update):
    """Atom 0 points along a direction the data never has: its code is 0 and it is re-seeded,
    at the ``resample_every``-th update and not before, with a normalised residual row (in the
    data's span); only the statistics of that step carry the residual."""
    g = torch.Generator().manual_seed(4)
    d, k, n = 8, 12, 256
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, -1] = 0  # the data lives in the first d - 1 coordinates
    layer = DenseLayer(d, k, generator=g, dtype=torch.float64)
    with torch.no_grad():
        layer.weight[:, -1] = 0
        layer.weight[0] = 0
        layer.weight[0, -1] = 1.0  # never used
        layer.weight /= layer.weight.norm(dim=1, keepdim=True)
    obj = SparseCoding(layer, lam=0.1, n_iter=50, resample_every=3, dict_update=update, generator=g)
    for step in range(3):
        stats = obj.statistics(x)
        assert ("_residual" in stats) == (step == 2)
        before = layer.weight[0].clone()
        obj.update(stats)
    assert torch.equal(before, torch.eye(d, dtype=torch.float64)[-1])  # untouched for two steps
    w0 = layer.weight[0].detach()
    assert float(w0[-1]) == 0 and float(w0.norm()) == pytest.approx(1, abs=1e-12)
    r = stats["_residual"]
    cos = (r @ w0) / r.norm(dim=1)
    assert float(cos.max()) == pytest.approx(1, abs=1e-12)  # one of the batch's residual rows


@pytest.mark.parametrize("update,lip,grouped", [("bcd", "exact", False), ("usage", "power", False),
                                                ("adam", "power", False), ("sgd", "exact", False), ("bcd", "exact", True)])
def test_a_training_step_reads_the_device_a_fixed_few_times(update, lip, grouped):
    """GPU-ready hot path: a step reads tensors back to the host (a device sync on CUDA) a
    fixed few times, however many FISTA iterations and atoms it runs: none inside FISTA's
    loop, the block-coordinate loop or the gradient step. Counted on the CPU by wrapping
    the tensor-to-Python conversions; the step counters are host tensors and do not count.
    Group sparse coding too (its prox knows the number of groups: no read per iteration).
    exact: FISTA's step (1) and, with bcd, the live-atom list (1); power, once settled: the
    first stopping test's two quotients (1; each further power iteration would read one more)."""
    counts = {}
    for n_iter, k in ((5, 96), (40, 300)):
        true, x, g = planted(k=24, d=32, n=4000)
        extra = {"power_iters": 6} if lip == "power" else {}  # enough that each call settles at its first test
        cls = GroupSparseCoding if grouped else SparseCoding
        obj = cls(DenseLayer(32, k, generator=g), lam=0.3, n_iter=n_iter, dict_update=update, lipschitz=lip,
                  resample_every=0, generator=g, **extra)
        for _ in range(30):  # warm: the power iteration has settled
            obj.train_step(x[torch.randint(4000, (128,), generator=g)])
        per_step = []
        for _ in range(10):
            with counting_reads(skip=host_counters(obj)) as reads:
                obj.train_step(x[torch.randint(4000, (128,), generator=g)])
            per_step.append(len(reads))
        counts[(n_iter, k)] = per_step
    want = {("bcd", "exact"): 2, ("sgd", "exact"): 1}.get((update, lip), 1)
    assert counts[(5, 96)] == counts[(40, 300)] == [want] * 10, counts


def test_sparse_rows_product_equals_the_gemm():
    """sparse_rows_mm (embedding_bag over the non-zeros) is y @ W in float64, with empty rows, an
    all-zero y and a dense y."""
    from structlearn.functional.sparse import sparse_rows_mm

    g = torch.Generator().manual_seed(5)
    W = torch.randn(300, 17, generator=g, dtype=torch.float64)
    y = torch.randn(40, 300, generator=g, dtype=torch.float64) * (torch.rand(40, 300, generator=g) < 0.03)
    y[[0, 7, 39]] = 0  # empty bags, the first and the last among them
    for yy in (y, torch.zeros_like(y), torch.randn(40, 300, generator=g, dtype=torch.float64)):
        torch.testing.assert_close(sparse_rows_mm(yy, W), yy @ W, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,n,grouped", [(96, 64, False), (300, 64, False), (300, 64, True), (200, 600, False)])
def test_fista_sparse_product_equals_the_dense_path(monkeypatch, k, n, grouped):
    """fista(sparse=True) gives the dense path's codes to rounding in float64 on both routes (the
    Gram matrix, k <= 2d; through D, k > 2d), with a group prox, and in row blocks (k <= 512,
    n > 256). The switch sits between the codes' final density and the first iterates' (here
    a third of the codes), so both branches run: dense first, sparse later."""
    from structlearn.functional import sparse as sp

    g = torch.Generator().manual_seed(k + n)
    D = torch.randn(k, 64, generator=g, dtype=torch.float64)
    D /= D.norm(dim=1, keepdim=True)
    x = torch.randn(n, 64, generator=g, dtype=torch.float64)
    L = float(lipschitz(D))
    prox = None
    if grouped:
        groups = torch.arange(k) // 4
        prox = lambda v, t: sp.group_soft_threshold(v, t, groups, k // 4)  # noqa: E731
    taken = []
    original = sp.sparse_rows_mm
    monkeypatch.setattr(sp, "sparse_rows_mm", lambda y, W: taken.append(float((y != 0).double().mean())) or original(y, W))
    dense = sp.fista(x, D, 1.0, 60, L=L, prox=prox)
    assert not taken
    monkeypatch.setattr(sp, "SPARSE_BELOW", 1.3 * float((dense != 0).double().mean()))
    sparse = sp.fista(x, D, 1.0, 60, L=L, prox=prox, sparse=True)
    blocks = -(-n // sp._block_rows(n, k, x.device))
    assert blocks * 30 < len(taken) < blocks * 60 and max(taken) < sp.SPARSE_BELOW, (len(taken), max(taken))
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-10)


def test_sparse_fista_product_trains_the_dense_dictionary(monkeypatch):
    """fista_product='sparse' trains the dense path's dictionary to rounding (float64, 12 steps of
    the usage update with the power constant, and of bcd); the atom-sharded FISTA on one process
    takes the option too. The switch is raised to 20% so that most iterations go sparse here."""
    from structlearn.functional import sparse as sp
    from structlearn.parallel.sharded import ShardedSparseCoding

    monkeypatch.setattr(sp, "SPARSE_BELOW", 0.2)
    taken = []
    original = sp.sparse_rows_mm
    monkeypatch.setattr(sp, "sparse_rows_mm", lambda y, W: taken.append(1) or original(y, W))

    true, x, g = planted(k=20, d=16, n=2000, dtype=torch.float64)
    for update, cls in (("usage", SparseCoding), ("bcd", SparseCoding), ("usage", ShardedSparseCoding)):
        layers = {p: DenseLayer(16, 64, generator=torch.Generator().manual_seed(3)).double() for p in ("dense", "sparse")}
        objs = {p: cls(layers[p], lam=0.3, n_iter=40, dict_update=update, lipschitz="power", fista_product=p,
                       resample_every=4) for p in layers}
        gb = torch.Generator().manual_seed(4)
        for _ in range(12):
            xb = x[torch.randint(x.shape[0], (64,), generator=gb)]
            for p in ("dense", "sparse"):
                objs[p].train_step(xb)
        assert len(taken) > 12 * 40 // 2, (update, len(taken))
        torch.testing.assert_close(layers["sparse"].weight, layers["dense"].weight, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(objs["sparse"].encode(x[:50]), objs["dense"].encode(x[:50]), rtol=0, atol=1e-9)
        taken.clear()
