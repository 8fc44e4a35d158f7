"""ICA: the Amari index, the natural-gradient InfoMax update and the RICA loss against their
closed forms, and recovery of planted sources (InfoMax beside scikit-learn's FastICA)."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import FastICA

from structlearn.data.whiten import ZCA
from structlearn.functional.ica import (
    amari_index,
    extended_signs,
    infomax_log_density,
    infomax_negative_log_likelihood,
    infomax_newton,
    infomax_score,
    infomax_score_derivative,
    log_cosh,
    natural_gradient_direction,
    newton_direction,
    rica_terms,
    symmetric_orthogonalize,
)
from structlearn.models.dense import DenseLayer
from structlearn.objectives import OBJECTIVES


def laplace(n, k, g):
    u = torch.rand(n, k, generator=g, dtype=torch.float64) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / 2**0.5  # unit variance


def uniform(n, k, g):
    return (torch.rand(n, k, generator=g, dtype=torch.float64) - 0.5) * 12**0.5  # unit variance


def mixtures(sources, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = sources(g)
    A = torch.randn(S.shape[1], S.shape[1], generator=g, dtype=torch.float64)
    return S @ A.T, A, g


def train_infomax(X, score, lr, epochs, g, bs=250):
    k = X.shape[1]
    zca = ZCA(k, floor=1e-9).fit(X)
    Xw = zca(X)
    layer = DenseLayer(k, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    obj = OBJECTIVES.create("infomax", layer, generator=g, lr=lr, score=score)
    for _ in range(epochs):
        perm = torch.randperm(X.shape[0], generator=g)
        for i in range(0, X.shape[0], bs):
            obj.train_step(Xw[perm[i:i + bs]])
    return layer.effective_weight().detach() @ zca.matrix.T, obj  # total unmixing: whitening then W


def test_amari_index_closed_forms():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    scale = torch.tensor([2.0, -1, 3, 0.5, -4], dtype=torch.float64)
    P = torch.eye(5, dtype=torch.float64)[torch.randperm(5, generator=g)] * scale
    assert float(amari_index(P @ torch.linalg.inv(A), A)) < 1e-12  # scaled permutation: 0
    assert abs(float(amari_index(torch.ones(4, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))) - 1.0) < 1e-12
    # one known off-diagonal entry: rows add 0.5 and columns add 0.5, over 2 n (n - 1) = 12
    P = torch.eye(3, dtype=torch.float64)
    P[0, 1] = 0.5
    assert abs(float(amari_index(P, torch.eye(3, dtype=torch.float64))) - 1.0 / 12) < 1e-12
    with pytest.raises(ValueError, match="square"):
        amari_index(torch.ones(2, 3), torch.ones(3, 3))


def test_scores_are_minus_log_density_derivatives():
    u = torch.linspace(-4, 4, 41, dtype=torch.float64).reshape(-1, 1).repeat(1, 2).requires_grad_()
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for score, s in (("logistic", None), ("tanh", None), ("extended", signs)):
        (grad,) = torch.autograd.grad(infomax_log_density(u, score, s).sum(), u)
        torch.testing.assert_close(infomax_score(u, score, s), -grad)
    x = torch.tensor([-800.0, -1.0, 0.0, 2.0, 800.0], dtype=torch.float64)
    torch.testing.assert_close(log_cosh(x[1:4]), torch.log(torch.cosh(x[1:4])))
    assert bool(torch.isfinite(log_cosh(x)).all())


def test_natural_gradient_is_the_relative_gradient_of_the_likelihood():
    """(I - E[phi u^T]) W == -(dL/dW) W^T W for L the negative log-likelihood (Amari 1996)."""
    g = torch.Generator().manual_seed(3)
    x = laplace(200, 4, g)
    W = torch.randn(4, 4, generator=g, dtype=torch.float64).requires_grad_()
    for score in ("logistic", "tanh"):
        (grad,) = torch.autograd.grad(infomax_negative_log_likelihood(x, W, score), W)
        u = x @ W.detach().T
        nat = natural_gradient_direction(u, infomax_score(u, score)) @ W.detach()
        torch.testing.assert_close(nat, -grad @ W.detach().T @ W.detach())


def test_extended_signs_tell_sub_from_super_gaussian():
    g = torch.Generator().manual_seed(4)
    u = torch.cat([laplace(5000, 3, g), uniform(5000, 2, g)], 1)
    assert extended_signs(u).tolist() == [1.0, 1.0, 1.0, -1.0, -1.0]


def test_infomax_and_fastica_recover_laplacian_sources():
    X, A, g = mixtures(lambda g: laplace(20000, 6, g))
    W, _ = train_infomax(X, "logistic", lr=0.05, epochs=10, g=g)
    ai_infomax = float(amari_index(W, A))
    ica = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X.numpy())
    ai_fastica = float(amari_index(torch.from_numpy(ica.components_), A))
    assert ai_infomax <= 0.05 and ai_fastica <= 0.05, (ai_infomax, ai_fastica)
    assert ai_infomax <= ai_fastica + 0.02  # as good as FastICA on the same data


def test_extended_infomax_recovers_sub_gaussian_sources():
    X, A, g = mixtures(lambda g: torch.cat([uniform(20000, 3, g), laplace(20000, 3, g)], 1), seed=1)
    W, obj = train_infomax(X, "extended", lr=0.1, epochs=10, g=g)
    assert float(amari_index(W, A)) <= 0.05
    assert int((obj.signs < 0).sum()) == 3  # the three uniform sources were switched to sub-Gaussian
    # the logistic score assumes super-Gaussian sources and cannot separate uniform ones
    X, A, g = mixtures(lambda g: uniform(20000, 4, g), seed=2)
    W, _ = train_infomax(X, "logistic", lr=0.05, epochs=5, g=g)
    assert float(amari_index(W, A)) > 0.2


def test_rica_terms_match_formula_and_recover_sources():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    W = torch.randn(9, 6, generator=g, dtype=torch.float64)  # overcomplete
    t = rica_terms(x, W, 0.3)
    xn, Wn = x.numpy(), W.numpy()
    sparsity = np.log(np.cosh(xn @ Wn.T)).sum(1).mean()
    recon = (((xn @ Wn.T) @ Wn - xn) ** 2).sum(1).mean()
    np.testing.assert_allclose(t["loss"].numpy(), 0.3 * sparsity + recon, rtol=1e-12)
    # complete RICA on whitened Laplacian mixtures is ICA (Le et al. 2011): L-BFGS, full batch
    X, A, g = mixtures(lambda g: laplace(20000, 6, g), seed=6)
    zca = ZCA(6, floor=1e-9).fit(X)
    layer = DenseLayer(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    obj = OBJECTIVES.create("rica", layer, generator=g, lam=0.2, lr=1.0, optimizer="lbfgs")
    Xw = zca(X)
    for _ in range(5):
        m = obj.train_step(Xw)
    assert float(amari_index(layer.effective_weight().detach() @ zca.matrix.T, A)) <= 0.05
    assert float(m["recon_rel_error"]) < 0.01


def test_rica_overcomplete_reconstructs():
    g = torch.Generator().manual_seed(7)
    X = laplace(4000, 8, g) @ torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))[0]
    layer = DenseLayer(8, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    obj = OBJECTIVES.create("rica", layer, generator=g, lam=0.05, lr=1e-2)
    first = obj.train_step(X[:500])
    for i in range(300):
        m = obj.train_step(X[(i % 8) * 500:(i % 8 + 1) * 500])
    assert float(m["loss"]) < 0.5 * float(first["loss"])
    assert float(m["recon_rel_error"]) < 0.05


def test_infomax_refuses_overcomplete():
    with pytest.raises(ValueError, match="rica"):
        OBJECTIVES.create("infomax", DenseLayer(4, 8), generator=torch.Generator())


def test_symmetric_orthogonalize_is_the_polar_factor_and_infomax_starts_there():
    g = torch.Generator().manual_seed(8)
    for k, d in ((5, 5), (3, 7)):
        W = torch.randn(k, d, generator=g, dtype=torch.float64)
        Q = symmetric_orthogonalize(W)
        torch.testing.assert_close(Q @ Q.T, torch.eye(k, dtype=torch.float64))
        U, _, Vh = torch.linalg.svd(W, full_matrices=False)
        torch.testing.assert_close(Q, U @ Vh)  # the orthonormal matrix nearest to W
    with pytest.raises(ValueError, match="row rank"):
        symmetric_orthogonalize(torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="k <= d"):
        symmetric_orthogonalize(torch.ones(4, 3))
    # a float32 576 x 576 Gaussian start (condition number ~ 10^3) becomes orthonormal too
    layer = DenseLayer(576, 576, generator=torch.Generator().manual_seed(0))
    OBJECTIVES.create("infomax", layer, generator=g)
    W = layer.weight.detach().double()
    assert float((W @ W.T - torch.eye(576, dtype=torch.float64)).abs().max()) < 1e-5


def _relative_loss(x, W, score, signs=None):
    """E -> L((I + E) W), the loss as a function of the relative update E (k x k)."""
    k = W.shape[0]
    return lambda E: infomax_negative_log_likelihood(x, (torch.eye(k, dtype=W.dtype) + E) @ W, score, signs)


def test_score_derivatives_match_autograd():
    u = torch.linspace(-5, 5, 51, dtype=torch.float64).reshape(-1, 1).repeat(1, 2).requires_grad_()
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for score, s in (("logistic", None), ("tanh", None), ("extended", signs)):
        (d,) = torch.autograd.grad(infomax_score(u, score, s).sum(), u)
        torch.testing.assert_close(infomax_score_derivative(u.detach(), score, s), d)


def test_newton_direction_solves_the_approximate_hessian_system():
    """D equals -H~^{-1} G with H~ (Ablin et al. 2018, H~2) assembled entry by entry as a
    k^2 x k^2 matrix, when no eigenvalue needs the lam_min shift."""
    g = torch.Generator().manual_seed(11)
    k = 4
    mix = torch.eye(k, dtype=torch.float64) + 0.1 * torch.randn(k, k, generator=g, dtype=torch.float64)
    u = 3.0 * laplace(3000, k, g) @ mix  # near the likelihood's scale, where H~ is positive definite
    phi = infomax_score(u, "tanh")
    dphi = infomax_score_derivative(u, "tanh", phi=phi)
    G = phi.T @ u / u.shape[0] - torch.eye(k, dtype=torch.float64)
    H = torch.zeros(k * k, k * k, dtype=torch.float64)
    idx = lambda i, j: i * k + j  # noqa: E731
    for i in range(k):
        for j in range(k):
            if i == j:
                H[idx(i, i), idx(i, i)] = (dphi[:, i] * u[:, i] ** 2).mean() + 1
            else:
                H[idx(i, j), idx(i, j)] = dphi[:, i].mean() * (u[:, j] ** 2).mean()
                H[idx(i, j), idx(j, i)] = 1.0
    assert float(torch.linalg.eigvalsh(H).min()) > 1e-2  # no regularisation in play
    D_ref = -torch.linalg.solve(H, G.reshape(-1)).reshape(k, k)
    torch.testing.assert_close(newton_direction(u, phi, dphi), D_ref, rtol=1e-10, atol=1e-12)


def test_newton_direction_is_the_true_newton_step_for_independent_outputs():
    """At independent outputs H~2 is the exact Hessian of E -> L((I + E) W) in the limit of
    many samples: the step from autograd's Hessian and ours agree to sampling error."""
    g = torch.Generator().manual_seed(12)
    k = 3
    x = laplace(200_000, k, g) * torch.tensor([1.0, 1.5, 0.7], dtype=torch.float64)
    W = torch.diag(torch.tensor([2.5, 3.0, 2.2], dtype=torch.float64))  # separating, not at the optimum
    f = _relative_loss(x, W, "tanh")
    E0 = torch.zeros(k, k, dtype=torch.float64)
    grad = torch.autograd.functional.jacobian(f, E0).reshape(-1)
    hess = torch.autograd.functional.hessian(f, E0).reshape(k * k, k * k)
    assert float(torch.linalg.eigvalsh(hess).min()) > 0.05  # a convex neighbourhood: no regularisation
    D_true = -torch.linalg.solve(hess, grad).reshape(k, k)
    u = x @ W.T
    phi = infomax_score(u, "tanh")
    D = newton_direction(u, phi, infomax_score_derivative(u, "tanh", phi=phi))
    assert float((D - D_true).norm() / D_true.norm()) < 0.02


