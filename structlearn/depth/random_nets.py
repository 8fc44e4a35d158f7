"""Random-weight dense networks: output entropy versus linear-probe accuracy.

Yuan et al. (2021) report that among random-weight networks, the ones whose outputs have
larger entropy classify better (after Saxe et al. 2011: random architectures' accuracy
tracks their trained accuracy). This module samples many random dense networks, measures
the entropy of their outputs with the depth-gain measure (:mod:`structlearn.depth.gain`:
coding rate of the standardised, unit-norm outputs, ``d_ref`` = input dimension,
``eps^2 = 0.5``), fits a closed-form ridge probe on a labelled task, and reports the
Spearman correlation between entropy and probe accuracy with a bootstrap confidence
interval over networks.

A network (:class:`RandomNetSpec`) is ``depth`` dense layers of ``width`` units,
``h <- act(h W^T)``, with weights ``N(0, 2 / fan_in)`` on a random support of share
``density`` per unit (He et al. 2015 scaling per unit, so every unit has unit gain):

- ``"global"``: each weight is kept with probability ``density`` (at least one per unit);
- ``"local"``: in the first layer each unit's support is the full ``k x k`` window at a
  uniformly random position of the input image, ``k = round(sqrt(density H W))`` clipped to
  ``[1, min(H, W)]`` (realised density ``k^2 / (H W)``); deeper layers have no spatial
  layout and use the global rule.

Probe: ``ridge_probe`` regresses centred one-hot labels on the standardised features,
``B = (F^T F + lambda n I)^{-1} F^T Y``, for every ``lambda`` at once from one eigen-
decomposition; ``lambda`` is chosen on a held-out 20 % of the training set, the probe is
refitted on the whole training set and its accuracy (argmax) is measured on the test set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from structlearn.data.images import BUNDLED_DEFAULT
from structlearn.depth.gain import layer_entropy, standardize_live
from structlearn.params import check_choice, check_range
from structlearn.runtime import derive_seed, progress

CONNECTIVITY = ("global", "local")
NONLINEARITIES = ("relu", "abs", "tanh")


@dataclass(frozen=True)
class RandomNetSpec:
    depth: int  # dense layers
    width: int  # units per layer
    density: float  # share of non-zero weights per unit, (0, 1]
    connectivity: str  # "global" or "local" (module docstring)
    nonlinearity: str = "relu"  # "relu" | "abs" | "tanh"

    def validate(self) -> None:
        check_range("depth", self.depth, 1, None)
        check_range("width", self.width, 1, None)
        check_range("density", self.density, 0, 1, low_open=True)
        check_choice("connectivity", self.connectivity, CONNECTIVITY)
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)


def _global_mask(n_out: int, n_in: int, density: float, g: torch.Generator) -> Tensor:
    mask = torch.rand(n_out, n_in, generator=g) < density  # (n_out, n_in)
    empty = ~mask.any(1)
    if bool(empty.any()):
        cols = torch.randint(n_in, (int(empty.sum()),), generator=g)
        mask[empty.nonzero(as_tuple=True)[0], cols] = True
    return mask


def _local_mask(n_out: int, shape: tuple[int, int], density: float, g: torch.Generator) -> Tensor:
    h, w = shape
    k = int(min(max(round(math.sqrt(density * h * w)), 1), min(h, w)))
    y0 = torch.randint(h - k + 1, (n_out,), generator=g)  # (n_out,)
    x0 = torch.randint(w - k + 1, (n_out,), generator=g)
    ys, xs = torch.arange(h), torch.arange(w)
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < y0[:, None] + k)  # (n_out, h)
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < x0[:, None] + k)  # (n_out, w)
    return (in_y[:, :, None] & in_x[:, None, :]).reshape(n_out, h * w)


def random_network(spec: RandomNetSpec, input_shape: tuple[int, int], generator: torch.Generator) -> list[Tensor]:
    """Masked weights ``[(width, H*W), (width, width), ...]`` (float32, zeros off the support)."""
    spec.validate()
    n_in = int(input_shape[0] * input_shape[1])
    weights = []
    for li in range(spec.depth):
        if li == 0 and spec.connectivity == "local":
            mask = _local_mask(spec.width, (int(input_shape[0]), int(input_shape[1])), spec.density, generator)
        else:
            mask = _global_mask(spec.width, n_in, spec.density, generator)
        fan_in = mask.sum(1, keepdim=True).float()  # (width, 1)
        w = torch.randn(spec.width, n_in, generator=generator) * (2.0 / fan_in).sqrt()
        weights.append(w * mask)
        n_in = spec.width
    return weights


def network_features(weights: Sequence[Tensor], x: Tensor, nonlinearity: str = "relu") -> Tensor:
    """``x: (n, d_in)`` -> outputs of the last layer ``(n, width)``."""
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    act = {"relu": torch.relu, "abs": torch.abs, "tanh": torch.tanh}[nonlinearity]
    h = x
    for w in weights:
        h = act(h @ w.T.to(h.dtype))
    return h


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # test accuracy of the probe refitted on the whole training set
    lam: float  # the chosen ridge strength
    val_accuracy: float  # its accuracy on the validation split


def _ridge_solutions(f: Tensor, y1h: Tensor, lambdas: Sequence[float]) -> list[Tensor]:
    """``B_lambda = (F^T F + lambda n I)^{-1} F^T Y`` for every lambda: [(d, C)]."""
    n = f.shape[0]
    evals, evecs = torch.linalg.eigh(f.T @ f)  # (d,), (d, d)
    rhs = evecs.T @ (f.T @ y1h)  # (d, C)
    return [evecs @ (rhs / (evals.clamp_min(0) + lam * n)[:, None]) for lam in lambdas]


def ridge_probe(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor,
                lambdas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0), val_fraction: float = 0.2,
                generator: torch.Generator | None = None) -> ProbeResult:
    """Closed-form ridge classifier (module docstring). ``f_*: (n, d)``, ``y_*: (n,)`` long."""
    if not lambdas or min(lambdas) <= 0:
        raise ValueError(f"lambdas={list(lambdas)}; allowed: a non-empty list of positive numbers")
    check_range("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    f_all = torch.cat([f_train, f_test]).double()
    mu, sd = f_train.double().mean(0), f_train.double().std(0, correction=0)
    live = sd > 1e-12 * sd.amax().clamp_min(1e-300)
    f_all = torch.where(live, (f_all - mu) / torch.where(live, sd, torch.ones_like(sd)), torch.zeros_like(f_all))
    ftr, fte = f_all[: f_train.shape[0]], f_all[f_train.shape[0]:]
    y1h = torch.nn.functional.one_hot(y_train, n_classes).double()
    g = torch.Generator().manual_seed(0) if generator is None else generator
    perm = torch.randperm(ftr.shape[0], generator=g)
    n_val = max(1, int(round(val_fraction * ftr.shape[0])))
    val, fit = perm[:n_val], perm[n_val:]

    def solve(idx: Tensor, lams: Sequence[float]) -> list[tuple[Tensor, Tensor]]:
        ym = y1h[idx].mean(0)
        return [(b, ym) for b in _ridge_solutions(ftr[idx] - ftr[idx].mean(0), y1h[idx] - ym, lams)]

    def acc(f: Tensor, y: Tensor, b: Tensor, ym: Tensor, fmean: Tensor) -> float:
        return float((((f - fmean) @ b + ym).argmax(1) == y).double().mean())

    val_acc = [acc(ftr[val], y_train[val], b, ym, ftr[fit].mean(0)) for b, ym in solve(fit, lambdas)]
    best = int(np.argmax(val_acc))
    (b, ym), = solve(torch.arange(ftr.shape[0]), [lambdas[best]])
    return ProbeResult(acc(fte, y_test, b, ym, ftr.mean(0)), float(lambdas[best]), float(val_acc[best]))


def spearman_ci(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n_boot: int = 2000, level: float = 0.95,
                rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Spearman rho of ``(x, y)`` and its percentile bootstrap interval (pairs resampled)."""
    import warnings

    from scipy.stats import spearmanr

    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.size < 3:
        raise ValueError(f"need two equal-length sequences of at least 3 values; got {xa.shape} and {ya.shape}")
    x, y = xa, ya
    rng = np.random.default_rng(0) if rng is None else rng
    rho = float(spearmanr(x, y).statistic)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    with warnings.catch_warnings():  # a resample of tied values has no rho: dropped below
        warnings.simplefilter("ignore")
        boots = np.array([spearmanr(x[i], y[i]).statistic for i in idx])
    boots = boots[np.isfinite(boots)]
    a = (1 - level) / 2
    return rho, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


