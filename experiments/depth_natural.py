"""Entropy per layer on whole natural images with spatial stacking (the curve of Yuan et al.).

32x32 crops of the bundled photographs (1/f-whitened whole images). Each layer is a dense ICA
layer applied convolutionally; the next layer sees 2x2 neighbourhoods of its feature map, so
receptive fields grow with depth:

    layer 1: 8x8 pixel patches, stride 4      -> 7x7 map x 64 channels   (8 px)
    layer 2: 2x2 windows of layer 1, stride 2 -> 3x3 map x 64            (12 px)
    layer 3: 2x2 windows of layer 2, stride 1 -> 2x2 map x 64            (20 px)
    layer 4: 2x2 windows of layer 3           -> 1x1 map x 64            (28 px)

A layer (:mod:`structlearn.depth.spatial`): its input windows (256 or 64 values) projected on
their 64 leading principal components and whitened, full-batch InfoMax (extended, relative
Newton; Ablin et al. 2018), then ``log|.|`` (the magnitudes carry what is left: Karklin and
Lewicki 2009). The entropy of layer ``l`` is the entropy per unit of its Gaussianised codes at
the centre position, ``H_l = 1/2 log(2 pi e) - TC / 64``
(:mod:`structlearn.info.total_correlation`), on held-out crops; ``H_0`` is the whitened 8x8
pixel patch.

Controls: **gaussian** (crops drawn from a Gaussian with the crops' covariance: no
higher-order structure), **shuffled** (every pixel of a crop taken from a different crop:
independent pixels with natural marginals), and **positions** (a stricter test of the spatial
claim: every position of a 2x2 window taken from a different crop, so neighbouring positions
of a feature map are independent while each position keeps its own channels' statistics).

    python experiments/depth_natural.py --out runs/depth_natural          # ~10 min, 1 core
    python experiments/depth_natural.py --quick --seeds 0

Writes ``depth_natural.json``, ``depth_natural.md`` and ``depth_natural.png``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

UNITS = 64
CONDITIONS = ("natural", "gaussian", "shuffled", "positions")
LAYERS = ((8, 4), (2, 2), (2, 1), (2, 1))  # (window, stride) on the previous map (layer 1: pixels)


def crops(n: int, seed: int, condition: str) -> torch.Tensor:
    from structlearn.data.images import BUNDLED_DEFAULT, load_images
    from structlearn.data.mosaics import gaussian_clone
    from structlearn.data.patches import sample_patches
    from structlearn.data.whiten import whiten_one_over_f

    g = torch.Generator().manual_seed(seed)
    images = [whiten_one_over_f(im) for im in load_images("bundled", BUNDLED_DEFAULT)]
    x = sample_patches(images, (32, 32), n, g).double()
    x = x - x.mean(dim=(1, 2), keepdim=True)
    if condition == "gaussian":
        x = gaussian_clone(x, n, g).double()
    if condition == "shuffled":  # each pixel position permuted across crops on its own
        flat = x.reshape(n, -1)
        order = torch.argsort(torch.rand(flat.shape, generator=g, dtype=torch.float64), dim=0)
        x = torch.gather(flat, 0, order).reshape(x.shape)
    return x / x.std()


def profile(condition: str, seed: int, n_train: int, n_test: int, max_iter: int, fit_samples: int,
            neighbourhoods: list | None = None) -> list[float]:
    """Entropy per layer, ``[H_0, ..., H_4]`` nats per unit (and, into ``neighbourhoods``, the
    entropy per unit of the 2x2 window of each map that the next layer reads)."""
    from structlearn.depth.spatial import spatial_profile

    x = crops(n_train + n_test, seed, condition)[:, None]  # (n, 1, 32, 32) float64
    shuffle = torch.Generator().manual_seed(20_000 + seed) if condition == "positions" else None
    return spatial_profile(x[:n_train], x[n_train:], LAYERS, UNITS, torch.Generator().manual_seed(10_000 + seed),
                           shuffle, max_iter, fit_samples, neighbourhoods)


def main(argv: list[str] | None = None) -> int:
    from structlearn.depth.plots import _figure, _save
    from structlearn.io import atomic_write_json, atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/depth_natural")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--n-train", type=int, default=6000, help="training crops")
    p.add_argument("--n-test", type=int, default=8000, help="held-out crops (one sample per crop and layer)")
    p.add_argument("--max-iter", type=int, default=100, help="Newton iterations per layer")
    p.add_argument("--fit-samples", type=int, default=40000, help="windows per layer fit")
    p.add_argument("--quick", action="store_true", help="1500 + 2000 crops, 30 iterations: a smoke run")
    p.add_argument("--neighbourhoods", action="store_true",
                   help="also the entropy of the 2x2 window of each map that the next layer reads (256 units; slower)")
    a = p.parse_args(argv)
    if a.quick:
        a.n_train, a.n_test, a.max_iter, a.fit_samples = 1500, 2000, 30, 10000
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res: dict[str, list[list[float]]] = {}
    nbh: dict[str, list[list]] = {}
    from structlearn.runtime import progress

    for c in a.conditions:
        res[c], nbh[c] = [], []
        for s in progress(a.seeds, desc=f"{c} stacks", unit="seed"):
            nb: list | None = [] if a.neighbourhoods else None
            res[c].append(profile(c, s, a.n_train, a.n_test, a.max_iter, a.fit_samples, nb))
            nbh[c].append(nb or [])
            print(f"{c} seed {s}: H = {[round(h, 4) for h in res[c][-1]]}"
                  + (f", 2x2 neighbourhoods {[None if v is None else round(v, 4) for v in nb]}" if nb else ""),
                  file=sys.stderr)

    def stats(rows, i):
        v = [r[i] for r in rows]
        m = sum(v) / len(v)
        return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)

    n_layers = len(LAYERS) + 1
    lines = ["| layer | receptive field | " + " | ".join(f"H {c} (nats/unit)" for c in a.conditions) + " | "
             + " | ".join(f"gain {c}" for c in a.conditions) + " |", "|---:|---:|" + "---:|" * (2 * len(a.conditions))]
    rf = ["8 px (pixels)", "8 px", "12 px", "20 px", "28 px"]
    for i in range(n_layers):
        cells = []
        for c in a.conditions:
            m, sd = stats(res[c], i)
            cells.append(f"{m:.4f} +- {sd:.4f}")
        for c in a.conditions:
            if i == 0:
                cells.append("")
            else:
                m, sd = stats([[r[j] - r[j - 1] for j in range(1, n_layers)] for r in res[c]], i - 1)
                cells.append(f"{m:+.4f} +- {sd:.4f}")
        lines.append(f"| {i} | {rf[i]} | " + " | ".join(cells) + " |")
    if a.neighbourhoods:
        lines += ["", "Entropy per unit of the 2x2 window of each map that the next layer reads (256 units; "
                  "redundancy across neighbouring positions and within them):", "",
                  "| map of layer | " + " | ".join(a.conditions) + " |", "|---:|" + "---:|" * len(a.conditions)]
        for i in range(len(LAYERS) - 1):
            lines.append(f"| {i + 1} | " + " | ".join("{:.4f} +- {:.4f}".format(*stats(nbh[c], i)) for c in a.conditions)
                         + " |")
    lines.append(f"\nMean +- sd over seeds {a.seeds}; {a.n_train} training and {a.n_test} held-out 32x32 crops "
                 f"({time.time() - t0:.0f} s).")
    atomic_write_text(out / "depth_natural.md", "\n".join(lines) + "\n")
    atomic_write_json(out / "depth_natural.json", {"entropies": res, "neighbourhoods": nbh, "seeds": a.seeds, "layers": LAYERS,
                                                   "n_train": a.n_train, "n_test": a.n_test, "max_iter": a.max_iter})
    plt, fig, (ax, ax2) = _figure(2, 5.0)
    colours = {"natural": "tab:blue", "gaussian": "tab:orange", "shuffled": "tab:green", "positions": "tab:purple"}
    for c in a.conditions:
        lw = 4 if c == "natural" else 1.2  # drawn first and wide: "positions" often lies on top of it
        for j, r in enumerate(res[c]):
            ax.plot(range(n_layers), r, color=colours[c], marker="o", lw=lw, alpha=0.6, label=c if j == 0 else None)
            ax2.plot(range(1, n_layers), [r[i] - r[i - 1] for i in range(1, n_layers)], color=colours[c], marker="o",
                     lw=lw, alpha=0.6, label=c if j == 0 else None)
    ax.set_xticks(range(n_layers))
    ax2.set_xticks(range(1, n_layers))
    ax.set_xlabel("layer (0 = whitened pixels)")
    ax.set_ylabel("entropy per unit, 1/2 log(2 pi e) - TC/64 (nats)")
    ax.set_title("entropy of the feature maps per layer")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("layer")
    ax2.set_ylabel("gain H_l - H_(l-1) (nats per unit)")
    ax2.set_title("gain per layer")
    ax.legend(fontsize=8)
    ax2.legend(fontsize=8)
    _save(plt, fig, out / "depth_natural.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
