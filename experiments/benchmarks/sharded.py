"""14. One layer trained on 2 processes (torchrun, gloo, 1 thread each) against 1 (issue 11).

``structlearn.testing.sharded_check --bench``: sparse coding (usage updates, power Lipschitz
constant, FISTA 30 iterations, ``lam = 1``) at (n, d, k) = (256, 3072, 8192) through
:class:`~structlearn.parallel.engine.LayerEngine` on the two mesh layouts of ``parallel``:
``dp`` (each rank codes half the batch with the whole dictionary; one all-reduce of the
``(k, d)`` gradient per step) and ``atoms`` (each rank holds half the atoms; FISTA all-reduces
the ``(n, d)`` reconstruction every iteration). The baseline is one process training
:class:`~structlearn.objectives.sparse_coding.SparseCoding` as ``discover`` does. Median seconds
per training step after one warm-up step, the three launches alternated.
Target: at least 1.6x. Minutes at full size: run by name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from structlearn.bench import Benchmark, Context, Result, Target, Timing


def launch(nproc: int, shape: tuple[int, int, int], steps: int, out: Path, layout: str = "atoms") -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "structlearn.testing.sharded_check", str(out), "--bench", *(str(v) for v in shape), str(steps), layout]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    if p.returncode != 0:
        raise ValueError(f"torchrun --nproc_per_node {nproc} failed: {p.stderr[-2000:]}")
    return json.loads((out / f"bench_{layout}_{nproc}.json").read_text())["median"]


def run(ctx: Context) -> list[Result]:
    shape = ctx.pick((256, 3072, 8192), (256, 1024, 4096), (32, 16, 64))
    steps = ctx.pick(3, 2, 1)
    base: list[float] = []
    ours: dict[str, list[float]] = {"dp": [], "atoms": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ctx.pick(2, 1, 1)):  # alternate the launches
            base.append(launch(1, shape, steps, Path(tmp)))
            for layout, times in ours.items():
                times.append(launch(2, shape, steps, Path(tmp), layout))
    n, d, k = shape
    names = {"dp": "2 data-parallel replicas (batch split, gradients all-reduced)",
             "atoms": "2 atom shards (FISTA all-reduces the reconstruction)"}
    return [Result("sharded", f"(n, d, k) = ({n}, {d}, {k}): 2 ranks vs 1, {layout}", f"train_step, {names[layout]}",
                   "train_step, 1 process", Timing(times), Timing(base), target=Target("speedup", ">=", 1.6),
                   notes="each launch: median of its timed steps; 1 thread per process; gloo")
            for layout, times in ours.items()]


BENCHMARK = Benchmark("sharded", 14, run, "sparse coding step on 2 processes vs 1 (torchrun, gloo; minutes)",
                      default=False)
