"""Whitening: ZCA with an eigenvalue floor, and the Olshausen-Field 1/f filter.

ZCA (Bell and Sejnowski 1997): with the sample covariance ``Sigma = U diag(l) U^T`` of
``x: (n, d)``, ``W = U diag((l + eps)^{-1/2}) U^T`` and ``x_w = (x - mu) W``. The floor
``eps = floor * mean(l)`` keeps near-null directions (the removed tile means, pixel noise)
from being blown up. ZCA is the symmetric whitening closest to the identity, so it keeps
filters in pixel space; a block-diagonal covariance (independent tiles) gives a
block-diagonal ``W``, which keeps tiles independent.

1/f whitening (Olshausen and Field 1996): each image is filtered in the Fourier domain by
``R(f) = f exp(-(f / f0)^4)`` (f in cycles/picture; they used f0 = 200 for 512x512
images, i.e. f0 = 0.39 of the image size), which flattens the 1/f amplitude spectrum and
low-passes the corner frequencies.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class ZCA(nn.Module):
    """Fit on ``(n, d)`` data; ``forward`` whitens, ``inverse`` colours back."""

    def __init__(self, d: int, floor: float = 1e-2) -> None:
        super().__init__()
        if not floor > 0:
            raise ValueError(f"zca floor={floor} out of range; allowed: (0, inf) relative to the mean eigenvalue")
        self.floor = float(floor)
        self.mean: Tensor
        self.matrix: Tensor
        self.inverse_matrix: Tensor
        self.register_buffer("mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("matrix", torch.eye(d, dtype=torch.float64))
        self.register_buffer("inverse_matrix", torch.eye(d, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, x: Tensor, device: torch.device | str | None = None) -> "ZCA":
        """Mean, covariance and eigendecomposition in float64. ``device``: compute them there
        (the data goes over in blocks of ``DEVICE_ROWS`` rows: ``d^2 n`` flops for the
        covariance and ``d^3`` for ``eigh`` are minutes on a CPU at d = 12288); the buffers stay
        where they are. None: on ``x``'s device, in one piece."""
        X = x.reshape(x.shape[0], -1)
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"ZCA fitted for d={self.mean.shape[0]}, got data with d={X.shape[1]}")
        if device is None:
            X = X.double()
            mean, cov = X.mean(0), torch.cov(X.T)
        else:
            mean, cov = _mean_and_covariance(X, torch.device(device))
        self.mean.copy_(mean)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0) + self.floor * evals.clamp_min(0).mean()
        self.matrix.copy_((evecs * evals.rsqrt()) @ evecs.T)
        self.inverse_matrix.copy_((evecs * evals.sqrt()) @ evecs.T)
        return self

    def forward(self, x: Tensor, device: torch.device | str | None = None) -> Tensor:
        """``(x - mu) W`` in ``x``'s dtype; ``device``: computed there in blocks of rows, the
        result back on ``x``'s device."""
        X = x.reshape(x.shape[0], -1)
        if device is None:
            return ((X - self.mean.to(X.dtype)) @ self.matrix.to(X.dtype)).reshape(x.shape)
        dev = torch.device(device)
        mean, matrix = self.mean.to(dev, X.dtype), self.matrix.to(dev, X.dtype)
        out = torch.empty_like(X)
        for i in range(0, X.shape[0], DEVICE_ROWS):
            out[i : i + DEVICE_ROWS] = ((X[i : i + DEVICE_ROWS].to(dev) - mean) @ matrix).to(out.device)
        return out.reshape(x.shape)

    def inverse(self, x: Tensor) -> Tensor:
        X = x.reshape(x.shape[0], -1)
        return (X @ self.inverse_matrix.to(X.dtype) + self.mean.to(X.dtype)).reshape(x.shape)


DEVICE_ROWS = 8192  # rows per block sent to the device
DEVICE_MIN_DIM = 2048  # prepare() whitens on the run's accelerator from this many inputs on


def _mean_and_covariance(X: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Float64 mean ``(d,)`` and unbiased covariance ``(d, d)`` of ``X: (n, d)`` on ``device``, in
    blocks of rows (two passes: the mean, then the centred scatter); ``torch.cov``'s values to
    rounding."""
    n, d = X.shape
    if n < 2:
        raise ValueError(f"ZCA needs at least 2 samples; got {n}")
    total = torch.zeros(d, dtype=torch.float64, device=device)
    for i in range(0, n, DEVICE_ROWS):
        total += X[i : i + DEVICE_ROWS].to(device, torch.float64).sum(0)
    mean = total / n
    cov = torch.zeros(d, d, dtype=torch.float64, device=device)
    for i in range(0, n, DEVICE_ROWS):
        c = X[i : i + DEVICE_ROWS].to(device, torch.float64) - mean
        cov.addmm_(c.T, c)
    return mean, cov.div_(n - 1)


def one_over_f_filter(shape: tuple[int, int], f0: float) -> np.ndarray:
    """``R(f) = f exp(-(f/f0)^4)`` on the ``numpy.fft.fft2`` frequency grid of ``shape``
    (f in cycles/picture, using the smaller side as the picture size)."""
    H, W = shape
    fy = np.fft.fftfreq(H) * min(H, W)
    fx = np.fft.fftfreq(W) * min(H, W)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return f * np.exp(-((f / f0) ** 4))


def whiten_one_over_f(img: np.ndarray, f0_fraction: float = 0.39) -> np.ndarray:
    """Olshausen-Field whitening of one image ``(H, W)`` or ``(C, H, W)`` (each channel filtered
    after removing its own mean), ``f0 = f0_fraction * min(H, W)``, scaled to unit variance over all
    channels together (the channels' relative contrast is kept)."""
    if not 0 < f0_fraction <= 0.5:
        raise ValueError(f"f0_fraction={f0_fraction} out of range; allowed: (0, 0.5] of the image size")
    img = np.asarray(img, dtype=np.float64)
    hw = img.shape[-2:]
    R = one_over_f_filter(hw, f0_fraction * min(hw))
    mean = img.mean() if img.ndim == 2 else img.mean(axis=(-2, -1), keepdims=True)
    out = np.real(np.fft.ifft2(np.fft.fft2(img - mean) * R))
    return (out / out.std()).astype(np.float32)