@dataclass(frozen=True)
class RandNetConfig:
    name: str = "random_nets"  # run name (folder runs/<time>-<name>)
    seed: int = 0  # every draw derives from it
    threads: int = 1  # torch CPU threads
    n_nets: int = 120  # random networks
    depths: tuple[int, ...] = (1, 2, 3)  # depth choices (uniform)
    widths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # width choices (uniform)
    density: tuple[float, float] = (0.02, 1.0)  # log-uniform range of the weight density
    connectivity: tuple[str, ...] = ("global", "local")  # connectivity choices (uniform)
    nonlinearity: str = "relu"
    source: str = "bundled"  # labelled data: "bundled" identity task, a CIFAR-10 folder or a class folder
    images: tuple[str, ...] = BUNDLED_DEFAULT  # bundled images = classes (source == "bundled")
    patch: tuple[int, int] = (16, 16)  # patch size for the bundled identity task
    image_size: tuple[int, int] | None = None  # class folders: resize every image to (H, W)
    n_train_per_class: int = 300
    n_test_per_class: int = 100
    test_fraction: float = 0.25  # bottom share of every image kept for test patches
    zca_floor: float = 0.1  # ZCA eigenvalue floor (relative to the mean eigenvalue)
    eps2: float = 0.5  # coding-rate precision eps^2
    lambdas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge strengths tried
    n_bootstrap: int = 2000

    def validate(self) -> None:
        check_range("n_nets", self.n_nets, 3, None)
        check_range("threads", self.threads, 0, None)
        for key in ("depths", "widths"):
            v = getattr(self, key)
            if not v or min(v) < 1:
                raise ValueError(f"{key}={list(v)}; allowed: a non-empty list of integers >= 1")
        lo, hi = self.density
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"density={list(self.density)}; allowed: [low, high] with 0 < low <= high <= 1")
        if not self.connectivity:
            raise ValueError("connectivity is empty; allowed: global, local")
        for c in self.connectivity:
            check_choice("connectivity", c, CONNECTIVITY)
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        check_range("n_train_per_class", self.n_train_per_class, 2, None)
        check_range("n_test_per_class", self.n_test_per_class, 1, None)
        check_range("test_fraction", self.test_fraction, 0, 1, low_open=True, high_open=True)
        check_range("zca_floor", self.zca_floor, 0, None, low_open=True)
        check_range("eps2", self.eps2, 0, None, low_open=True)
        check_range("n_bootstrap", self.n_bootstrap, 10, None)
        if not self.lambdas or min(self.lambdas) <= 0:
            raise ValueError(f"lambdas={list(self.lambdas)}; allowed: positive numbers")


