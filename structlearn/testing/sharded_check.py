"""Sharded sparse coding on several processes, for the tests, the benchmark and by hand:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m structlearn.testing.sharded_check OUT
    python -m torch.distributed.run --standalone --nproc_per_node 2 -m structlearn.testing.sharded_check \
        OUT --bench N D K STEPS [atoms|dp]   # seconds per training step -> OUT/bench_<layout>_<P>.json

Every rank (gloo, one thread) draws the same problem from fixed seeds, then writes
``OUT/rank<r>.pt``: its FISTA codes (float64 and float32) for a fixed dictionary, and its atoms
after 20 training steps of :class:`~structlearn.parallel.ShardedSparseCoding` (usage-scaled
updates, warm power Lipschitz constant, dead-atom re-seeding), and again with homeostasis (the
per-atom thresholds, whose rates are averaged over the shards). ``reference(...)`` computes the
same on one process with the unsharded code, for comparison.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

N, D_IN, K, STEPS, LAM = 64, 48, 120, 20, 0.3  # K > 2 D_IN: the unsharded FISTA also goes through D
PARAMS = {"lam": LAM, "n_iter": 40, "dict_update": "usage", "lipschitz": "power", "lipschitz_every": 5,
          "resample_every": 5, "dead_fraction": 0.8}
HOMEOSTASIS = 0.05


def problem() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(K, D_IN, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    batches = [torch.randn(N, D_IN, generator=g, dtype=torch.float64) for _ in range(STEPS)]
    return D, x, batches


def full_layer():
    from structlearn.models.dense import DenseLayer

    return DenseLayer(D_IN, K, generator=torch.Generator().manual_seed(1)).double()


def reference() -> dict[str, torch.Tensor]:
    """The unsharded results: codes and the trained atoms."""
    from structlearn.functional.sparse import fista, lipschitz
    from structlearn.objectives.sparse_coding import SparseCoding

    D, x, batches = problem()
    out = {"z64": fista(x, D, LAM, 100, L=lipschitz(D)), "z32": fista(x.float(), D.float(), LAM, 100, L=lipschitz(D.float()))}
    obj = SparseCoding(full_layer(), generator=torch.Generator().manual_seed(2), **PARAMS)
    dead = torch.zeros(2, dtype=torch.long)  # atoms re-seeded in each half (the two shards of 2 ranks)
    resample = obj._resample_dead_

    def counting(residual: torch.Tensor) -> None:
        u = obj.atom_usage()
        below = u < obj.dead_fraction * u.median()
        dead.add_(torch.stack([below[: K // 2].sum(), below[K // 2:].sum()]))
        resample(residual)

    obj._resample_dead_ = counting  # type: ignore[method-assign]
    for xb in batches:
        obj.train_step(xb)
    out["weight"] = obj.layer.weight.detach().clone()
    out["dead_per_half"] = dead
    obj = SparseCoding(full_layer(), generator=torch.Generator().manual_seed(2), **PARAMS, homeostasis=HOMEOSTASIS)
    for xb in batches:
        obj.train_step(xb)
    out["weight_h"], out["theta_h"] = obj.layer.weight.detach().clone(), obj.log_threshold.clone()
    return out


def bench(out: Path, n: int, d: int, k: int, steps: int, layout: str = "atoms") -> None:
    """Median seconds per training step (global batch ``n``, ``d`` inputs, ``k`` atoms; usage
    updates, power Lipschitz constant, FISTA 30 iterations), one warm-up step, through the
    path ``discover`` takes: one process trains :class:`SparseCoding` itself, several go through
    :class:`~structlearn.parallel.engine.LayerEngine` on a mesh of ``layout`` (``atoms``: the
    atoms split over the ranks; ``dp``: the batch split over replicas of the whole layer)."""
    import json
    import statistics
    import time

    import torch.distributed as dist

    from structlearn.config import ParallelConfig
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives.sparse_coding import SparseCoding
    from structlearn.parallel.engine import LayerEngine
    from structlearn.parallel.mesh import Mesh, init_mesh

    size = dist.get_world_size()
    obj = SparseCoding(DenseLayer(d, k, generator=torch.Generator().manual_seed(1)), lam=1.0, n_iter=30,
                       dict_update="usage", lipschitz="power", generator=torch.Generator().manual_seed(2))
    mesh: Mesh | None = None
    if size > 1:
        mesh = init_mesh(ParallelConfig(dp=size if layout == "dp" else 1, atoms=size if layout == "atoms" else 1), "cpu")
    step = LayerEngine(mesh, obj, n).step if mesh is not None else obj.train_step
    g = torch.Generator().manual_seed(3)
    times = []
    for s in range(steps + 1):
        x = torch.randn(n, d, generator=g)
        dist.barrier()
        t0 = time.perf_counter()
        step(x)
        dist.barrier()
        if s:
            times.append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        (out / f"bench_{layout}_{size}.json").write_text(json.dumps(
            {"size": size, "layout": layout, "n": n, "d": d, "k": k, "seconds": times, "median": statistics.median(times)}))


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    from structlearn.functional.sparse import lipschitz
    from structlearn.parallel import ShardedSparseCoding, shard_bounds, shard_layer, sharded_fista, world

    args = argv if argv is not None else sys.argv[1:]
    out = Path(args[0])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    if len(args) > 1 and args[1] == "--bench":
        try:
            out.mkdir(parents=True, exist_ok=True)
            n, d, k, steps = (int(v) for v in args[2:6])
            bench(out, n, d, k, steps, *args[6:7])
        finally:
            dist.destroy_process_group()
        return 0
    try:
        rank, size = world()
        D, x, batches = problem()
        start, stop = shard_bounds(K, rank, size)
        res = {"rank": rank, "size": size, "start": start, "stop": stop,
               "z64": sharded_fista(x, D[start:stop], LAM, 100, lipschitz(D)),
               "z32": sharded_fista(x.float(), D[start:stop].float(), LAM, 100, lipschitz(D.float()))}
        obj = ShardedSparseCoding(shard_layer(full_layer()), n_units_total=K, generator=torch.Generator().manual_seed(2),
                                  **PARAMS)
        for xb in batches:
            obj.train_step(xb)
        res["weight"] = obj.layer.weight.detach().clone()
        obj = ShardedSparseCoding(shard_layer(full_layer()), n_units_total=K, generator=torch.Generator().manual_seed(2),
                                  **PARAMS, homeostasis=HOMEOSTASIS)
        for xb in batches:
            obj.train_step(xb)
        res["weight_h"], res["theta_h"] = obj.layer.weight.detach().clone(), obj.log_threshold.clone()
        out.mkdir(parents=True, exist_ok=True)
        torch.save(res, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
