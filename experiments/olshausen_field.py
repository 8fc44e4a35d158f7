"""Olshausen and Field (1996) on the bundled images: sparse coding of 1/f-whitened 16x16 patches.

Done-point 4 of issue 3: with at least 192 units, the coefficients' kurtosis is >= 20 at a
reconstruction error <= 10% of the patch variance, and the filters are localised, oriented
and band-pass. Each image is whitened with R(f) = f exp(-(f/f0)^4), f0 = 0.39 of its size
(:func:`structlearn.data.whiten.whiten_one_over_f`), patches are drawn afresh every step,
and a held-out set of patches is encoded at the end (FISTA, ``eval_iter`` iterations).

Measured on that held-out set:

- ``recon_rel_error = sum ||x - z D||^2 / sum ||x - mean(x)||^2`` (share of the variance);
- ``kurtosis``: excess kurtosis ``m4 / m2^2 - 3`` of all coefficients pooled, also for the
  random initial dictionary (O&F: about 20 after training, 7 before);
- ``kurtosis_unit_median``: the median over units of each unit's excess kurtosis;
- ``response_kurtosis_unit_median``: the same for the linear filter responses ``x D^T``
  (no L1 zeros involved, so it tells learned filters from random ones more fairly: the
  LASSO codes of a random dictionary are also mostly exact zeros and heavy-tailed).

    .venv/bin/python experiments/olshausen_field.py --lam 0.7 --steps 2000 --out /tmp/of

writes ``summary.json`` and ``filters.png`` (a montage, each filter scaled to its own max).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from structlearn.data.images import load_bundled
from structlearn.data.patches import sample_patches
from structlearn.data.whiten import whiten_one_over_f
from structlearn.models.dense import DenseLayer
from structlearn.objectives import OBJECTIVES


def excess_kurtosis(z: Tensor, dim: int | None = None) -> Tensor:
    """``E[(z - mu)^4] / E[(z - mu)^2]^2 - 3`` over ``dim`` (all entries when ``None``)."""
    z = z.double()
    c = z - (z.mean() if dim is None else z.mean(dim, keepdim=True))
    m2 = (c**2).mean() if dim is None else (c**2).mean(dim)
    m4 = (c**4).mean() if dim is None else (c**4).mean(dim)
    return m4 / m2**2 - 3


def evaluate(obj, x: Tensor) -> dict[str, float]:
    z = obj.encode(x)  # (n, k)
    r = x - obj.decode(z)
    return {
        "recon_rel_error": float((r * r).sum() / ((x - x.mean(0)) ** 2).sum()),
        "kurtosis": float(excess_kurtosis(z)),
        "kurtosis_unit_median": float(excess_kurtosis(z, 0).nan_to_num(0).median()),
        "response_kurtosis_unit_median": float(excess_kurtosis(x @ obj.layer.effective_weight().T, 0).median()),
        "active_fraction": float((z != 0).double().mean()),
    }


def save_montage(filters: Tensor, path: Path, scale: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.util import montage

    f = filters.double().numpy()
    f = f / np.abs(f).max(axis=(1, 2), keepdims=True).clip(1e-12)
    cols = int(np.ceil(np.sqrt(len(f))))
    m = montage(f, grid_shape=(int(np.ceil(len(f) / cols)), cols), padding_width=1, fill=0)
    plt.imsave(path, np.kron(m, np.ones((scale, scale))), cmap="gray", vmin=-1, vmax=1)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lam", type=float, default=0.7, help="L1 weight of sparse coding")
    p.add_argument("--units", type=int, default=256, help="number of units (O&F: 192)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n-iter", type=int, default=50, help="FISTA iterations per training step")
    p.add_argument("--eval-iter", type=int, default=300, help="FISTA iterations at evaluation")
    p.add_argument("--test", type=int, default=4000, help="held-out patches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("/tmp/olshausen_field"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)

    images = [whiten_one_over_f(im) for im in load_bundled()]
    g = torch.Generator().manual_seed(a.seed)
    x_test = sample_patches(images, (16, 16), a.test, g).reshape(a.test, 256)
    layer = DenseLayer(256, a.units, (16, 16), generator=g)
    obj = OBJECTIVES.create("sparse_coding", layer, generator=g, lam=a.lam, n_iter=a.n_iter, eval_iter=a.eval_iter)
    before = evaluate(obj, x_test)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        m = obj.train_step(sample_patches(images, (16, 16), a.batch, g).reshape(a.batch, 256))
        if step % 100 == 0 or step == a.steps:
            shown = ", ".join(f"{k}={float(v):.4g}" for k, v in m.items())
            print(f"step {step}: {shown} ({time.time() - t0:.0f} s)", flush=True)
    after = evaluate(obj, x_test)
    summary = {"lam": a.lam, "units": a.units, "steps": a.steps, "batch": a.batch, "patches_seen": a.steps * a.batch,
               "seconds": round(time.time() - t0, 1), "before": before, "after": after,
               "passed": after["kurtosis"] >= 20 and after["recon_rel_error"] <= 0.10}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    save_montage(layer.filters(), a.out / "filters.png")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
