"""ReduNet: what the math promises (issue 14).

1. The FFT layer equals the vector layer on all cyclic shifts (features, E, C_j, pi, Delta R), in
   1D and 2D, to 1e-10 in float64: with the same (eps2, eta, lam) for convention "exact", with
   (N eps2, N eta, N lam) for convention "reference".
2. E built on all shifts is circulant; built on the raw signals it is not.
3. Shifting the input shifts the features; pi is invariant; the exported convolution module
   reproduces the FFT layer (1e-6 in float32).
4. Delta R per layer does not decrease (eta 0.5, lam 500) on Gaussian classes on the sphere
   and on lifted 1D signals.
5. A float64 NumPy transcription of the published formulas agrees to 1e-12.
6. Bad input: a missing class, one sample, NaN, wrong rank, non-positive eps2.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from structlearn.redunet import Lift, ReduLayer, ReduNet, ops
from structlearn.redunet.conv import energy_outside, layer_to_conv

SHAPES = [(5,), (6,), (3, 4)]


def shifts(S):
    return list(itertools.product(*[range(n) for n in S]))


def all_shifts(X: torch.Tensor) -> torch.Tensor:
    """``(m, C, *S) -> (N m, C, *S)``, shift-major."""
    return torch.cat([torch.roll(X, sh, dims=tuple(range(2, X.ndim))) for sh in shifts(X.shape[2:])])


def problem(S, m=8, C=2, J=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, C, *S, generator=g, dtype=torch.float64)
    y = torch.arange(m) % J
    return ops.normalize(X), y, J


def spatial_matrix(e: torch.Tensor) -> torch.Tensor:
    """The ``(C N, C N)`` matrix of the circular convolution with kernels ``e (C, C, *S)``."""
    C, S = e.shape[0], e.shape[2:]
    pos = shifts(S)
    N = len(pos)
    M = torch.zeros(C * N, C * N, dtype=e.dtype)
    for a, p in enumerate(pos):
        for b, q in enumerate(pos):
            lag = tuple((pi - qi) % n for pi, qi, n in zip(p, q, S))
            M[a::N, b::N] = e[(slice(None), slice(None)) + lag]
    return M


@pytest.mark.parametrize("S", SHAPES)
@pytest.mark.parametrize("convention", ["exact", "reference"])
def test_fft_layer_is_the_vector_layer_on_all_shifts(S, convention):
    Z, y, J = problem(S)
    N = int(np.prod(S))
    f = 1 if convention == "exact" else N
    eps2, eta, lam = 0.1, 0.5, 5.0
    fft = ReduLayer(J, len(S), eta, lam, eps2, convention)
    fft.fit(Z, y)
    Zs, ys = all_shifts(Z), y.repeat(N)
    vec = ReduLayer(J, 0, f * eta, f * lam, f * eps2, "exact")
    vec.fit(Zs.flatten(1), ys)
    out, pi = fft(Z)
    vout, vpi = vec(Zs.flatten(1))
    torch.testing.assert_close(all_shifts(out).flatten(1), vout, rtol=0, atol=1e-10)
    torch.testing.assert_close(pi.repeat(1, N), vpi, rtol=0, atol=1e-10)
    eE, eC = fft.kernels()
    torch.testing.assert_close(spatial_matrix(eE) / f, vec.E, rtol=0, atol=1e-10)  # reference: N times the vector E
    for j in range(J):
        torch.testing.assert_close(spatial_matrix(eC[j]) / f, vec.Cs[j], rtol=0, atol=1e-10)
    R, Rc = fft.rates(Z, y)
    vR, vRc = vec.rates(Zs.flatten(1), ys)
    if convention == "exact":  # the reference's rates are those of its own (unscaled) Sigma_f
        assert abs(float(R - vR)) < 1e-10 and abs(float(Rc - vRc)) < 1e-10


def test_E_on_all_shifts_is_circulant_and_on_raw_signals_is_not():
    Z, y, J = problem((6,), m=10)
    shift = torch.roll(torch.eye(6, dtype=torch.float64), 1, 0)
    P = torch.block_diag(*[shift] * 2)  # shifts each of the 2 channels
    on_shifts = ReduLayer(J, 0, 0.5, 5.0, 0.1, "exact")
    on_shifts.fit(all_shifts(Z).flatten(1), y.repeat(6))
    raw = ReduLayer(J, 0, 0.5, 5.0, 0.1, "exact")
    raw.fit(Z.flatten(1), y)

    def defect(E):
        return float((P @ E @ P.T - E).norm() / E.norm())

    assert defect(on_shifts.E) < 1e-12
    assert defect(raw.E) > 1e-2


@pytest.mark.parametrize("S", SHAPES)
def test_equivariance_invariance_and_the_conv_module(S):
    Z, y, J = problem(S, m=9)
    layer = ReduLayer(J, len(S), 0.5, 50.0, 0.1, "exact")
    layer.fit(Z, y)
    out, pi = layer(Z)
    for sh in shifts(S)[1:4]:
        dims = tuple(range(2, Z.ndim))
        o2, p2 = layer(torch.roll(Z, sh, dims=dims))
        torch.testing.assert_close(o2, torch.roll(out, sh, dims=dims), rtol=0, atol=1e-12)
        torch.testing.assert_close(p2, pi, rtol=0, atol=1e-12)
    conv = layer_to_conv(layer).float()
    torch.testing.assert_close(conv(Z.float()).double(), out, rtol=0, atol=1e-6)
    eE, _ = layer.kernels()
    assert energy_outside(eE, max(S) * 2 + 1, len(S)) == 0.0 and 0 < energy_outside(eE, 1, len(S)) < 1


def sphere_classes(g, m_per=60, d=3, J=3):
    """J Gaussian classes around random directions, projected to the unit sphere."""
    means = torch.nn.functional.normalize(torch.randn(J, d, generator=g, dtype=torch.float64), dim=1)
    X = torch.cat([means[j] + 0.35 * torch.randn(m_per, d, generator=g, dtype=torch.float64) for j in range(J)])
    return ops.normalize(X), torch.arange(J).repeat_interleave(m_per)


@pytest.mark.parametrize("case", ["sphere", "lifted_1d"])
def test_delta_R_does_not_decrease(case):
    g = torch.Generator().manual_seed(3)
    if case == "sphere":
        X, y = sphere_classes(g)
        net = ReduNet(3, 10, eta=0.5, lam=500.0, eps2=0.1)
    else:  # 1D signals: class j is a noisy shifted copy of template j; lifted to 4 channels
        T, J, m_per = 12, 2, 25
        templates = torch.randn(J, 1, T, generator=g, dtype=torch.float64)
        X = torch.cat([torch.roll(templates[j], int(s), dims=-1)[None] for j in range(J)
                       for s in torch.randint(T, (m_per,), generator=g)])
        X = X + 0.3 * torch.randn(X.shape, generator=g, dtype=torch.float64)
        y = torch.arange(J).repeat_interleave(m_per)
        net = ReduNet(J, 6, spatial_dims=1, eta=0.5, lam=500.0, eps2=0.1, lift=Lift(1, 4, 3, spatial_dims=1, seed=0))
    stats = net.construct(X, y)
    dR = [s["delta_R"] for s in stats]
    assert all(b >= a - 1e-3 for a, b in zip(dR, dR[1:])), dR
    assert dR[-1] > dR[0] + 0.02  # and it really grows


def test_parity_with_a_numpy_transcription_of_the_published_formulas():
    g = torch.Generator().manual_seed(5)
    m, d, J, eps2, eta, lam = 30, 6, 3, 0.2, 0.5, 20.0
    Z = ops.normalize(torch.randn(m, d, generator=g, dtype=torch.float64))
    y = torch.arange(m) % J
    layer = ReduLayer(J, 0, eta, lam, eps2, "exact")
    layer.fit(Z, y)
    out, pi = layer(Z)
    Zn, yn = Z.numpy(), y.numpy()
    a = d / (m * eps2)
    E = a * np.linalg.inv(np.eye(d) + a * Zn.T @ Zn)
    Cs, gam = [], []
    for j in range(J):
        Zj = Zn[yn == j]
        aj = d / (len(Zj) * eps2)
        Cs.append(aj * np.linalg.inv(np.eye(d) + aj * Zj.T @ Zj))
        gam.append(len(Zj) / m)
    CZ = np.stack([Zn @ C.T for C in Cs])  # (J, m, d)
    logits = -lam * np.linalg.norm(CZ, axis=2)
    P = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    new = Zn + eta * (Zn @ E.T - np.einsum("j,jm,jmd->md", np.array(gam), P, CZ))
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    np.testing.assert_allclose(layer.E.numpy(), E, rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.Cs.numpy(), np.stack(Cs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pi.numpy(), P, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), new, rtol=0, atol=1e-12)
    R = 0.5 * np.linalg.slogdet(np.eye(d) + a * Zn.T @ Zn)[1]
    Rc = sum(gam[j] * 0.5 * np.linalg.slogdet(np.eye(d) + d / (gam[j] * m * eps2) * Zn[yn == j].T @ Zn[yn == j])[1]
             for j in range(J))
    r, rc = layer.rates(Z, y)
    assert abs(float(r) - R) < 1e-12 and abs(float(rc) - Rc) < 1e-12


def test_float64_is_honoured_end_to_end():
    Z, y, J = problem((4, 4))
    layer = ReduLayer(J, 2, 0.5, 50.0, 0.1, "exact")
    layer.fit(Z, y)
    assert layer.E.dtype == torch.complex128 and layer(Z)[0].dtype == torch.float64


@pytest.mark.parametrize("make, msg", [
    (lambda: ReduNet(3, 2).construct(torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])), r"class\(es\) \[2\] have no sample"),
    (lambda: ReduNet(2, 2).construct(torch.randn(1, 4), torch.tensor([0])), "at least 2 samples"),
    (lambda: ReduNet(2, 2).construct(torch.full((4, 4), float("nan")), torch.tensor([0, 1, 0, 1])), "NaN"),
    (lambda: ReduNet(2, 2, spatial_dims=2).construct(torch.randn(4, 5), torch.tensor([0, 1, 0, 1])), r"\(m, C, H, W\)"),
    (lambda: ReduNet(2, 2, eps2=0.0), "eps2=0.0 out of range"),
    (lambda: ReduNet(2, 2, eps2=-1.0), "eps2=-1.0 out of range"),
    (lambda: ReduNet(2, 2).construct(torch.randn(4, 3), torch.tensor([0.0, 1, 0, 1])), "integers"),
    (lambda: ReduNet(2, 2).predict(torch.randn(4, 3)), "not constructed"),
])
def test_bad_input_is_a_clear_error(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_update_keeps_the_operator_of_a_class_missing_from_the_batch_and_save_load(tmp_path):
    Z, y, J = problem((6,), m=12)
    net = ReduNet(J, 2, spatial_dims=1, lam=50.0)
    net.construct(Z, y)
    C2 = net.layers[0].Cs[2].clone()
    keep = y != 2
    net.update(Z[keep], y[keep], tau=0.5)
    assert torch.equal(net.layers[0].Cs[2], C2) and torch.isfinite(net.layers[0].Cs.real).all()
    net.save(tmp_path / "redunet.pt")
    back = ReduNet.load(tmp_path / "redunet.pt")
    torch.testing.assert_close(back.memberships(Z), net.memberships(Z), rtol=0, atol=0)


def test_the_run_folder_and_its_spec_rebuild_the_network(tmp_path):
    """`structlearn redunet` on digits (small): the saved network reloads, and the exported
    architecture (circular lift conv, ReLU, one redu stage per layer) is one nn.Module with the
    network's features (float64 1e-10, float32 1e-6) and its predictions."""
    from structlearn.export import build_module
    from structlearn.io import load_checkpoint, read_json
    from structlearn.runs.redunet import load_data, load_redunet_config, run_redunet

    cfg = load_redunet_config(None, ["layers=2", "lift_channels=4", "lift_kernel=3", "n_train=300"])
    run_dir, result = run_redunet(cfg, tmp_path, log=lambda s: None)
    assert result["test_accuracy_min_over_shifts"] == result["test_accuracy_max_over_shifts"]  # invariant
    net = ReduNet.load(run_dir / "redunet.pt")
    _, _, Xte, yte, _ = load_data(cfg)
    assert float((net.predict(Xte) == yte).double().mean()) == pytest.approx(result["test_accuracy"], abs=0)
    spec = read_json(run_dir / "architecture.json")
    kernels = load_checkpoint(run_dir / "architecture_kernels.pt")["kernels"]
    assert [s["type"] for s in spec["stages"]] == ["conv2d", "activation", "redu", "redu"]
    module = build_module(spec, kernels).double()
    X = Xte[:50]
    torch.testing.assert_close(module(X), net(X), rtol=0, atol=1e-10)
    torch.testing.assert_close(build_module(spec, kernels).float()(X.float()).double(), net(X), rtol=0, atol=1e-6)


def test_gaussians_on_the_sphere_run(tmp_path):
    from structlearn.runs.redunet import load_redunet_config, run_redunet

    cfg = load_redunet_config(None, ["data=gaussians", "spatial_dims=0", "layers=5", "n_train=150", "n_test=150"])
    with pytest.raises(ValueError, match="spatial_dims 0"):
        load_redunet_config(None, ["data=gaussians"])
    _, result = run_redunet(cfg, tmp_path, log=lambda s: None)
    dR = [s["delta_R"] for s in result["layers"]]
    assert all(b >= a - 1e-3 for a, b in zip(dR, dR[1:])) and result["test_accuracy"] > 0.6  # chance: 1/3