def test_newton_direction_regularises_indefinite_blocks():
    """Sub-Gaussian outputs under the tanh score make 2x2 blocks indefinite; the shifted
    blocks still give a descent direction: <G, D> < 0."""
    g = torch.Generator().manual_seed(13)
    u = uniform(5000, 4, g)
    phi = infomax_score(u, "tanh")
    D = newton_direction(u, phi, infomax_score_derivative(u, "tanh", phi=phi), lam_min=0.1)
    G = phi.T @ u / u.shape[0] - torch.eye(4, dtype=torch.float64)
    assert bool(torch.isfinite(D).all()) and float((G * D).sum()) < 0
    with pytest.raises(ValueError, match="lam_min"):
        newton_direction(u, phi, phi, lam_min=0.0)


def test_infomax_newton_matches_fastica_in_few_iterations_with_monotone_loss():
    X, A, g = mixtures(lambda g: laplace(20000, 6, g), seed=7)
    zca = ZCA(6, floor=1e-9).fit(X)
    losses = []
    W, info = infomax_newton(zca(X), torch.eye(6, dtype=torch.float64), "tanh", max_iter=100, tol=1e-9,
                             callback=lambda it, W: losses.append(
                                 float(infomax_negative_log_likelihood(zca(X), W, "tanh"))) and False)
    assert info["converged"] and info["n_iter"] <= 25, info
    assert all(b < a for a, b in zip(losses, losses[1:]))
    ica = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X.numpy())
    ai_fastica = float(amari_index(torch.from_numpy(ica.components_), A))
    assert float(amari_index(W @ zca.matrix.T, A)) <= ai_fastica + 0.005


def test_infomax_objective_newton_method_full_batch():
    X, A, g = mixtures(lambda g: torch.cat([uniform(20000, 2, g), laplace(20000, 3, g)], 1), seed=8)
    zca = ZCA(5, floor=1e-9).fit(X)
    Xw = zca(X)
    layer = DenseLayer(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    obj = OBJECTIVES.create("infomax", layer, generator=g, score="extended", method="newton")
    losses = [float(obj.train_step(Xw)["loss"]) for _ in range(30)]
    assert float(amari_index(layer.effective_weight().detach() @ zca.matrix.T, A)) <= 0.03
    assert losses[-1] < losses[0]
    for bad in ({"method": "lbfgs"}, {"max_halvings": -1}, {"max_halvings": 2.5}):
        with pytest.raises(ValueError, match="allowed"):
            OBJECTIVES.create("infomax", DenseLayer(5, 5), generator=g, **bad)