def sample_specs(cfg: RandNetConfig, rng: np.random.Generator) -> list[RandomNetSpec]:
    lo, hi = np.log(cfg.density[0]), np.log(cfg.density[1])
    return [RandomNetSpec(int(rng.choice(cfg.depths)), int(rng.choice(cfg.widths)), float(np.exp(rng.uniform(lo, hi))),
                          str(rng.choice(cfg.connectivity)), cfg.nonlinearity) for _ in range(cfg.n_nets)]


def prepare_probe_data(cfg: RandNetConfig, g: torch.Generator):
    """Labelled split -> per-sample mean removed -> ZCA fitted on train: ``(x_tr, y_tr, x_te, y_te, shape)``."""
    from structlearn.data.labeled import cifar_folder, load_labeled
    from structlearn.data.whiten import ZCA

    if cfg.source == "bundled":
        kw = dict(names=cfg.images, patch=cfg.patch, n_train_per_class=cfg.n_train_per_class,
                  n_test_per_class=cfg.n_test_per_class, test_fraction=cfg.test_fraction, generator=g)
    elif cifar_folder(cfg.source) is not None:
        kw = {}
    else:
        kw = dict(size=cfg.image_size, generator=g)
    split = load_labeled(cfg.source, **kw)
    shape = tuple(split.train.x.shape[-2:])
    if split.train.x.ndim != 3:
        raise ValueError(f"labelled images must be grayscale (n, H, W); got {tuple(split.train.x.shape)}")
    xs = []
    for s in (split.train, split.test):
        x = s.x.reshape(s.x.shape[0], -1).double()
        xs.append(x - x.mean(1, keepdim=True))
    zca = ZCA(xs[0].shape[1], cfg.zca_floor).fit(xs[0])
    return zca(xs[0]).float(), split.train.y, zca(xs[1]).float(), split.test.y, shape


