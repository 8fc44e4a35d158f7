"""6. Hardware efficiency of the FISTA inner loop: achieved GFLOP/s over measured matmul peak.

Useful flops of :func:`structlearn.functional.sparse.fista` per call: the Gram matrix
``2 k^2 d``, ``x D^T`` ``2 n k d`` and per iteration ``y @ G`` ``2 n k^2`` (the elementwise
prox and momentum are not counted: they are the overhead this benchmark exposes).
``peak_fraction = flops / t / peak`` with ``peak`` the square-matmul rate measured in the
same run (same dtype, device and threads).

The "baseline" column is the bare matmul chain of the same shapes and count (``n_iter``
times ``y @ G``): ``ratio = matmul-only time / FISTA time`` is the share of FISTA's time
spent in its matmul. Since 2026-11-23 the library's ``fista`` is the fused loop this
benchmark first proposed (one ``addmm`` with ``M = I - G / L``, soft threshold as
``v - clamp(v, -t, t)``, and for ``k > 2 d`` the product through ``D``, ``4 n k d`` flops per
iteration, instead of the ``(k, k)`` Gram matrix); flops are counted for the route it takes.
"""
from __future__ import annotations

import torch

from structlearn.bench import Benchmark, Context, Result, Target
from structlearn.functional.sparse import fista, lasso_objective, lipschitz

LAM = 0.5


def _flops(n: int, k: int, d: int, n_iter: int, gram: bool = True) -> float:
    per_iter = 2 * n * k * k if gram else 4 * n * k * d
    return 2 * k * k * d * gram + 2 * n * k * d + n_iter * per_iter


def run(ctx: Context) -> list[Result]:
    cases = ctx.pick([(4096, 256, 144, 100), (256, 1024, 576, 100), (256, 4096, 576, 10)],
                     [(2048, 256, 144, 50), (256, 1024, 576, 50)],
                     [(64, 32, 16, 20), (16, 64, 16, 20)])
    dt = torch.float32
    peak = ctx.peak(dt)
    rows = []
    for n, k, d, it in cases:
        g = ctx.generator(f"fista/{n}/{k}/{d}")
        D = torch.randn(k, d, generator=g, dtype=dt)
        D = (D / D.norm(dim=1, keepdim=True)).to(ctx.device)
        x = torch.randn(n, d, generator=g, dtype=dt).to(ctx.device)
        L = lipschitz(D)
        G, y0 = D @ D.T, torch.randn(n, k, generator=g, dtype=dt).to(ctx.device)

        def chain():
            y = y0
            for _ in range(it):
                y = y @ G
                y = y0  # keep values bounded; same shapes every time
            return y

        ours = lambda: fista(x, D, LAM, it, L=L)  # noqa: E731
        t_o, t_c = ctx.time_pair(ours, chain)
        f_o = lasso_objective(x, D, t_o.last, LAM).mean()
        gram = k <= 2 * d
        rows.append(Result("fista_efficiency", f"n={n} k={k} d={d} iters={it}", "functional.sparse.fista",
                           "bare y@G chain (same count)", t_o, t_c, flops=_flops(n, k, d, it, gram), peak_gflops=peak,
                           target=Target("peak_fraction", ">=", 0.7),
                           quality={"objective": float(f_o), "route": "gram" if gram else "through D"}))
    return rows


BENCHMARK = Benchmark("fista_efficiency", 6, run, "FISTA inner loop GFLOP/s over the measured matmul peak")
