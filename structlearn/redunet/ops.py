"""ReduNet operators and one forward-constructed layer (Chan, Yu, You, Qi, Wright, Ma, JMLR 2022).

Samples are rows; ``eps2`` is eps^2 (the official code's ``eps`` argument is eps^2).

**Vector layer.** For features ``Z: (m, d)`` with unit rows and labels ``y: (m,)`` in ``0..J-1``:

    alpha   = d / (m eps2),      E   = alpha   (I + alpha   Z^T Z)^-1                (d, d)
    alpha_j = d / (m_j eps2),    C_j = alpha_j (I + alpha_j Z_j^T Z_j)^-1,  gamma_j = m_j / m
    pi_j(z) = softmax_j(-lam ||C_j z||)
    z      <- normalize(z + eta (E z - sum_j gamma_j pi_j(z) C_j z))

E and C_j are the gradients of the coding rates R = 1/2 logdet(I + alpha Z^T Z) and R_j, so one
layer is one projected gradient-ascent step on Delta R = R - sum_j gamma_j R_j, with the class
of a test sample estimated by pi.

**Shift-invariant layer** (1D ``(m, C, T)`` or 2D ``(m, C, H, W)``, N = T or H W positions).
Built on all N cyclic shifts of every sample, E and C_j are block-circulant: multi-channel
circular convolutions, block-diagonal in the Fourier basis. With ``V = fft(z, norm="ortho")``
over the spatial axes and ``V_i(f)`` the C channels of sample i at frequency f:

    Sigma_f = s sum_i V_i(f) V_i(f)^H   (C, C);   E_f = alpha (I + alpha Sigma_f)^-1,  alpha = C / (m eps2)

and the same per class. ``convention="exact"`` uses ``s = N``: then the layer equals the vector
layer applied to all ``m N`` shifted samples with the same ``(eps2, eta, lam)``, to rounding.
``convention="reference"`` uses ``s = 1``, as the published code does (it builds Sigma_f from the
orthonormal FFT without the factor N); it equals the vector layer on all shifts with
``(N eps2, N eta, N lam)``. Norms ``||C_j z||`` sum over all channels and frequencies, so by
Parseval they are the spatial norms and pi is exactly invariant to cyclic shifts.

Signals are real, so only the frequencies of the real FFT are stored (``rfftn``: the last
spatial axis keeps ``S[-1] // 2 + 1``); a stored frequency whose conjugate mirror is dropped
counts twice in norms and rates (:func:`rfft_weights`), which halves time and memory.
Every operator is built by a batched Cholesky factorisation (over frequencies and classes), in
the dtype of the input (float64 in, complex128 inside). A class with no sample has no operator:
:func:`check_labels` refuses it with the class named (the reference code leaves uninitialised
memory there and divides by m_j = 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CONVENTIONS = ("exact", "reference")


def check_labels(y: Tensor, m: int, n_classes: int) -> Tensor:
    """``y: (m,)`` integer labels in ``0..n_classes-1``, every class present at least once."""
    if y.ndim != 1 or y.shape[0] != m:
        raise ValueError(f"labels must have shape ({m},); got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    if m and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {int(y.min())}..{int(y.max())}")
    counts = torch.bincount(y, minlength=n_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"class(es) {missing} have no sample; every class 0..{n_classes - 1} needs at least one "
                         f"(a class without samples has no compression operator C_j)")
    return counts


def check_features(Z: Tensor, min_ndim: int = 2) -> None:
    if Z.ndim < min_ndim:
        raise ValueError(f"features must have at least {min_ndim} dimensions (samples first); got shape {tuple(Z.shape)}")
    if Z.shape[0] < 2:
        raise ValueError(f"need at least 2 samples; got {Z.shape[0]}")
    if not bool(torch.isfinite(Z).all()):
        raise ValueError("features contain NaN or infinity")


def normalize(Z: Tensor) -> Tensor:
    """Each sample (everything but the first axis) scaled to unit Frobenius norm."""
    n = Z.flatten(1).norm(dim=1).clamp_min(torch.finfo(Z.real.dtype).tiny)
    return Z / n.reshape(-1, *([1] * (Z.ndim - 1)))


def _inverse_scaled(G: Tensor, alpha: Tensor) -> Tensor:
    """``alpha (I + alpha G)^-1`` for Hermitian PSD ``G: (..., p, p)``, ``alpha: (...)`` (batched Cholesky)."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    a = alpha.to(G.real.dtype)[..., None, None]
    L = torch.linalg.cholesky(eye + a * G)
    return a * torch.cholesky_inverse(L)


