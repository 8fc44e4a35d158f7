"""MCR^2 rates against a float64 NumPy transcription of the published formulas
(Yu et al. 2020, eqs. 5 and 8, with Z as d x m, one sample per column), gradcheck, closed
forms and invariances; and the augmentation groups that give MCR^2 its partition."""
import math

import numpy as np
import pytest
import torch

from structlearn.data.augment import augment_groups
from structlearn.functional.rate import (
    coding_rate,
    logdet_gram,
    membership_from_labels,
    partition_coding_rate,
    rate_reduction,
)


def np_rates(Z_rows: np.ndarray, Pi: np.ndarray, eps2: float) -> tuple[float, float]:
    """The published formulas verbatim: Z is d x m (columns = samples), Pi_j = diag(pi_j)."""
    Z = Z_rows.T.astype(np.float64)
    d, m = Z.shape
    R = 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps2) * Z @ Z.T)[1]
    Rc = 0.0
    for pi in Pi:
        P = np.diag(pi)
        tr = np.trace(P)
        if tr == 0:
            continue
        Rc += tr / (2 * m) * np.linalg.slogdet(np.eye(d) + d / (tr * eps2) * Z @ P @ Z.T)[1]
    return R, Rc


def unit_rows(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True)


def make_z(kind: str, m: int, d: int, g: torch.Generator) -> torch.Tensor:
    if kind == "full":
        z = torch.randn(m, d, generator=g, dtype=torch.float64)
    else:  # rank 3 < min(m, d)
        z = torch.randn(m, 3, generator=g, dtype=torch.float64) @ torch.randn(3, d, generator=g, dtype=torch.float64)
    return unit_rows(z)


CASES = [("full", 7, 20), ("full", 40, 6), ("full", 12, 12), ("rank", 9, 30), ("rank", 50, 8)]


@pytest.mark.parametrize("kind,m,d", CASES)
@pytest.mark.parametrize("eps2", [0.5, 0.01])
def test_parity_labels(kind, m, d, eps2):
    g = torch.Generator().manual_seed(m * 100 + d)
    Z = make_z(kind, m, d, g)
    labels = torch.randint(4, (m,), generator=g)
    labels[:4] = torch.arange(4)
    Pi = membership_from_labels(labels, 4, torch.float64).numpy()
    R_ref, Rc_ref = np_rates(Z.numpy(), Pi, eps2)
    rr = rate_reduction(Z, labels, eps2)
    assert rr.R.dtype == torch.float64
    np.testing.assert_allclose(rr.R.numpy(), R_ref, rtol=1e-6)
    np.testing.assert_allclose(rr.Rc.numpy(), Rc_ref, rtol=1e-6)
    np.testing.assert_allclose(rr.delta_R.numpy(), R_ref - Rc_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind,m,d", CASES)
def test_parity_soft_membership(kind, m, d):
    g = torch.Generator().manual_seed(7 * m + d)
    Z = make_z(kind, m, d, g)
    Pi = torch.rand(3, m, generator=g, dtype=torch.float64)
    Pi = Pi / Pi.sum(0, keepdim=True)  # columns sum to 1
    R_ref, Rc_ref = np_rates(Z.numpy(), Pi.numpy(), 0.5)
    rr = rate_reduction(Z, Pi, 0.5)
    np.testing.assert_allclose(rr.R.numpy(), R_ref, rtol=1e-6)
    np.testing.assert_allclose(rr.Rc.numpy(), Rc_ref, rtol=1e-6)
    np.testing.assert_allclose(rr.delta_R.numpy(), R_ref - Rc_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind,m,d", CASES)
def test_float32_close_to_float64(kind, m, d):
    g = torch.Generator().manual_seed(m + 3 * d)
    Z = make_z(kind, m, d, g)
    labels = torch.randint(3, (m,), generator=g)
    r64 = rate_reduction(Z, labels, 0.5, n_classes=3)
    r32 = rate_reduction(Z.float(), labels, 0.5, n_classes=3)
    assert r32.R.dtype == torch.float32
    for a, b in ((r32.R, r64.R), (r32.Rc, r64.Rc)):
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=1e-4)


def test_labels_equal_one_hot_soft_membership():
    g = torch.Generator().manual_seed(0)
    for m, d in ((10, 25), (40, 6)):
        Z = make_z("full", m, d, g)
        labels = torch.randint(5, (m,), generator=g)
        hard = partition_coding_rate(Z, labels, 0.5, n_classes=6)  # class 5 empty
        soft = partition_coding_rate(Z, membership_from_labels(labels, 6, torch.float64), 0.5)
        torch.testing.assert_close(hard, soft, rtol=1e-10, atol=1e-12)


def test_closed_forms():
    d, m, eps2 = 8, 12, 0.5
    # all samples equal: Z Z^T = ones(m, m) has the single eigenvalue m
    Z = torch.zeros(m, d, dtype=torch.float64)
    Z[:, 0] = 1
    torch.testing.assert_close(coding_rate(Z, eps2), torch.tensor(0.5 * math.log(1 + d / eps2), dtype=torch.float64))
    # m = d orthonormal rows: Z^T Z = I, R = d/2 log(1 + d/(m eps2))
    Q = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64))[0]
    torch.testing.assert_close(coding_rate(Q, eps2), torch.tensor(d / 2 * math.log(1 + 1 / eps2), dtype=torch.float64))
    # one class holding everything: R_c == R, Delta R == 0
    rr = rate_reduction(Q, torch.zeros(d, dtype=torch.long), eps2)
    torch.testing.assert_close(rr.delta_R, torch.tensor(0.0, dtype=torch.float64), atol=1e-12, rtol=0)


