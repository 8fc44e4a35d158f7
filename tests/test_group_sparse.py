"""Group sparse coding: the L2,1 penalty and its prox against their definitions, the
shift-similarity read-out, and done-point 5: units within a group are more shift-similar
(max normalised cross-correlation over shifts) than units across groups, reported as the two
distributions (printed with -s), on planted data (fast) and on natural patches (slow)."""
import math

import pytest
import torch

from structlearn.models.dense import DenseLayer
from structlearn.objectives import OBJECTIVES
from structlearn.objectives.group_sparse import (
    consecutive_groups,
    group_norms,
    shift_similarity,
    within_across,
)


def test_penalty_and_prox_match_definitions():
    layer = DenseLayer(10, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    obj = OBJECTIVES.create("group_sparse_coding", layer, generator=torch.Generator(), group_size=3, lam=0.1)
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = z[:, :3].norm(dim=1) + z[:, 3:].norm(dim=1)
    torch.testing.assert_close(obj.penalty(z), expected)
    # the prox minimises 1/2 ||p - v||^2 + t sum_g ||p_g||: check optimality against perturbations
    t = 0.8
    p = obj.prox()(z, t)
    f = lambda q: 0.5 * ((q - z) ** 2).sum(1) + t * group_norms(q, obj.groups).sum(1)  # noqa: E731
    g = torch.Generator().manual_seed(2)
    for _ in range(50):
        q = p + 1e-3 * torch.randn(p.shape, generator=g, dtype=p.dtype)
        assert bool((f(q) >= f(p) - 1e-12).all())
    small = z.clone()
    small[:, :3] *= 1e-3  # a group below the threshold is zeroed as a whole
    assert bool((obj.prox()(small, t)[:, :3] == 0).all())


def test_group_size_one_is_sparse_coding():
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    runs = []
    for name, kw in (("sparse_coding", {}), ("group_sparse_coding", {"group_size": 1})):
        layer = DenseLayer(16, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        obj = OBJECTIVES.create(name, layer, generator=torch.Generator().manual_seed(5), lam=0.2, **kw)
        for _ in range(3):
            obj.train_step(x)
        runs.append(layer.weight.detach())
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-9, atol=1e-10)


def test_groups_and_bad_group_size():
    assert consecutive_groups(8, 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="group_size"):
        OBJECTIVES.create("group_sparse_coding", DenseLayer(16, 10), generator=torch.Generator(), group_size=4)


def test_shift_similarity_closed_forms():
    g = torch.Generator().manual_seed(6)
    f = torch.zeros(3, 9, 9, dtype=torch.float64)
    f[0, 3:6, 2:5] = torch.randn(3, 3, generator=g, dtype=torch.float64)
    f[1] = -2.0 * torch.roll(f[0], shifts=(1, 2), dims=(0, 1))  # a scaled, negated shift of unit 0
    f[2, 0, 8] = 1.0  # far away, no overlap within two pixels
    S = shift_similarity(f, 2)
    assert abs(float(S[0, 1]) - 1.0) < 1e-12 and abs(float(S[1, 0]) - 1.0) < 1e-12
    assert float(S[0, 2]) == 0.0
    assert float(shift_similarity(f, 1)[0, 1]) < 0.999  # the (1, 2) shift is out of reach at 1
    within, across = within_across(S, torch.tensor([0, 0, 1]))
    assert within.tolist() == pytest.approx([1.0, 1.0]) and across.numel() == 4


def gabor(h, cy, cx, theta, freq, sigma=1.5):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(h, dtype=torch.float64), indexing="ij")
    along = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
    return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)) * torch.cos(2 * math.pi * freq * along)


def planted_groups(n=6000, n_groups=8, size=4, h=8, p=0.15, seed=0):
    """Each planted group is one Gabor at 4 positions one pixel apart; a group is active
    (all its atoms with Gaussian coefficients) with probability p."""
    g = torch.Generator().manual_seed(seed)
    atoms = []
    for _ in range(n_groups):
        r = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))[:size]:
            atoms.append(gabor(h, 2.5 + 2 * r[0] + dy, 2.5 + 2 * r[1] + dx, math.pi * r[2], 0.2 + 0.1 * r[3]))
    D = torch.stack(atoms).flatten(1)
    D = D / D.norm(dim=1, keepdim=True)
    active = (torch.rand(n, n_groups, generator=g) < p).double().repeat_interleave(size, 1)
    codes = torch.randn(n, n_groups * size, generator=g, dtype=torch.float64) * active
    return (codes @ D + 0.05 * torch.randn(n, h * h, generator=g, dtype=torch.float64)).float()


def train(name, X, k, shape, lam, steps, bs, **kw):
    layer = DenseLayer(X.shape[1], k, shape, generator=torch.Generator().manual_seed(0))
    obj = OBJECTIVES.create(name, layer, generator=torch.Generator().manual_seed(1), lam=lam, **kw)
    for i in range(steps):
        j = (i * bs) % (X.shape[0] - bs)
        obj.train_step(X[j:j + bs])
    return layer


def report(label, within, across):
    probs = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    q = lambda t: ", ".join(f"{float(v):.3f}" for v in torch.quantile(t.double(), probs))  # noqa: E731
    print(f"\n{label}: within-group quartiles [{q(within)}] (n={within.numel()}); "
          f"across-group [{q(across)}] (n={across.numel()})")


def test_planted_groups_are_shift_similar_within():
    X = planted_groups()
    groups = consecutive_groups(32, 4)
    out = {}
    for name, kw in (("group_sparse_coding", {"group_size": 4}), ("sparse_coding", {})):
        layer = train(name, X, 32, (8, 8), lam=0.6, steps=600, bs=200, **kw)
        within, across = within_across(shift_similarity(layer.filters().double(), 2), groups)
        report(f"planted, {name}", within, across)
        out[name] = (within.median(), across.median())
    gw, ga = out["group_sparse_coding"]
    assert float(gw) > float(ga) + 0.25
    sw, sa = out["sparse_coding"]  # L1: consecutive units are unrelated, no gap
    assert float(gw - ga) > float(sw - sa) + 0.2


@pytest.mark.slow
def test_natural_patches_groups_are_shift_similar_within():
    from structlearn.data.images import load_bundled
    from structlearn.data.patches import sample_patches
    from structlearn.data.whiten import ZCA

    P = sample_patches(load_bundled(), (8, 8), 60000, torch.Generator().manual_seed(0)).reshape(60000, 64)
    P = P - P.mean(1, keepdim=True)
    X = ZCA(64, floor=0.1).fit(P)(P).float()
    X = X / X.std()
    groups = consecutive_groups(64, 4)
    out = {}
    for name, kw in (("group_sparse_coding", {"group_size": 4}), ("sparse_coding", {})):
        layer = train(name, X, 64, (8, 8), lam=2.5, steps=800, bs=250, **kw)
        within, across = within_across(shift_similarity(layer.filters().double(), 2), groups)
        report(f"natural 8x8 patches, {name}", within, across)
        out[name] = (within.median(), across.median())
    gw, ga = out["group_sparse_coding"]
    sw, sa = out["sparse_coding"]
    assert float(gw) > float(ga) + 0.15
    assert float(gw - ga) > float(sw - sa) + 0.1