def _logdet_scaled(G: Tensor, alpha: Tensor) -> Tensor:
    """``logdet(I + alpha G)`` (real) for Hermitian PSD ``G: (..., p, p)``."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L = torch.linalg.cholesky(eye + alpha.to(G.real.dtype)[..., None, None] * G)
    return 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)


def class_grams(F: Tensor, y: Tensor, n_classes: int) -> Tensor:
    """``sum_{i: y_i = j} F_i^T conj(F_i)`` for ``F: (..., m, p)``: ``(n_classes, ..., p, p)``."""
    out = []
    for j in range(n_classes):  # J small; one GEMM per class on its own rows
        Fj = F[..., y == j, :]
        out.append(Fj.mT @ Fj.conj())
    return torch.stack(out)


@dataclass
class Operators:
    """A layer's operators: ``E (..., p, p)``, ``Cs (J, ..., p, p)``, ``gam (J,)`` (leading
    ``...`` is the frequency axis of a shift-invariant layer, empty for a vector layer)."""

    E: Tensor
    Cs: Tensor
    gam: Tensor


def vector_operators(Z: Tensor, y: Tensor, n_classes: int, eps2: float) -> Operators:
    """E, C_j, gamma_j of the vector layer for ``Z: (m, d)``, ``y: (m,)`` (module docstring)."""
    check_features(Z)
    m, d = Z.shape
    counts = check_labels(y, m, n_classes).to(Z.dtype)
    alpha = torch.tensor(d / (m * eps2), dtype=Z.dtype, device=Z.device)
    E = _inverse_scaled(Z.T @ Z, alpha)
    Cs = _inverse_scaled(class_grams(Z, y, n_classes), d / (counts * eps2))
    return Operators(E, Cs, counts / m)


def fourier_operators(V: Tensor, y: Tensor, n_classes: int, eps2: float, scale: float) -> Operators:
    """E_f, C_{j,f}, gamma_j of the shift-invariant layer for ``V: (N, m, C)`` (Fourier
    coefficients of the normalised features, orthonormal FFT): ``E (N, C, C)``, ``Cs (J, N, C, C)``."""
    N, m, C = V.shape
    counts = check_labels(y, m, n_classes).to(V.real.dtype)
    alpha = torch.tensor(C / (m * eps2), dtype=V.real.dtype, device=V.device)
    E = _inverse_scaled(scale * (V.mT @ V.conj()), alpha.expand(N))
    Cs = _inverse_scaled(scale * class_grams(V, y, n_classes), (C / (counts * eps2))[:, None].expand(n_classes, N))
    return Operators(E, Cs, counts / m)


def memberships(norms: Tensor, lam: float) -> Tensor:
    """``pi_j = softmax_j(-lam ||C_j z||)`` from ``norms: (J, m)``; returns ``(J, m)``."""
    return torch.softmax(-lam * norms, dim=0)


def vector_step(Z: Tensor, ops: Operators, eta: float, lam: float) -> tuple[Tensor, Tensor]:
    """One vector layer on ``Z: (m, d)``: ``(normalize(Z + eta (E Z - sum_j gamma_j pi_j C_j Z)), pi (J, m))``."""
    EZ = Z @ ops.E.mT  # (m, d)
    CZ = Z.unsqueeze(0) @ ops.Cs.mT  # (J, m, d)
    pi = memberships(CZ.norm(dim=2), lam)  # (J, m)
    comp = ((ops.gam[:, None] * pi)[..., None] * CZ).sum(0)  # (m, d)
    return normalize(Z + eta * (EZ - comp)), pi


def fourier_step(V: Tensor, ops: Operators, eta: float, lam: float, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One shift-invariant layer in the Fourier domain, ``V: (N, m, C)``: the updated (not yet
    normalised) coefficients and ``pi (J, m)``; norms are over all frequencies and channels
    (``weights (N,)``: how often each stored frequency counts, 2 for a mirrored pair of the real FFT).

    Two passes over the classes (norms, then the weighted sum) keep one ``(N, m, C)`` product
    alive instead of all ``J`` of them; it costs the ``C_j V`` products twice but no
    ``J``-fold temporaries (on the CPU, fresh multi-hundred-MB buffers cost more in page
    faults than the second product costs in flops)."""
    J = ops.Cs.shape[0]
    w = None if weights is None else weights.to(V.real.dtype)[:, None]  # (N, 1)
    norms = torch.empty(J, V.shape[1], dtype=V.real.dtype, device=V.device)
    for j in range(J):
        e = torch.view_as_real(V @ ops.Cs[j].mT).square().sum((-1, -2))  # (N, m): |C_j,f v_i(f)|^2
        norms[j] = (e if w is None else e * w).sum(0).sqrt()  # ||C_j z_i|| by Parseval
    pi = memberships(norms, lam)  # (J, m)
    out = V @ ops.E.mT  # (N, m, C): row i is (E_f v_i)^T
    for j in range(J):
        coef = (-ops.gam[j] * pi[j]).to(V.dtype)[None, :, None]  # (1, m, 1)
        out.add_(coef * (V @ ops.Cs[j].mT))
    return V + eta * out, pi