def test_invariances():
    g = torch.Generator().manual_seed(2)
    Z = make_z("full", 15, 10, g)
    labels = torch.randint(3, (15,), generator=g)
    rr = rate_reduction(Z, labels)
    Q = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))[0]
    rot = rate_reduction(Z @ Q, labels)  # rotation of the feature space
    perm = torch.randperm(15, generator=g)
    per = rate_reduction(Z[perm], labels[perm])  # order of the samples
    for other in (rot, per):
        torch.testing.assert_close(other.R, rr.R)
        torch.testing.assert_close(other.Rc, rr.Rc)
    assert float(rr.delta_R) > 0  # random features in 3 classes: the whole is bigger than the parts


@pytest.mark.parametrize("m,d", [(6, 9), (9, 4)])
def test_gradcheck(m, d):
    g = torch.Generator().manual_seed(m * d)
    Z = make_z("full", m, d, g).requires_grad_()
    labels = torch.tensor([0, 1, 2] * (m // 3))
    Pi = torch.rand(2, m, generator=g, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda z: coding_rate(z, 0.5), (Z,))
    assert torch.autograd.gradcheck(lambda z: partition_coding_rate(z, labels, 0.5), (Z,))
    assert torch.autograd.gradcheck(lambda z: partition_coding_rate(z, Pi, 0.5), (Z,))
    assert torch.autograd.gradcheck(lambda z: rate_reduction(z, labels, 0.5).delta_R, (Z,))


def test_bad_inputs_raise():
    Z = torch.randn(5, 3)
    with pytest.raises(ValueError, match="eps2"):
        coding_rate(Z, 0.0)
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        coding_rate(torch.randn(5))
    with pytest.raises(ValueError, match="not \\(k, m, m\\)"):
        partition_coding_rate(Z, torch.rand(2, 4))
    with pytest.raises(ValueError, match="labels"):
        partition_coding_rate(Z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="n_classes"):
        partition_coding_rate(Z, torch.tensor([0, 1, 2, 3, 4]), n_classes=3)


# ---- augmentation groups (the label-free partition of self-supervised MCR^2) ----

def test_augment_groups_shapes_and_identity_copy():
    x = torch.randn(5, 2 * 6 * 7, dtype=torch.float64)
    xa, groups = augment_groups(x, (2, 6, 7), 4, torch.Generator().manual_seed(1))
    assert xa.shape == (20, 84) and xa.dtype == torch.float64
    assert torch.equal(groups, torch.arange(5).repeat_interleave(4))
    assert torch.equal(xa[::4], x)  # augmentation 0 is the source itself
    xb, _ = augment_groups(x, (2, 6, 7), 4, torch.Generator().manual_seed(1))
    assert torch.equal(xa, xb)  # seeded by the explicit generator
    xc, _ = augment_groups(x, (2, 6, 7), 4, torch.Generator().manual_seed(2))
    assert not torch.equal(xa, xc)


def test_augment_is_shift_flip_contrast_of_source():
    x = torch.randn(3, 64, dtype=torch.float64)
    # shifts only: every copy is the source translated by at most 1 pixel with zero fill
    xa, _ = augment_groups(x, (8, 8), 6, torch.Generator().manual_seed(3), max_shift=1, flip=False, contrast=0.0)
    src = x.reshape(3, 1, 8, 8)
    for i in range(3):
        for a in range(6):
            img = xa[i * 6 + a].reshape(8, 8)
            ok = False
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    pad = torch.nn.functional.pad(src[i], (1, 1, 1, 1))[0]
                    ok |= torch.equal(img, pad[1 - dy:9 - dy, 1 - dx:9 - dx])
            assert ok
    # contrast only: copies are positive multiples of the source within [1-c, 1+c]
    xa, _ = augment_groups(x, (8, 8), 5, torch.Generator().manual_seed(4), max_shift=0, flip=False, contrast=0.3)
    ratio = xa.reshape(3, 5, 64) / x[:, None, :]
    spread = ratio.amax(-1) - ratio.amin(-1)
    assert float(spread.max()) < 1e-12 and 0.7 <= float(ratio.min()) and float(ratio.max()) <= 1.3
    # flips only: each copy is the source or its mirror image, and both occur
    xa, _ = augment_groups(x, (8, 8), 8, torch.Generator().manual_seed(5), max_shift=0, flip=True, contrast=0.0)
    imgs, src2 = xa.reshape(3, 8, 8, 8), x.reshape(3, 1, 8, 8)
    same = (imgs == src2).flatten(2).all(-1)
    mirror = (imgs == src2.flip(-1)).flatten(2).all(-1)
    assert bool((same | mirror).all()) and bool(mirror.any())


def test_augment_bad_inputs():
    x = torch.randn(3, 16)
    with pytest.raises(ValueError, match="image_shape"):
        augment_groups(x, (16,), 2, torch.Generator())
    with pytest.raises(ValueError, match="n_aug"):
        augment_groups(x, (4, 4), 0, torch.Generator())
    with pytest.raises(ValueError, match="image_shape"):
        augment_groups(x, (3, 4), 2, torch.Generator())


# ---- the MCR^2 objective on planted data ----

def test_mcr2_labels_route_separates_planted_classes():
    """Three classes on three random 2-D subspaces of R^12, mixed: maximising Delta R with
    the labels makes the classes' features orthogonal subspaces (Yu et al. 2020, Thm. 2.1)."""
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives import OBJECTIVES

    g = torch.Generator().manual_seed(0)
    bases = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))[0]
    mix = torch.randn(12, 12, generator=g, dtype=torch.float64)  # makes the subspaces non-orthogonal
    y = torch.arange(300) % 3
    coef = torch.randn(300, 2, generator=g, dtype=torch.float64)
    x = torch.einsum("nc,ncd->nd", coef, bases[:, :6].T.reshape(3, 2, 12)[y]) @ mix.T * 0.3
    layer = DenseLayer(12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    obj = OBJECTIVES.create("mcr2", layer, generator=g, partition="labels", lr=1e-2)
    first = obj.train_step(x, labels=y)
    for _ in range(300):
        last = obj.train_step(x, labels=y)
    # optimum: three orthogonal 2-D subspaces, each class spread evenly (Z_j^T Z_j = 50 I_2):
    # R = 3 log(1 + 12/(300 * 0.5) * 50), R_c = 3 * (100/600) * 2 log(1 + 12/(100 * 0.5) * 50)
    best = 3 * math.log(1 + 12 / 150 * 50) - math.log(1 + 12 / 50 * 50)
    assert float(first["delta_R"]) < 0.75 * best < 0.95 * best < float(last["delta_R"]) <= best + 0.05
    z = obj.encode(x).detach()
    cos = (z[y == 0] @ z[y == 1].T).abs().mean()  # across classes: near orthogonal
    assert float(cos) < 0.2, float(cos)
    with pytest.raises(ValueError, match="labels"):
        obj.train_step(x)


def test_mcr2_augment_route_compresses_augmentations():
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives import OBJECTIVES

    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 36, generator=g, dtype=torch.float64)
    layer = DenseLayer(36, 16, (6, 6), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    obj = OBJECTIVES.create("mcr2", layer, generator=g, n_aug=4, lr=1e-2)
    first = obj.train_step(x)
    for _ in range(100):
        last = obj.train_step(x)
    assert float(last["delta_R"]) > float(first["delta_R"]) + 0.5
    with pytest.raises(ValueError, match="partition='labels'"):
        obj.train_step(x, labels=torch.zeros(64, dtype=torch.long))
    with pytest.raises(ValueError, match="input_shape"):
        OBJECTIVES.create("mcr2", DenseLayer(36, 8), generator=g)  # flat input: nothing to shift


@pytest.mark.parametrize("n,p", [(5, 8), (8, 5), (6, 6)])
def test_logdet_gram_matches_autograd_slogdet(n, p):
    """The closed-form gradient equals autograd through a float64 ``slogdet`` of the
    n x n side, batched, with one rank-deficient block and per-block constants."""
    g = torch.Generator().manual_seed(n * 10 + p)
    P = torch.randn(3, n, p, generator=g, dtype=torch.float64)
    P[1] = P[1, :, :1] * torch.randn(1, p, generator=g, dtype=torch.float64)  # rank 1
    c = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64)  # a generic upstream gradient
    P1 = P.clone().requires_grad_()
    (logdet_gram(P1, c) * w).sum().backward()
    P2 = P.clone().requires_grad_()
    eye = torch.eye(n, dtype=torch.float64)
    ref = torch.linalg.slogdet(eye + c[:, None, None] * P2 @ P2.mT).logabsdet
    (ref * w).sum().backward()
    torch.testing.assert_close(logdet_gram(P, c), ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P1.grad, P2.grad, rtol=1e-10, atol=1e-12)
