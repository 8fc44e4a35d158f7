"""A constructed shift-invariant ReduNet layer as circular convolutions.

The layer's operators E and C_j are block-circulant, so in space they are multi-channel
circular convolutions ``(E z)_c[p] = sum_{c', q} e_{c c'}[q] z_{c'}[p - q]`` with kernels
``e_{c c'}`` of the signal's full period (:meth:`ReduLayer.kernels`). :class:`ReduConv` holds them
as the weight of one ``Conv1d``/``Conv2d``-shaped cross-correlation with circular padding
(``(1 + J) C`` output channels: E's, then each C_j's) and applies the layer's update

    z <- normalize(z + eta (E z - sum_j gamma_j pi_j(z) C_j z)),  pi_j = softmax_j(-lam ||C_j z||)

so one ``nn.Module`` reproduces the constructed layer's features without an FFT. For a period
``N`` the kernel has ``K = N`` taps (``N`` odd) or ``N + 1`` taps with one zero (``N`` even,
padding ``K // 2`` per side); :func:`energy_outside` measures how much of the kernels' energy
lies outside a centred ``k x k`` window (how local the learned convolution is).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def lag_weights(e: Tensor, spatial_dims: int) -> Tensor:
    """Circular-convolution kernels ``e (..., *S)`` (lag ``q`` at index ``q``) as cross-correlation
    weights ``w (..., *K)`` for circular padding ``K // 2``: ``w[i] = e[(K // 2 - i) mod N]``, with the
    duplicated lag of an even ``N`` set to 0."""
    w = e
    for ax in range(-spatial_dims, 0):
        N = e.shape[ax]
        K = N if N % 2 else N + 1
        idx = (K // 2 - torch.arange(K)) % N
        w = w.index_select(ax if ax >= 0 else w.ndim + ax, idx.to(w.device))
        if K == N + 1:  # taps 0 and N both hold lag N/2: keep one
            w = w.clone()
            w.select(w.ndim + ax, K - 1).zero_()
    return w


def energy_outside(e: Tensor, k: int, spatial_dims: int) -> float:
    """Share of ``sum e^2`` at lags outside the centred window ``|lag| <= k // 2`` on every spatial axis."""
    inside = torch.ones(e.shape[-spatial_dims:], dtype=torch.bool, device=e.device)
    for i, N in enumerate(e.shape[-spatial_dims:]):
        lag = torch.arange(N, device=e.device)
        near = torch.minimum(lag, N - lag) <= k // 2  # (N,)
        shape = [1] * spatial_dims
        shape[i] = N
        inside = inside & near.reshape(shape)
    total = float(e.square().sum())
    return 0.0 if total == 0 else float(e.square()[..., ~inside].sum()) / total


class ReduConv(nn.Module):
    """A constructed shift-invariant layer as circular convolutions (module docstring).

    Args:
        kernels: ``(1 + J, C, C, *S)`` spatial kernels of E (first) and the C_j.
        gam: ``(J,)`` class weights gamma_j.
        eta, lam: the layer's step and membership sharpness.
    """

    def __init__(self, kernels: Tensor, gam: Tensor, eta: float, lam: float) -> None:
        super().__init__()
        self.spatial_dims = kernels.ndim - 3
        if self.spatial_dims not in (1, 2):
            raise ValueError(f"kernels must be (1 + J, C, C, T) or (1 + J, C, C, H, W); got {tuple(kernels.shape)}")
        n_ops, C = kernels.shape[0], kernels.shape[1]
        self.n_classes, self.channels, self.eta, self.lam = n_ops - 1, C, float(eta), float(lam)
        self.period = tuple(kernels.shape[3:])
        self.weight: Tensor
        self.gam: Tensor
        self.register_buffer("weight", lag_weights(kernels, self.spatial_dims).flatten(0, 1))  # ((1+J) C, C, *K)
        self.register_buffer("gam", gam.real.to(self.weight.dtype))

    def forward(self, z: Tensor) -> Tensor:
        if tuple(z.shape[2:]) != self.period:
            raise ValueError(f"inputs must have the period the layer was built on, {self.period}; got {tuple(z.shape[2:])}")
        z = z / z.flatten(1).norm(dim=1).clamp_min(torch.finfo(z.dtype).tiny).reshape(-1, *([1] * (z.ndim - 1)))
        K = self.weight.shape[2:]
        pad = [p for k in reversed(K) for p in (k // 2, k // 2)]
        conv = nn.functional.conv1d if self.spatial_dims == 1 else nn.functional.conv2d
        out = conv(nn.functional.pad(z, pad, mode="circular"), self.weight.to(z.dtype))  # (m, (1+J) C, *S)
        m, C, J = z.shape[0], self.channels, self.n_classes
        Ez = out[:, :C]
        Cz = out[:, C:].reshape(m, J, C, *z.shape[2:])  # (m, J, C, *S)
        pi = torch.softmax(-self.lam * Cz.flatten(2).norm(dim=2), dim=1)  # (m, J)
        w = (self.gam.to(z.dtype) * pi).reshape(m, J, *([1] * (z.ndim - 1)))
        new = z + self.eta * (Ez - (w * Cz).sum(1))
        return new / new.flatten(1).norm(dim=1).clamp_min(torch.finfo(z.dtype).tiny).reshape(-1, *([1] * (z.ndim - 1)))


def layer_to_conv(layer) -> ReduConv:
    """:class:`ReduConv` of a constructed shift-invariant :class:`~structlearn.redunet.ReduLayer`."""
    eE, eC = layer.kernels()
    return ReduConv(torch.cat([eE.unsqueeze(0), eC]), layer.gam, layer.eta, layer.lam)