def vector_rates(Z: Tensor, y: Tensor, n_classes: int, eps2: float) -> tuple[Tensor, Tensor]:
    """``(R, R^c)`` of ``Z: (m, d)`` at labels ``y``: ``R = 1/2 logdet(I + alpha Z^T Z)``,
    ``R^c = sum_j gamma_j 1/2 logdet(I + alpha_j Z_j^T Z_j)``."""
    m, d = Z.shape
    counts = check_labels(y, m, n_classes).to(Z.dtype)
    R = 0.5 * _logdet_scaled(Z.T @ Z, torch.tensor(d / (m * eps2), dtype=Z.dtype))
    Rj = 0.5 * _logdet_scaled(class_grams(Z, y, n_classes), d / (counts * eps2))
    return R, (counts / m * Rj).sum()


def fourier_rates(V: Tensor, y: Tensor, n_classes: int, eps2: float, scale: float,
                  weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(R, R^c)`` of a shift-invariant layer's features ``V: (N, m, C)``: the per-frequency
    log-determinants summed over frequencies (``weights`` as in :func:`fourier_step`; with
    ``scale = N`` these are the vector rates of all ``m N`` shifted samples)."""
    N, m, C = V.shape
    w = torch.ones(N, dtype=V.real.dtype) if weights is None else weights.to(V.real.dtype)
    counts = check_labels(y, m, n_classes).to(V.real.dtype)
    R = 0.5 * (w * _logdet_scaled(scale * (V.mT @ V.conj()), torch.tensor(C / (m * eps2), dtype=V.real.dtype).expand(N))).sum()
    Rj = 0.5 * _logdet_scaled(scale * class_grams(V, y, n_classes), (C / (counts * eps2))[:, None].expand(n_classes, N))
    return R, (counts / m * (Rj * w).sum(1)).sum()


def to_fourier(Z: Tensor) -> Tensor:
    """``(m, C, *S)`` real -> ``(N', m, C)`` orthonormal real-FFT coefficients over the spatial
    axes: ``N' = prod(S[:-1]) (S[-1] // 2 + 1)`` stored frequencies (see :func:`rfft_weights`)."""
    dims = tuple(range(2, Z.ndim))
    V = torch.fft.rfftn(Z, dim=dims, norm="ortho")  # (m, C, *S[:-1], S[-1] // 2 + 1)
    return V.flatten(2).permute(2, 0, 1)


def rfft_weights(spatial: tuple[int, ...], device: torch.device | None = None) -> Tensor:
    """``(N',)``: 1 for a stored frequency that is its own mirror (last-axis index 0, or S[-1] / 2
    for even S[-1]), 2 for one that stands for itself and its conjugate mirror."""
    n = spatial[-1]
    k = torch.arange(n // 2 + 1, device=device)
    w = torch.where((k == 0) | (2 * k == n), 1.0, 2.0)
    return w.repeat(int(torch.tensor(spatial[:-1]).prod()) if len(spatial) > 1 else 1)


def from_fourier(V: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_fourier`: ``(N', m, C)`` -> real ``(m, C, *S)`` (``shape`` = (m, C, *S))."""
    spatial = shape[2:]
    X = V.permute(1, 2, 0).reshape(*shape[:2], *spatial[:-1], spatial[-1] // 2 + 1)
    return torch.fft.irfftn(X, s=spatial, dim=tuple(range(2, len(shape))), norm="ortho")


def circulant_kernels(Ef: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """Spatial kernels of a block-circulant operator from its real-FFT blocks ``Ef: (..., N', C, C)``:
    ``e (..., C, C, *S)`` real with ``(E z)_c[p] = sum_{c', q} e_{c c'}[q] z_{c'}[p - q]`` (circular)."""
    lead = Ef.shape[:-3]
    C = Ef.shape[-1]
    blocks = Ef.movedim(-3, -1).reshape(*lead, C, C, *spatial[:-1], spatial[-1] // 2 + 1)
    dims = tuple(range(blocks.ndim - len(spatial), blocks.ndim))
    return torch.fft.irfftn(blocks, s=spatial, dim=dims)  # unnormalised inverse: ortho(e * z) = DFT(e) ortho(z)
