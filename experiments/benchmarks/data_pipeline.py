"""8. Data pipeline: patch mosaics generated per second.

Ours: :func:`structlearn.data.mosaics.make_mosaics` (3x3 grid of 8x8 tiles from the bundled
images, per-tile mean removed): one advanced-indexing gather per image. Baseline: the
per-tile Python loop of typical research code (NumPy slicing, one tile at a time), fed with
*the same random draws* (image index and corner of every tile), so both produce the same
mosaics and the check is exact. A second row times the whole default data preparation
(mosaics + ZCA fit and transform, :func:`structlearn.data.prepare.prepare`) without a baseline.
"""
from __future__ import annotations

import numpy as np
import torch

from structlearn.bench import Benchmark, Context, Result
from structlearn.config import DataConfig
from structlearn.data.images import load_bundled
from structlearn.data.mosaics import make_mosaics
from structlearn.data.prepare import prepare

GRID, TILE = (3, 3), (8, 8)


def loop_mosaics(images: list[np.ndarray], n: int, seed: int) -> np.ndarray:
    """Per-tile loop with the draws of ``make_mosaics`` (same generator calls, same order)."""
    (R, C), (h, w) = GRID, TILE
    g = torch.Generator().manual_seed(seed)
    m = n * R * C
    which = torch.randint(len(images), (m,), generator=g).numpy()
    u = torch.rand(m, 2, generator=g, dtype=torch.float64).numpy()
    out = np.empty((n, R * h, C * w), dtype=np.float32)
    for t in range(m):
        im = images[which[t]]
        y0 = int(u[t, 0] * (im.shape[0] - h + 1))
        x0 = int(u[t, 1] * (im.shape[1] - w + 1))
        tile = im[y0:y0 + h, x0:x0 + w]
        i, r, c = t // (R * C), (t // C) % R, t % C
        out[i, r * h:(r + 1) * h, c * w:(c + 1) * w] = tile - tile.mean(dtype=np.float32)
    return out


def run(ctx: Context) -> list[Result]:
    images = ctx.cached("bundled_images", load_bundled)
    n = ctx.pick(20000, 5000, 50)
    seed = ctx.seed + 8
    ours = lambda: make_mosaics(images, GRID, TILE, n, torch.Generator().manual_seed(seed)).x  # noqa: E731
    base = lambda: loop_mosaics(images, n, seed)  # noqa: E731
    t_o, t_b = ctx.time_pair(ours, base)
    diff = float(np.abs(t_o.last.numpy() - t_b.last).max())
    rows = [Result("data_pipeline", f"{n} mosaics 3x3 of 8x8", "data.make_mosaics", "per-tile NumPy loop", t_o, t_b,
                   quality={"mosaics_per_s": n / t_o.median, "baseline_mosaics_per_s": n / t_b.median,
                            "max_abs_diff": diff})]
    n_train = ctx.pick(50000, 10000, 200)
    cfg = DataConfig(n_train=n_train, n_test=ctx.pick(2000, 500, 20))
    t_p = ctx.time(lambda: prepare(cfg, seed), repeat=min(ctx.repeat, 3))
    rows.append(Result("data_pipeline", f"prepare default data (n_train={n_train})", "data.prepare (mosaics + ZCA)",
                       None, t_p, quality={"samples_per_s": (cfg.n_train + cfg.n_test) / t_p.median},
                       notes="includes loading the bundled images"))
    return rows


BENCHMARK = Benchmark("data_pipeline", 8, run, "patch mosaics generated per second (and the default data preparation)")
