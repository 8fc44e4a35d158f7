"""ReduNet on Gaussian classes on the circle and the sphere: the first figure of Chan et al. 2022.

Two settings: 2 classes on the circle (S^1 in R^2, directions 90 degrees apart) and 3 classes on the
sphere (S^2 in R^3, orthogonal directions), each class a Gaussian around its direction projected
back to the sphere. A vector ReduNet
(eta 0.5, lam 500, eps2 0.1) is constructed layer by layer from the training samples; the figure
shows R, R^c and Delta R per layer (at the true labels) and the training features before the
first and after the last layer, coloured by class.

    python experiments/redunet_gaussians.py                  # under a minute
    python experiments/redunet_gaussians.py --layers 200 --out /tmp/redunet_gaussians

Writes ``redunet_gaussians.json`` and ``redunet_gaussians.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from structlearn.depth.plots import _figure, _save
    from structlearn.io import atomic_write_json
    from structlearn.redunet import ReduNet
    from structlearn.runs.redunet import sphere_gaussians

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/redunet_gaussians")
    p.add_argument("--layers", type=int, default=100)
    p.add_argument("--m", type=int, default=150, help="training samples per class")
    p.add_argument("--noise", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    plt, fig, axes = _figure(3, 4.0)
    fig.set_size_inches(13, 8)
    axes = [fig.add_subplot(2, 3, i + 1, projection="3d" if i in (4, 5) else None) for i in range(6)]
    for ax in fig.axes[:3]:
        ax.remove()
    colours = ["tab:blue", "tab:orange", "tab:green"]
    result = {}
    for row, (J, dim) in enumerate(((2, 2), (3, 3))):
        g = torch.Generator().manual_seed(a.seed + row)
        if dim == 2:  # directions evenly spaced in angle mod pi
            t = torch.arange(J, dtype=torch.float64) * torch.pi / J + 0.3  # lines, not antipodes: pm z share a subspace
            means = torch.stack([t.cos(), t.sin()], 1)
        else:  # orthogonal directions on the sphere
            means = torch.eye(dim, dtype=torch.float64)[:J]
        X, y = sphere_gaussians(means, a.m, a.noise, g)
        net = ReduNet(J, a.layers, eta=0.5, lam=500.0, eps2=0.1)
        stats = net.construct(X, y)
        Z = net(X)
        acc = float((net.predict(X) == y).double().mean())
        key = f"{J}_classes_S{dim - 1}"
        result[key] = {"layers": stats, "train_accuracy": acc}
        print(f"{key}: Delta R {stats[0]['delta_R']:.3f} -> {stats[-1]['delta_R']:.3f}, train accuracy {acc:.3f}",
              file=sys.stderr)
        ax = axes[3 * row]
        x = [s["layer"] for s in stats]
        for k, style, label in (("R", "-", "R"), ("Rc", "--", "R^c"), ("delta_R", "-", "Delta R")):
            ax.plot(x, [s[k] for s in stats], style, label=label)
        ax.set_xlabel("layer")
        ax.set_ylabel("nats")
        ax.set_title(f"{J} classes on S^{dim - 1}: rates per layer")
        ax.legend()
        for col, (F, title) in enumerate(((X, "input features"), (Z, f"after {a.layers} layers"))):
            axf = axes[3 * row + 1 + col]
            for j in range(J):
                pts = F[y == j].numpy()
                axf.scatter(*[pts[:, i] for i in range(dim)], s=4, c=colours[j], label=f"class {j}")
            axf.set_title(title)
            if dim == 2:
                axf.set_aspect("equal")
                axf.set_xlabel("z1")
                axf.set_ylabel("z2")
    atomic_write_json(out / "redunet_gaussians.json", result)
    _save(plt, fig, out / "redunet_gaussians.png")
    print(f"wrote {out}/redunet_gaussians.json and redunet_gaussians.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
