"""12. Sparse coding at linear cost in the number of units (issue 11), side by side in one run.

Units. One :meth:`SparseCoding.train_step` (batch 256, FISTA 30 iterations, ``lam = 1``, the
settings of ``scaling``) at d = 576 and 1k..16k units, for three updates timed interleaved on
the same batch: the block-coordinate update with exact Lipschitz constant (today's default, the
baseline), the same with sparse ``z^T z`` statistics and the warm power-iteration constant, and
the usage-scaled projected-gradient update with the power constant (no ``k x k`` statistics).
Reported: seconds per step, the speed-up over the baseline, and the fitted exponent of time
against units for each (targets: at most 1.1 for the gradient update, at least 5x at 16k).

Convergence. The held-out LASSO objective (500 held-out whitened 24 x 24 patches of the
bundled images, codes by float64 FISTA, :func:`_common.lasso_eval`) of the block-coordinate
update after ``S`` steps of batch 256, against the gradient updates run for up to ``3 S``
steps: the samples each needs to come within 1% of the block-coordinate value (target: at most
3x), at 256, 1024 and 4096 units.
"""
from __future__ import annotations

import math

import torch

from structlearn.bench import Benchmark, Context, Result, Target, fit_exponent, time_call
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding

from ._common import lasso_eval, whitened_patches

BATCH = 256
VARIANTS = {"bcd_exact": {}, "bcd_sparse_power": {"stats": "sparse", "lipschitz": "power"},
            "usage_power": {"dict_update": "usage", "lipschitz": "power"}}


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


def convergence_rows(ctx: Context) -> list[Result]:
    patch = ctx.pick(24, 24, 6)
    train, test = whitened_patches(ctx, patch, ctx.pick(50000, 20000, 2000), ctx.pick(500, 300, 100))
    steps = ctx.pick(300, 120, 20)
    checks = 12  # evaluations of the gradient runs, spread over 3 S steps
    rows = []
    for k in ctx.pick((256, 1024, 4096), (256, 1024), (32,)):
        def train_run(opts, n_steps, every):
            g = ctx.generator(f"linear_cost/conv/{k}")
            layer = DenseLayer(patch * patch, k, generator=torch.Generator().manual_seed(k), device=ctx.device)
            obj = SparseCoding(layer, lam=1.0, n_iter=30, generator=torch.Generator().manual_seed(1), **opts)
            curve = []
            for s in range(1, n_steps + 1):
                obj.train_step(train[torch.randint(train.shape[0], (BATCH,), generator=g)].to(ctx.device))
                if s % every == 0:
                    curve.append((s * BATCH, lasso_eval(test, layer.effective_weight().detach(), 1.0)["objective"]))
            return curve

        t_bcd = time_call(lambda: train_run({}, steps, steps), device=ctx.device, repeat=1, warmup=0)
        bcd = t_bcd.last[-1]
        for upd in ("usage", "adam", "sgd"):
            t_ours = time_call(lambda: train_run({"dict_update": upd, "lipschitz": "power"}, 3 * steps,
                                                 max(1, 3 * steps // checks)), device=ctx.device, repeat=1, warmup=0)
            curve = t_ours.last
            reach = next((n for n, v in curve if v <= 1.01 * bcd[1]), None)
            ratio = reach / bcd[0] if reach is not None else math.inf
            rows.append(Result("linear_cost", f"convergence units={k}: {upd} vs bcd", f"{upd} ({3 * steps} steps)",
                               f"bcd ({steps} steps)", t_ours, t_bcd, target=Target("samples_ratio", "<=", 3.0),
                               quality={"samples_ratio": ratio, "bcd_objective": bcd[1],
                                        "best_objective": min(v for _, v in curve),
                                        "curve": [(n, round(v, 5)) for n, v in curve]},
                               notes="ours_s / baseline_s: whole training runs (not interleaved); samples_ratio: "
                                     "samples to within 1% of bcd's held-out objective / bcd's samples (inf: never)"))
    return rows


def run(ctx: Context) -> list[Result]:
    return units_rows(ctx) + convergence_rows(ctx)


BENCHMARK = Benchmark("linear_cost", 12, run,
                      "sparse coding per step vs units (bcd vs sparse stats vs gradient updates); convergence per sample")
