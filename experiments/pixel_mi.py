"""Pixel mutual information versus distance (the figures behind local receptive fields).

Three panels, all with the binned plug-in MI (16 bins, Miller-Madow) of structlearn.info:

(a) natural images: MI between pixels at distance r (all directions) in the bundled
    scikit-image photographs, with a shuffle null; it decays with distance.
(b) mosaics (3x3 tiles of 8x8 from random images and positions): pairs inside one tile
    versus pairs across two tiles, with the mosaic-level independent null at the
    Bonferroni quantile 1 - 0.05 / D over the D distances; cross-tile MI must sit inside it
    at every distance.
(c) the cross-tile pairs of (b) on their own scale, against the null's mean and quantile.
(d, e) after one learned layer: sparse coding (64 units, 8x8) on 1/f-whitened patches; its
    filters are convolved over the whitened images and, within each channel's feature map
    (mean over channels), the MI (d) and the linear correlation (e) of two responses at
    distance r are measured for the signed responses and their magnitudes |response|,
    next to the whitened pixels. MI cannot grow through |.| (data processing), but the
    dependence changes form: signed responses are nearly uncorrelated, their magnitudes are
    positively correlated over long distances (energy co-modulation): redundancy that a
    next linear layer with pooling can remove.

    .venv/bin/python experiments/pixel_mi.py --out runs/pixel_mi

Writes pixel_mi.json and pixel_mi.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def natural_curve(images, distances, n_pairs, n_null, g):
    from structlearn.info import pixel_mi_vs_distance

    return pixel_mi_vs_distance(images, distances, direction="all", n_pairs=n_pairs, n_null=n_null, generator=g)


def mosaic_curve(images, distances, n_mosaics, n_pairs, n_null, g):
    from structlearn.data.mosaics import make_mosaics
    from structlearn.info import mosaic_mi_vs_distance

    m = make_mosaics(images, (3, 3), (8, 8), n_mosaics, g, remove_mean="none")
    q = 1 - 0.05 / len(distances)  # Bonferroni over the distances
    return mosaic_mi_vs_distance(m.x, m.tile_map, distances, direction="all", n_pairs=n_pairs, n_null=n_null,
                                 quantile=q, generator=g)


def learned_filters(seed: int, n_units: int, steps: int):
    """Train one sparse-coding layer on 8x8 patches of 1/f-whitened images; returns the
    filters ``(n_units, 8, 8)`` as they act on whitened image patches (per-patch mean
    removal folded in: a filter minus its mean) and the run summary."""
    from structlearn.config import DataConfig, LayerConfig, RunConfig
    from structlearn.train import Trainer

    cfg = RunConfig(name="pixel_mi_layer", seed=seed, threads=1, wandb="disabled",
                    data=DataConfig(kind="patches", patch=(8, 8), n_train=20000, n_test=1000, whitening="one_over_f"),
                    layers=(LayerConfig(n_units=n_units, objective="sparse_coding",
                                        params={"lam": 0.5, "n_iter": 30, "eval_iter": 100}, steps=steps,
                                        batch_size=128, prune=None),),
                    eval_every=10**6, checkpoint_every=10**6)
    tr = Trainer(cfg)
    summary = tr.run()
    w = tr.objectives[0].layer.filters().double()  # (C, 8, 8)
    return w - w.mean((1, 2), keepdim=True), summary


def correlation_vs_distance(maps, distances) -> list[float]:
    """Pearson correlation of ``(m[y, x], m[y, x + r])`` and ``(m[y, x], m[y + r, x])``, pairs
    pooled over the list of ``(H, W)`` maps; mean of the two directions per distance."""
    out = []
    for r in distances:
        xs, ys = [], []
        for m in maps:
            xs += [m[:, :-r].reshape(-1), m[:-r, :].reshape(-1)]
            ys += [m[:, r:].reshape(-1), m[r:, :].reshape(-1)]
        h = [torch.corrcoef(torch.stack([torch.cat(xs[k::2]), torch.cat(ys[k::2])]))[0, 1] for k in (0, 1)]
        out.append(float(sum(h) / 2))
    return out


def feature_curves(images_white, filters, distances, n_pairs, n_null, g):
    """MI and correlation vs distance within each channel of the feature maps, averaged over channels."""
    from structlearn.info import pixel_mi_vs_distance

    maps = [torch.nn.functional.conv2d(torch.as_tensor(im, dtype=torch.float64)[None, None], filters[:, None])[0]
            for im in images_white]  # each (C, H-7, W-7)
    out = {"whitened_pixels_correlation": correlation_vs_distance(
        [torch.as_tensor(im, dtype=torch.float64) for im in images_white], distances)}
    for name, f in (("signed", lambda t: t), ("magnitude", torch.abs)):
        rows, corr = [], []
        for c in range(filters.shape[0]):
            chan = [f(m[c]) for m in maps]
            curve = pixel_mi_vs_distance(chan, distances, direction="all", n_pairs=n_pairs, n_null=n_null, generator=g)
            rows.append([curve.mi.numpy(), curve.null_mean.numpy(), curve.null_upper.numpy()])
            corr.append(correlation_vs_distance(chan, distances))
        a = np.array(rows)  # (C, 3, D)
        out[name] = {"mi": a[:, 0].mean(0).tolist(), "mi_per_channel": a[:, 0].tolist(),
                     "correlation": np.mean(corr, 0).tolist(),
                     "null_mean": a[:, 1].mean(0).tolist(), "null_upper": a[:, 2].mean(0).tolist(),
                     "channels_above_null": (a[:, 0] > a[:, 2]).sum(0).tolist()}
    return out


def plot(result, path):
    from structlearn.depth.plots import _figure, _save

    plt, fig, (a, b, c, d, e) = _figure(5, 4.0)
    nat = result["natural"]
    a.plot(nat["distances"], nat["mi"], "o-", ms=3, label="pixel pairs")
    a.plot(nat["distances"], nat["null_upper"], "k:", label="shuffle null, 95%")
    a.set_yscale("log")
    a.set_title("(a) natural images")
    mos = result["mosaic"]
    for key, col in (("within", "tab:blue"), ("cross", "tab:red")):
        cur = mos[key]
        b.plot(cur["distances"], cur["mi"], "o-", ms=3, color=col, label=f"{key}-tile pairs")
    b.set_title("(b) mosaics 3x3 of 8x8")
    cr = mos["cross"]
    k = 1e4
    c.plot(cr["distances"], np.array(cr["mi"]) * k, "o-", ms=3, color="tab:red", label="cross-tile pairs")
    c.plot(cr["distances"], np.array(cr["null_mean"]) * k, "-", color="0.5", label="null mean")
    c.plot(cr["distances"], np.array(cr["null_upper"]) * k, ":", color="k",
           label=f"null {cr['quantile']:.4f} (Bonferroni)")
    c.set_title("(c) cross-tile pairs vs independent null")
    feat = result["features"]
    dist = feat["distances"]
    d.plot(dist, feat["whitened_pixels"]["mi"], "o-", ms=3, color="0.4", label="whitened pixels")
    d.plot(dist, feat["signed"]["mi"], "o-", ms=3, color="tab:green", label="filter responses")
    d.plot(dist, feat["magnitude"]["mi"], "o-", ms=3, color="tab:purple", label="|filter responses|")
    d.plot(dist, feat["magnitude"]["null_upper"], ":", color="tab:purple", label="null (|responses|), 95%")
    d.set_yscale("log")
    d.set_title("(d) MI after one learned layer")
    e.plot(dist, feat["whitened_pixels_correlation"], "o-", ms=3, color="0.4", label="whitened pixels")
    e.plot(dist, feat["signed"]["correlation"], "o-", ms=3, color="tab:green", label="filter responses")
    e.plot(dist, feat["magnitude"]["correlation"], "o-", ms=3, color="tab:purple", label="|filter responses|")
    e.axhline(0, color="k", lw=0.5)
    e.set_title("(e) correlation after one learned layer")
    for ax in (a, b, c, d, e):
        ax.set_xlabel("distance (pixels)")
        ax.set_ylabel("MI (nats)")
        ax.legend(fontsize=7)
    c.set_ylabel("MI (1e-4 nats)")
    e.set_ylabel("correlation")
    _save(plt, fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/pixel_mi")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pairs", type=int, default=100_000)
    p.add_argument("--n-null", type=int, default=20, help="null draws for natural images and feature maps")
    p.add_argument("--mosaic-null", type=int, default=1000, help="null draws for the mosaic curves (Bonferroni)")
    p.add_argument("--n-mosaics", type=int, default=5000)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--channels", type=int, default=16, help="feature-map channels measured (first ones)")
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from structlearn.data.images import BUNDLED_DEFAULT, load_bundled
    from structlearn.data.whiten import whiten_one_over_f
    from structlearn.info import pixel_mi_vs_distance
    from structlearn.io import atomic_write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed)
    images = load_bundled(BUNDLED_DEFAULT)
    t0 = time.time()
    nat_d = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    nat = natural_curve(images, nat_d, args.n_pairs, args.n_null, g)
    print(f"natural: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    mos_d = list(range(1, 24))
    mos = mosaic_curve(images, mos_d, args.n_mosaics, args.n_pairs, args.mosaic_null, g)
    print(f"mosaic: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    filters, summary = learned_filters(args.seed, args.units, args.steps)
    white = [whiten_one_over_f(im) for im in images]
    feat_d = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    wp = pixel_mi_vs_distance(white, feat_d, direction="all", n_pairs=args.n_pairs, n_null=args.n_null, generator=g)
    feats = feature_curves(white, filters[: args.channels], feat_d, args.n_pairs // 2, args.n_null, g)
    print(f"features: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    result = {
        "natural": nat.to_dict(), "mosaic": mos.to_dict(),
        "features": {"distances": feat_d, "n_units": args.units, "channels": args.channels,
                     "layer_recon_rel_error": summary.get("recon_rel_error"),
                     "whitened_pixels": wp.to_dict(), **feats},
        "checks": {
            "natural_decays": bool(all(b < a for a, b in zip(nat.mi.tolist(), nat.mi.tolist()[1:]))),
            "natural_mi_d1_d8_d64": [float(nat.mi[nat_d.index(r)]) for r in (1, 8, 64)],
            "mosaic_cross_inside_null_all": bool(mos.cross.inside_null().all()),
            "mosaic_cross_inside_null_count": [int(mos.cross.inside_null().sum()), len(mos_d)],
            "mosaic_within_above_null": [int((~mos.within.inside_null() & (mos.within.n_pairs > 0)).sum()),
                                         int((mos.within.n_pairs > 0).sum())],
            "mosaic_cross_mi_max": float(mos.cross.mi.max()), "mosaic_cross_null_upper_min": float(mos.cross.null_upper.min()),
            "features_mi_d1_d8_d32": {k: [feats[k]["mi"][feat_d.index(r)] for r in (1, 8, 32)]
                                      for k in ("signed", "magnitude")} | {
                "whitened_pixels": [float(wp.mi[feat_d.index(r)]) for r in (1, 8, 32)]},
            "features_corr_d1_d8_d32": {k: [feats[k]["correlation"][feat_d.index(r)] for r in (1, 8, 32)]
                                        for k in ("signed", "magnitude")} | {
                "whitened_pixels": [feats["whitened_pixels_correlation"][feat_d.index(r)] for r in (1, 8, 32)]},
        },
        "args": vars(args), "seconds": time.time() - t0,
    }
    atomic_write_json(out / "pixel_mi.json", result)
    plot(result, out / "pixel_mi.png")
    print(json.dumps(result["checks"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
