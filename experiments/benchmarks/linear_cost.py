"""12. Sparse coding at linear cost in the number of units (issue 11), side by side in one run.

Two benchmarks: ``linear_cost`` (time per step, a few minutes at full size) and
``linear_convergence`` (held-out objective per sample; tens of minutes at full size: run it by
name, :mod:`linear_convergence`).

Units. One :meth:`SparseCoding.train_step` (batch 256, FISTA 30 iterations, ``lam = 1``, the
settings of ``scaling``) at d = 576 and 1k..16k units, for three updates timed interleaved on
the same batch: the block-coordinate update with exact Lipschitz constant (today's default, the
baseline), the same with every linear-cost option it takes (sparse ``z^T z`` statistics, the
warm power-iteration constant, FISTA's product from the iterate's non-zeros), and the
usage-scaled projected-gradient update with the power constant and the sparse FISTA product (no
``k x k`` statistics).
Reported: seconds per step, the speed-up over the baseline, and the fitted exponent of time
against units for each (targets: at most 1.1 for the gradient update, at least 5x at 16k).
"""
from __future__ import annotations

import torch

from structlearn.bench import Benchmark, Context, Result, Target, fit_exponent
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding

BATCH = 256
VARIANTS = {"bcd_exact": {}, "bcd_sparse_power": {"stats": "sparse", "lipschitz": "power", "fista_product": "sparse"},
            "usage_power": {"dict_update": "usage", "lipschitz": "power", "fista_product": "sparse"}}


def units_rows(ctx: Context) -> list[Result]:
    d = ctx.pick(576, 576, 36)
    units = ctx.pick((1024, 2048, 4096, 8192, 16384), (512, 1024, 2048), (32, 64))
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rows = []
    for k in units:
        g = ctx.generator(f"linear_cost/{k}")
        x = torch.randn(BATCH, d, generator=g).to(ctx.device)
        objs = {}
        for name, opts in VARIANTS.items():
            layer = DenseLayer(d, k, generator=torch.Generator().manual_seed(k), device=ctx.device)
            objs[name] = SparseCoding(layer, lam=1.0, n_iter=30, generator=torch.Generator().manual_seed(1), **opts)
            objs[name].train_step(x)  # past the first (exact) Lipschitz call and the random start
        repeat = 1 if k >= 8192 else ctx.repeat
        base = None
        for name in ("usage_power", "bcd_sparse_power"):
            ours, base_t = ctx.time_pair(lambda o=objs[name]: o.train_step(x), lambda: objs["bcd_exact"].train_step(x),
                                         repeat=repeat, warmup=0 if k >= 8192 else 1)
            assert base_t is not None
            base = base_t if base is None or base_t.median < base.median else base
            times[name].append(ours.median)
            rows.append(Result("linear_cost", f"units={k} d={d}: {name}", f"train_step ({name})", "train_step (bcd_exact)",
                               ours, base_t, quality={"units": k}))
        assert base is not None
        times["bcd_exact"].append(base.median)
    for name, ts in times.items():
        p = fit_exponent(units, ts)
        target = Target("exponent", "<=", 1.1) if name == "usage_power" else None
        rows.append(Result("linear_cost", f"exponent of time vs units: {name}", name, None,
                           next(r.ours_timing for r in rows if name in r.case) if name != "bcd_exact" else
                           next(r.baseline_timing for r in rows if r.baseline_timing is not None),
                           target=target, quality={"exponent": p, "seconds_per_step": [round(t, 4) for t in ts]}))
    last = [r for r in rows if r.case.startswith(f"units={units[-1]}") and "usage_power" in r.case]
    if last:
        last[0].target = Target("speedup", ">=", 5.0)
    return rows


BENCHMARK = Benchmark("linear_cost", 12, units_rows,
                      "sparse coding step vs units: bcd vs sparse statistics vs the usage-scaled gradient update")
