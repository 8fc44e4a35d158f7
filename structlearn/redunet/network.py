"""A ReduNet: layers constructed in a forward pass from the data, no back-propagation.

    net = ReduNet(n_classes=10, n_layers=5, spatial_dims=2, lift=Lift(1, 16, 3, spatial_dims=2, seed=0))
    stats = net.construct(X, y)      # builds every layer; per-layer R, R^c, Delta R at the true labels
    net.predict(X_test)              # argmax of the last layer's memberships pi
    net.save(path); ReduNet.load(path)

``spatial_dims = 0`` is the vector ReduNet on ``(m, d)`` inputs; 1 and 2 are the shift-invariant
ReduNets on ``(m, C, T)`` and ``(m, C, H, W)`` (operators per frequency, see
:mod:`structlearn.redunet.ops`). The optional lifting front end (fixed random kernels, circular
padding, ReLU; as in the reference) maps ``(m, C_in, *S)`` to ``(m, C, *S)``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from structlearn.io import atomic_write_bytes, load_checkpoint
from structlearn.params import Interval, Options, Param, check_params
from structlearn.redunet import ops
from structlearn.redunet.ops import CONVENTIONS, Operators

POSITIVE = Interval(float, 0, None, closed="neither")
TABLE = {
    "n_classes": Param(None, Interval(int, 2, None), "number of classes J"),
    "n_layers": Param(None, Interval(int, 1, None), "ReduNet layers"),
    "spatial_dims": Param(0, Options((0, 1, 2)), "0: vector ReduNet; 1 or 2: shift-invariant"),
    "eta": Param(0.5, POSITIVE, "step size of each layer"),
    "lam": Param(500.0, POSITIVE, "sharpness lambda of the memberships softmax"),
    "eps2": Param(0.1, POSITIVE, "eps^2 of the coding rates (the official code's eps)"),
    "convention": Param("exact", Options(CONVENTIONS), "exact (vector layer on all shifts) or reference (published code)"),
}


class Lift(nn.Module):
    """Fixed random lifting ``(m, C_in, *S) -> (m, C_out, *S)``: Gaussian kernels ``k^D``
    (``k`` odd), circular padding ``k // 2`` on every side, then ReLU; shift-equivariant."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, spatial_dims: int = 2,
                 seed: int = 0, relu: bool = True) -> None:
        super().__init__()
        check_params("Lift", {"in_channels": Interval(int, 1, None), "out_channels": Interval(int, 1, None),
                              "kernel_size": Interval(int, 1, None), "spatial_dims": Options((1, 2))},
                     {"in_channels": in_channels, "out_channels": out_channels, "kernel_size": kernel_size,
                      "spatial_dims": spatial_dims})
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (symmetric circular padding); allowed: 1, 3, 5, ...")
        self.spatial_dims, self.relu, self.seed = spatial_dims, relu, seed
        g = torch.Generator().manual_seed(seed)
        self.weight: Tensor
        self.register_buffer("weight", torch.randn(out_channels, in_channels, *([kernel_size] * spatial_dims),
                                                   generator=g, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[-1]
        x = nn.functional.pad(x, [k // 2] * (2 * self.spatial_dims), mode="circular")
        conv = nn.functional.conv1d if self.spatial_dims == 1 else nn.functional.conv2d
        out = conv(x, self.weight.to(x.dtype))
        return torch.relu(out) if self.relu else out


class ReduLayer(nn.Module):
    """One layer; ``fit`` builds its operators from features and labels, ``forward`` applies it.
    Vector layers work on ``(m, d)``; shift-invariant ones on ``(m, C, *S)`` (features are kept in
    space between layers and moved to the Fourier domain inside)."""

    def __init__(self, n_classes: int, spatial_dims: int, eta: float, lam: float, eps2: float, convention: str) -> None:
        super().__init__()
        self.n_classes, self.spatial_dims = n_classes, spatial_dims
        self.eta, self.lam, self.eps2, self.convention = eta, lam, eps2, convention
        self.E: Tensor
        self.Cs: Tensor
        self.gam: Tensor
        for name in ("E", "Cs", "gam"):
            self.register_buffer(name, torch.empty(0))

    @property
    def fitted(self) -> bool:
        return self.gam.numel() > 0

    def _check(self, Z: Tensor) -> None:
        want = 2 + self.spatial_dims
        if Z.ndim != want:
            shape = "(m, d)" if self.spatial_dims == 0 else "(m, C, T)" if self.spatial_dims == 1 else "(m, C, H, W)"
            raise ValueError(f"features must have shape {shape}; got {tuple(Z.shape)}")
        ops.check_features(Z)

    def _fourier(self, Z: Tensor) -> Tensor:
        return ops.to_fourier(Z)

    def _scale(self, Z: Tensor) -> float:
        return float(Z[0, 0].numel()) if self.convention == "exact" else 1.0

    def operators(self, Z: Tensor, y: Tensor) -> Operators:
        self._check(Z)
        if self.spatial_dims == 0:
            return ops.vector_operators(Z, y, self.n_classes, self.eps2)
        return ops.fourier_operators(self._fourier(Z), y, self.n_classes, self.eps2, self._scale(Z))

    def fit(self, Z: Tensor, y: Tensor) -> None:
        o = self.operators(Z, y)
        self.E, self.Cs, self.gam = o.E, o.Cs, o.gam
        self._spatial = tuple(Z.shape[2:])

    def update(self, Z: Tensor, y: Tensor, tau: float) -> None:
        """Moving average ``E <- E + tau (E_batch - E)`` (and the same for C_j, gamma_j) with
        the operators of a batch; a class absent from the batch keeps its operator."""
        if not self.fitted:
            raise ValueError("update() needs a constructed layer; call construct() first")
        present = torch.bincount(y, minlength=self.n_classes) > 0
        keep = present.nonzero().flatten()
        yk = torch.searchsorted(keep, y)  # relabel to the classes present
        sub = ReduLayer(int(keep.numel()), self.spatial_dims, self.eta, self.lam, self.eps2, self.convention) \
            if int(keep.numel()) >= 1 else None
        if sub is None:
            return
        o = sub.operators(Z, yk)
        self.E = self.E + tau * (o.E - self.E)
        Cs = self.Cs.clone()
        Cs[keep] = Cs[keep] + tau * (o.Cs - Cs[keep])
        self.Cs = Cs

    def forward(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """``(next features, pi (J, m))``."""
        if not self.fitted:
            raise ValueError("the layer is not constructed; call construct() first")
        self._check(Z)
        o = Operators(self.E, self.Cs, self.gam)
        if self.spatial_dims == 0:
            return ops.vector_step(Z, o, self.eta, self.lam)
        V, pi = ops.fourier_step(self._fourier(Z), o, self.eta, self.lam, ops.rfft_weights(tuple(Z.shape[2:])))
        return ops.normalize(ops.from_fourier(V, tuple(Z.shape))), pi

    def rates(self, Z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(R, R^c)`` of features ``Z`` at labels ``y`` with this layer's eps2 and convention."""
        self._check(Z)
        if self.spatial_dims == 0:
            return ops.vector_rates(Z, y, self.n_classes, self.eps2)
        return ops.fourier_rates(self._fourier(Z), y, self.n_classes, self.eps2, self._scale(Z),
                                 ops.rfft_weights(tuple(Z.shape[2:])))

    def kernels(self) -> tuple[Tensor, Tensor]:
        """Spatial convolution kernels of E and the C_j: ``(C, C, *S)`` and ``(J, C, C, *S)``."""
        if self.spatial_dims == 0 or not self.fitted:
            raise ValueError("kernels exist for a constructed shift-invariant layer only")
        spatial = self._spatial
        return ops.circulant_kernels(self.E, spatial), ops.circulant_kernels(self.Cs, spatial)

    _spatial: tuple[int, ...] = ()


class ReduNet(nn.Module):
    """A forward-constructed ReduNet (module docstring)."""

    def __init__(self, n_classes: int, n_layers: int, *, spatial_dims: int = 0, eta: float = 0.5, lam: float = 500.0,
                 eps2: float = 0.1, convention: str = "exact", lift: Lift | None = None) -> None:
        super().__init__()
        self.config = check_params("ReduNet", TABLE, {
            "n_classes": n_classes, "n_layers": n_layers, "spatial_dims": spatial_dims, "eta": eta, "lam": lam,
            "eps2": eps2, "convention": convention})
        if lift is not None and lift.spatial_dims != spatial_dims:
            raise ValueError(f"lift.spatial_dims={lift.spatial_dims} != spatial_dims={spatial_dims}")
        c = self.config
        self.lift = lift
        self.layers = nn.ModuleList(ReduLayer(c["n_classes"], c["spatial_dims"], c["eta"], c["lam"], c["eps2"],
                                              c["convention"]) for _ in range(c["n_layers"]))

    @property
    def redu_layers(self) -> list[ReduLayer]:
        return [m for m in self.layers if isinstance(m, ReduLayer)]

    def features0(self, X: Tensor) -> Tensor:
        """The first layer's input: lifted (when there is a lift) and normalised per sample."""
        if not bool(torch.isfinite(X).all()):
            raise ValueError("inputs contain NaN or infinity")
        Z = self.lift(X) if self.lift is not None else X
        if self.config["spatial_dims"] == 0:
            Z = Z.flatten(1)
        return ops.normalize(Z)

    @torch.no_grad()
    def construct(self, X: Tensor, y: Tensor) -> list[dict[str, float]]:
        """Build every layer from ``X`` and the true labels ``y``. Returns, for the input
        features (layer 0) and after each layer, ``R``, ``R^c`` and ``Delta R`` at the true labels."""
        Z = self.features0(X)
        stats = [self._stats(0, Z, y)]
        for li, layer in enumerate(self.redu_layers, start=1):
            layer.fit(Z, y)
            Z, _ = layer(Z)
            stats.append(self._stats(li, Z, y))
        return stats

    def _stats(self, li: int, Z: Tensor, y: Tensor) -> dict[str, float]:
        R, Rc = self.redu_layers[0].rates(Z, y)
        return {"layer": li, "R": float(R), "Rc": float(Rc), "delta_R": float(R - Rc)}

    @torch.no_grad()
    def forward(self, X: Tensor, return_all: bool = False) -> Any:
        """Features after the last layer (``return_all``: the list of features and memberships
        ``pi (m, J)`` of every layer)."""
        Z = self.features0(X)
        out = []
        for layer in self.redu_layers:
            Z, pi = layer(Z)
            out.append((Z, pi.T))
        return out if return_all else Z

    def memberships(self, X: Tensor) -> Tensor:
        """The last layer's ``pi``: ``(m, J)``, rows summing to 1."""
        return self.forward(X, return_all=True)[-1][1]

    def predict(self, X: Tensor) -> Tensor:
        """``argmax_j pi_j`` of the last layer: ``(m,)``."""
        return self.memberships(X).argmax(1)

    @torch.no_grad()
    def update(self, X: Tensor, y: Tensor, tau: float = 0.1) -> None:
        """Moving-average update of every layer with a batch (as the reference's ``update``)."""
        Z = self.features0(X)
        for layer in self.redu_layers:
            layer.update(Z, y, tau)
            Z, _ = layer(Z)

    def save(self, path: str | Path) -> None:
        buf = io.BytesIO()
        lift = None if self.lift is None else {"weight": self.lift.weight, "spatial_dims": self.lift.spatial_dims,
                                                "seed": self.lift.seed, "relu": self.lift.relu}
        torch.save({"format": "structlearn.redunet", "version": 1, "config": self.config, "lift": lift,
                    "layers": [{"E": la.E, "Cs": la.Cs, "gam": la.gam, "spatial": list(la._spatial)}
                               for la in self.redu_layers]}, buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "ReduNet":
        st = load_checkpoint(path)
        if not isinstance(st, dict) or st.get("format") != "structlearn.redunet":
            raise ValueError(f"{str(path)!r} is not a saved ReduNet")
        lift = None
        if st["lift"] is not None:
            w = st["lift"]["weight"]
            lift = Lift(w.shape[1], w.shape[0], w.shape[-1], spatial_dims=st["lift"]["spatial_dims"],
                        seed=st["lift"]["seed"], relu=st["lift"]["relu"])
            lift.weight = w
        net = cls(**st["config"], lift=lift)
        for layer, saved in zip(net.redu_layers, st["layers"]):
            layer.E, layer.Cs, layer.gam = saved["E"], saved["Cs"], saved["gam"]
            layer._spatial = tuple(saved["spatial"])
        return net