def run_random_net_study(cfg: RandNetConfig, log=None) -> dict:
    """Sample ``cfg.n_nets`` networks; entropy of their outputs and probe accuracy; Spearman."""
    cfg.validate()
    x_tr, y_tr, x_te, y_te, shape = prepare_probe_data(cfg, torch.Generator().manual_seed(derive_seed(cfg.seed, "data")))
    d_in = x_tr.shape[1]
    h_input = float(layer_entropy(x_tr, "coding_rate", d_ref=d_in, eps2=cfg.eps2))
    raw = ridge_probe(x_tr, y_tr, x_te, y_te, cfg.lambdas, generator=torch.Generator().manual_seed(0))
    specs = sample_specs(cfg, np.random.default_rng(derive_seed(cfg.seed, "specs")))
    rows: list[dict[str, Any]] = []
    for i, spec in enumerate(progress(specs, desc="random networks", unit="net")):
        ws = random_network(spec, shape, torch.Generator().manual_seed(derive_seed(cfg.seed, "net", i)))
        f_tr = network_features(ws, x_tr, spec.nonlinearity)
        f_te = network_features(ws, x_te, spec.nonlinearity)
        h = float(layer_entropy(f_tr, "coding_rate", d_ref=d_in, eps2=cfg.eps2))
        probe = ridge_probe(f_tr, y_tr, f_te, y_te, cfg.lambdas, generator=torch.Generator().manual_seed(i))
        live = int(standardize_live(f_tr)[1].sum())
        rows.append({"index": i, "depth": spec.depth, "width": spec.width, "density": spec.density,
                     "realised_density": float(np.mean([float((w != 0).float().mean()) for w in ws])),
                     "connectivity": spec.connectivity, "live_units": live, "entropy": h,
                     "accuracy": probe.accuracy, "lam": probe.lam, "val_accuracy": probe.val_accuracy})
        if log is not None:
            log(f"net {i}: depth {spec.depth} width {spec.width} density {spec.density:.3f} {spec.connectivity}: "
                f"H = {h:.2f} nats, probe accuracy {probe.accuracy:.3f}")
    rng = np.random.default_rng(derive_seed(cfg.seed, "bootstrap"))
    ent, acc = [float(r["entropy"]) for r in rows], [float(r["accuracy"]) for r in rows]
    rho, lo, hi = spearman_ci(ent, acc, cfg.n_bootstrap, rng=rng)
    within = {}
    for wd in sorted({r["width"] for r in rows}):
        sel = [r for r in rows if r["width"] == wd]
        if len(sel) >= 5:
            from scipy.stats import spearmanr

            within[str(wd)] = {"n": len(sel), "rho": float(spearmanr([r["entropy"] for r in sel],
                                                                     [r["accuracy"] for r in sel]).statistic)}
    chance = 1.0 / (int(y_te.max()) + 1)
    return {"spearman_rho": rho, "ci95": [lo, hi], "n_nets": len(rows), "chance_accuracy": chance,
            "input_entropy": h_input, "input_probe_accuracy": raw.accuracy, "spearman_within_width": within,
            "nets": rows, "measure": "coding_rate of standardised unit-norm outputs, d_ref = input dimension",
            "eps2": cfg.eps2, "d_in": d_in, "n_train": int(x_tr.shape[0]), "n_test": int(x_te.shape[0])}


def plot_random_nets(result: dict, path) -> None:
    """Scatter of probe accuracy against output entropy (colour: connectivity, size: depth)."""
    from structlearn.depth.plots import _figure, _save

    plt, fig, (ax,) = _figure(1, 6.0)
    colors = {"global": "tab:blue", "local": "tab:orange"}
    for conn, c in colors.items():
        sel = [r for r in result["nets"] if r["connectivity"] == conn]
        ax.scatter([r["entropy"] for r in sel], [r["accuracy"] for r in sel], s=[12 + 14 * (r["depth"] - 1) for r in sel],
                   color=c, alpha=0.7, label=f"{conn} ({len(sel)})")
    ax.axhline(result["chance_accuracy"], color="0.5", ls=":", label="chance")
    ax.scatter([result["input_entropy"]], [result["input_probe_accuracy"]], marker="*", s=120, color="k",
               label="whitened input")
    lo, hi = result["ci95"]
    ax.set_title(f"random networks: Spearman rho = {result['spearman_rho']:.2f} (95% CI {lo:.2f}..{hi:.2f}), "
                 f"n = {result['n_nets']}", fontsize=9)
    ax.set_xlabel("output entropy: coding rate (nats)")
    ax.set_ylabel("linear probe accuracy (test)")
    ax.legend(fontsize=7, title="marker size = depth", title_fontsize=7)
    _save(plt, fig, path)
