"""Translated digits: a translation-invariant 2D ReduNet against the vector ReduNet (issue 14).

scikit-learn's bundled digits (8x8, 10 classes, 1797 images; nothing is downloaded), scaled to
[0, 1], split at random (seeded) into train and test. The invariant network lifts each image to
``--channels`` maps with fixed random ``k x k`` kernels (circular padding, ReLU) and constructs
``--layers`` shift-invariant layers from the training set; the vector network constructs the
same number of vector layers on the raw 64 pixels. Both classify by argmax of the last layer's
memberships pi. Accuracy is measured on the unshifted test set and on each of the 64 cyclic
translations of it.

    python experiments/redunet_digits.py               # about 6 minutes on 2 cores
    python experiments/redunet_digits.py --out /tmp/redunet_digits

Writes ``redunet_digits.json`` (accuracies per shift, Delta R per layer) and two figures:
``delta_r.png`` (R, R^c and Delta R per layer, both networks) and ``cos_heatmap.png`` (|cos|
between test features, sorted by class, before and after the invariant network).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(seed: int, n_train: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.images, dtype=torch.float64)[:, None] / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return X[perm[:n_train]], y[perm[:n_train]], X[perm[n_train:]], y[perm[n_train:]]


def accuracy_per_shift(net, X: torch.Tensor, y: torch.Tensor, chunk: int = 4) -> np.ndarray:
    """``(8, 8)``: accuracy on the test set cyclically translated by (dy, dx)."""
    H, W = X.shape[-2:]
    acc = np.zeros((H, W))
    shifts = [(a, b) for a in range(H) for b in range(W)]
    for i in range(0, len(shifts), chunk):
        batch = shifts[i:i + chunk]
        Xs = torch.cat([torch.roll(X, s, dims=(2, 3)) for s in batch])
        pred = net.predict(Xs).reshape(len(batch), -1)
        for (a, b), p in zip(batch, pred):
            acc[a, b] = float((p == y).double().mean())
    return acc


def main(argv: list[str] | None = None) -> int:
    from structlearn.depth.plots import _figure, _save
    from structlearn.io import atomic_write_json
    from structlearn.redunet import Lift, ReduNet

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/redunet_digits")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--eta", type=float, default=0.5)
    p.add_argument("--lam", type=float, default=500.0)
    p.add_argument("--eps2", type=float, default=0.1)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    Xtr, ytr, Xte, yte = load(a.seed, a.n_train)
    result: dict = {"config": vars(a), "n_test": int(len(yte))}
    nets = {
        "invariant": ReduNet(10, a.layers, spatial_dims=2, eta=a.eta, lam=a.lam, eps2=a.eps2,
                             lift=Lift(1, a.channels, a.kernel, spatial_dims=2, seed=a.seed)),
        "vector": ReduNet(10, a.layers, eta=a.eta, lam=a.lam, eps2=a.eps2),
    }
    for name, net in nets.items():
        t0 = time.time()
        stats = net.construct(Xtr, ytr)
        t1 = time.time()
        acc = accuracy_per_shift(net, Xte, yte)
        result[name] = {
            "construct_seconds": t1 - t0, "eval_seconds": time.time() - t1, "layers": stats,
            "train_accuracy": float((net.predict(Xtr) == ytr).double().mean()),
            "test_accuracy_unshifted": float(acc[0, 0]), "test_accuracy_mean_over_shifts": float(acc.mean()),
            "test_accuracy_min_over_shifts": float(acc.min()), "test_accuracy_max_over_shifts": float(acc.max()),
            "accuracy_per_shift": acc.tolist()}
        r = result[name]
        print(f"{name}: train {r['train_accuracy']:.3f}, test unshifted {r['test_accuracy_unshifted']:.3f}, over the 64 "
              f"translations mean {r['test_accuracy_mean_over_shifts']:.3f} [min {r['test_accuracy_min_over_shifts']:.3f}, "
              f"max {r['test_accuracy_max_over_shifts']:.3f}]; Delta R {stats[0]['delta_R']:.2f} -> {stats[-1]['delta_R']:.2f} "
              f"({r['construct_seconds']:.0f} s + {r['eval_seconds']:.0f} s)", file=sys.stderr, flush=True)
    plt, fig, axes = _figure(2, 5.0)
    for ax, name in zip(axes, nets):
        L = result[name]["layers"]
        x = [s["layer"] for s in L]
        for key, style in (("R", "-"), ("Rc", "--"), ("delta_R", "-o")):
            ax.plot(x, [s[key] for s in L], style, label={"Rc": "R^c", "delta_R": "Delta R"}.get(key, key), ms=3)
        ax.set_xlabel("layer (0 = input features)")
        ax.set_ylabel("nats")
        ax.set_title(f"{name} ReduNet, training set")
        ax.legend()
    _save(plt, fig, out / "delta_r.png")

    net = nets["invariant"]
    order = torch.argsort(yte, stable=True)
    Z0 = net.features0(Xte[order]).flatten(1)
    ZL = net(Xte[order]).flatten(1)
    plt, fig, axes = _figure(2, 5.0)
    fig.set_size_inches(10, 4.6)
    same = yte[order][:, None] == yte[order][None, :]
    result["cos"] = {}
    for ax, Z, title in ((axes[0], Z0, "lifted input"), (axes[1], ZL, f"after {a.layers} layers")):
        cos = (Z @ Z.T).abs()
        within, between = float(cos[same].mean()), float(cos[~same].mean())
        result["cos"][title] = {"within_class_mean": within, "between_class_mean": between}
        ax.imshow(cos.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"|cos| between test features, {title} (sorted by class)\n"
                     f"mean within class {within:.3f}, between classes {between:.3f}", fontsize=9)
        ax.set_xlabel("test sample")
        ax.set_ylabel("test sample")
    _save(plt, fig, out / "cos_heatmap.png")
    atomic_write_json(out / "redunet_digits.json", result)
    print(f"wrote {out}/redunet_digits.json, delta_r.png, cos_heatmap.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
