"""13. Convergence per sample of the linear-cost dictionary updates (issue 11).

The held-out LASSO objective (held-out whitened 24 x 24 patches of the bundled images, codes by
float64 FISTA, :func:`_common.lasso_eval`) of the block-coordinate update after ``S`` steps of
batch 256, against the projected-gradient updates (usage-scaled, Adam, SGD; warm power
Lipschitz constant) run for up to ``3 S`` steps: the samples each needs to come within 1% of the
block-coordinate value (target: at most 3x), at 256, 1024 and 4096 units. Whole training runs
are timed once each (not interleaved). Tens of minutes at full size: run by name. One case
alone (e.g. the 4096-unit row at the quick data size, about half an hour on one core):

    python -m experiments.benchmarks.linear_convergence --size quick --units 4096 --updates usage
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from structlearn.bench import Benchmark, Context, Result, Target, time_call
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding

from ._common import lasso_eval, whitened_patches

BATCH = 256


UPDATES = ("usage", "adam", "sgd")


def convergence_rows(ctx: Context, units: tuple[int, ...] | None = None, updates: tuple[str, ...] = UPDATES) -> list[Result]:
    patch = ctx.pick(24, 24, 6)
    train, test = whitened_patches(ctx, patch, ctx.pick(50000, 20000, 2000), ctx.pick(500, 300, 100))
    steps = ctx.pick(300, 120, 20)
    checks = 12  # evaluations of the gradient runs, spread over 3 S steps
    rows = []
    for k in units or ctx.pick((256, 1024, 4096), (256, 1024), (32,)):
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
        for upd in updates:
            t_ours = time_call(lambda: train_run({"dict_update": upd, "lipschitz": "power"}, 3 * steps,
                                                 max(1, 3 * steps // checks)), device=ctx.device, repeat=1, warmup=0)
            curve = t_ours.last
            reach = next((n for n, v in curve if v <= 1.01 * bcd[1]), None)
            ratio = reach / bcd[0] if reach is not None else math.inf
            rows.append(Result("linear_convergence", f"convergence units={k}: {upd} vs bcd", f"{upd} ({3 * steps} steps)",
                               f"bcd ({steps} steps)", t_ours, t_bcd, target=Target("samples_ratio", "<=", 3.0),
                               quality={"samples_ratio": ratio, "bcd_objective": bcd[1],
                                        "best_objective": min(v for _, v in curve),
                                        "curve": [(n, round(v, 5)) for n, v in curve]},
                               notes="ours_s / baseline_s: whole training runs (not interleaved); samples_ratio: "
                                     "samples to within 1% of bcd's held-out objective / bcd's samples (inf: never)"))
    return rows


BENCHMARK = Benchmark("linear_convergence", 13, convergence_rows,
                      "held-out objective per sample: gradient dictionary updates vs bcd (minutes)", default=False)


def main(argv: list[str] | None = None) -> int:
    """Some cases of the benchmark alone; prints their rows as JSON."""
    p = argparse.ArgumentParser(description="convergence per sample of the gradient dictionary updates, some cases")
    p.add_argument("--size", default="full", choices=("full", "quick", "tiny"))
    p.add_argument("--units", type=int, nargs="+", required=True)
    p.add_argument("--updates", nargs="+", default=list(UPDATES), choices=UPDATES)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = convergence_rows(Context(size=args.size, threads=args.threads), tuple(args.units), tuple(args.updates))
    print(json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
