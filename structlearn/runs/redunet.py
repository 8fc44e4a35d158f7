"""The ReduNet workflow (``structlearn redunet [CONFIG]``): construct a ReduNet on data that ships,
measure it, and write a run folder.

Data: ``digits`` (scikit-learn's bundled 8x8 digits, 10 classes; needs the ``redunet`` extra)
or ``gaussians`` (``n_classes`` Gaussian classes on the unit sphere in ``dim`` dimensions, the
paper's first figure). The run folder holds ``config.yaml``, ``redunet.pt``
(:meth:`ReduNet.save`), ``redunet.json`` (R, R^c, Delta R per layer at the true labels; train and
test accuracy, for images also the mean and spread over all cyclic translations of the test
set; for shift-invariant layers each layer's kernel energy outside a centred ``k x k`` window),
and for shift-invariant image networks ``architecture.json`` + ``architecture_kernels.pt``: the
lift as a circular ``conv2d`` stage, then one ``redu`` stage per layer, which
:func:`structlearn.export.build_module` turns into one ``nn.Module`` with the same features.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import Tensor

from structlearn.config import apply_overrides, from_dict, merge_config, read_yaml_mapping, to_dict
from structlearn.export.spec import make_spec
from structlearn.io import atomic_torch_save, atomic_write_json, atomic_write_text
from structlearn.params import Interval, Options, check_params
from structlearn.redunet import Lift, ReduNet
from structlearn.redunet.conv import energy_outside
from structlearn.runs.run import new_run_dir


@dataclass(frozen=True)
class RedunetConfig:
    name: str = "redunet_digits"  # run folder name
    seed: int = 0  # data split, lifting kernels and Gaussian draws
    data: str = "digits"  # "digits" (sklearn's bundled 8x8 digits) | "gaussians" (classes on the unit sphere)
    n_train: int = 1000  # training samples (digits: the rest is the test set)
    n_test: int = 300  # gaussians: test samples (digits: all the others)
    n_classes: int = 3  # gaussians: classes
    dim: int = 3  # gaussians: dimension (2: the circle, 3: the sphere)
    noise: float = 0.3  # gaussians: std of each class around its direction, before projection to the sphere
    spatial_dims: int = 2  # 0: vector ReduNet; 2: translation-invariant (images)
    layers: int = 10  # ReduNet layers
    eta: float = 0.5  # step size
    lam: float = 500.0  # sharpness of the memberships softmax
    eps2: float = 0.1  # eps^2 of the coding rates
    convention: str = "exact"  # "exact" (vector layer on all shifts) | "reference" (published code's scale)
    lift_channels: int = 32  # spatial_dims 2: channels of the random lifting
    lift_kernel: int = 5  # spatial_dims 2: lifting kernel size (odd)
    window: int = 3  # read-out: kernel energy outside a centred window x window
    threads: int = 0  # torch CPU threads (0: torch's default); set by the command

    def validate(self) -> None:
        check_params("redunet config", {
            "data": Options(("digits", "gaussians")), "n_train": Interval(int, 2, None), "n_test": Interval(int, 1, None),
            "n_classes": Interval(int, 2, None), "dim": Interval(int, 2, None), "noise": Interval(float, 0, None),
            "spatial_dims": Options((0, 2)), "layers": Interval(int, 1, None), "lift_channels": Interval(int, 1, None),
            "lift_kernel": Interval(int, 1, None), "window": Interval(int, 1, None), "threads": Interval(int, 0, None)},
            {k: getattr(self, k) for k in ("data", "n_train", "n_test", "n_classes", "dim", "noise", "spatial_dims",
                                           "layers", "lift_channels", "lift_kernel", "window", "threads")})
        if self.data == "gaussians" and self.spatial_dims != 0:
            raise ValueError("data=gaussians is a vector problem; allowed: spatial_dims 0")
        ReduNet(2, self.layers, spatial_dims=self.spatial_dims, eta=self.eta, lam=self.lam, eps2=self.eps2,
                convention=self.convention)  # checks eta, lam, eps2, convention


def load_redunet_config(path: str | Path | None, overrides: list[str]) -> RedunetConfig:
    base = to_dict(RedunetConfig())
    if path is not None:
        base = merge_config(base, read_yaml_mapping(path))
    cfg = from_dict(RedunetConfig, apply_overrides(base, overrides))
    cfg.validate()
    return cfg


def sphere_gaussians(means: Tensor, m: int, noise: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``m`` samples per class around the unit directions ``means (J, dim)``, projected to the sphere."""
    J, dim = means.shape
    X = means.repeat_interleave(m, 0) + noise * torch.randn(J * m, dim, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(X, dim=1), torch.arange(J).repeat_interleave(m)


def load_data(cfg: RedunetConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """``(X_train, y_train, X_test, y_test, n_classes)``; digits as ``(m, 1, 8, 8)`` in [0, 1]."""
    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.data == "gaussians":
        means = torch.nn.functional.normalize(torch.randn(cfg.n_classes, cfg.dim, generator=g, dtype=torch.float64), dim=1)
        Xtr, ytr = sphere_gaussians(means, cfg.n_train // cfg.n_classes, cfg.noise, g)
        Xte, yte = sphere_gaussians(means, cfg.n_test // cfg.n_classes, cfg.noise, g)
        return Xtr, ytr, Xte, yte, cfg.n_classes
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ValueError("data=digits needs scikit-learn: pip install structlearn[redunet]") from e
    d = load_digits()
    X = torch.tensor(d.images, dtype=torch.float64)[:, None] / 16.0
    y = torch.tensor(d.target)
    if not 2 <= cfg.n_train < len(y):
        raise ValueError(f"n_train={cfg.n_train} out of range; allowed: [2, {len(y) - 1}] for the {len(y)} digits")
    perm = torch.randperm(len(y), generator=g)
    return X[perm[:cfg.n_train]], y[perm[:cfg.n_train]], X[perm[cfg.n_train:]], y[perm[cfg.n_train:]], 10


def accuracy_over_shifts(net: ReduNet, X: Tensor, y: Tensor) -> Tensor:
    """Accuracy on every cyclic translation of ``X (m, C, H, W)``: ``(H, W)``."""
    H, W = X.shape[-2:]
    acc = torch.zeros(H, W, dtype=torch.float64)
    for a in range(H):
        for b in range(W):
            acc[a, b] = (net.predict(torch.roll(X, (a, b), dims=(2, 3))) == y).double().mean()
    return acc


def build(cfg: RedunetConfig, n_classes: int) -> ReduNet:
    lift = Lift(1, cfg.lift_channels, cfg.lift_kernel, spatial_dims=2, seed=cfg.seed) if cfg.spatial_dims == 2 else None
    return ReduNet(n_classes, cfg.layers, spatial_dims=cfg.spatial_dims, eta=cfg.eta, lam=cfg.lam, eps2=cfg.eps2,
                   convention=cfg.convention, lift=lift)


def architecture(net: ReduNet, input_shape: tuple[int, int]) -> tuple[dict[str, Any], list[Tensor]]:
    """The spec of a lifted 2D network: circular conv2d (the lift), ReLU, one redu stage per layer."""
    assert net.lift is not None
    w = net.lift.weight  # (C, 1, k, k)
    k = int(w.shape[-1])
    stages: list[dict[str, Any]] = [
        {"type": "conv2d", "out_channels": int(w.shape[0]), "kernel_size": [k, k], "stride": [1, 1],
         "padding": [k // 2, k // 2], "padding_mode": "circular", "evidence": {"fixed_random_lift": True}},
        {"type": "activation", "fn": "relu"}]
    kernels = [w[:, 0]]
    for li, layer in enumerate(net.redu_layers):
        eE, eC = layer.kernels()
        ker = torch.cat([eE.unsqueeze(0), eC])  # (1 + J, C, C, H, W)
        stages.append({"type": "redu", "channels": int(ker.shape[1]), "classes": int(ker.shape[0] - 1),
                       "kernel_size": [int(n) + 1 - int(n) % 2 for n in ker.shape[-2:]], "eta": layer.eta,
                       "lam": layer.lam, "gamma": layer.gam.tolist(),
                       "evidence": {"layer": li + 1, "energy_outside_3x3": energy_outside(ker, 3, 2),
                                    "support": [int(n) for n in ker.shape[-2:]]}})
        kernels.append(ker)
    return make_spec(input_shape, stages, {"kind": "redunet", "convention": net.config["convention"]}), kernels


def run_redunet(cfg: RedunetConfig, out: str | Path = "runs", log: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """Construct, measure and write the run folder; returns ``(run_dir, redunet.json)``."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    Xtr, ytr, Xte, yte, J = load_data(cfg)
    net = build(cfg, J)
    stats = net.construct(Xtr, ytr)
    log("Delta R per layer: " + ", ".join(f"{s['delta_R']:.3f}" for s in stats))
    result: dict[str, Any] = {"config": dataclasses.asdict(cfg), "layers": stats, "n_train": int(len(ytr)),
                              "n_test": int(len(yte)),
                              "train_accuracy": float((net.predict(Xtr) == ytr).double().mean()),
                              "test_accuracy": float((net.predict(Xte) == yte).double().mean())}
    if cfg.data == "digits":
        acc = accuracy_over_shifts(net, Xte, yte)
        result.update(test_accuracy_mean_over_shifts=float(acc.mean()), test_accuracy_min_over_shifts=float(acc.min()),
                      test_accuracy_max_over_shifts=float(acc.max()))
    if cfg.spatial_dims:
        result["kernel_energy_outside_window"] = [
            {"layer": li + 1, "E": energy_outside(layer.kernels()[0], cfg.window, cfg.spatial_dims),
             "C": energy_outside(layer.kernels()[1], cfg.window, cfg.spatial_dims)}
            for li, layer in enumerate(net.redu_layers)]
    run_dir = new_run_dir(out, cfg.name)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    net.save(run_dir / "redunet.pt")
    if cfg.spatial_dims == 2:
        spec, kernels = architecture(net, (int(Xtr.shape[-2]), int(Xtr.shape[-1])))
        atomic_write_json(run_dir / "architecture.json", spec)
        atomic_torch_save(run_dir / "architecture_kernels.pt", {"kernels": kernels})
    atomic_write_json(run_dir / "redunet.json", result)
    return run_dir, result
