"""11. The default discover under CPU contention, per thread policy (issue 12; minutes; run by name).

The default ``structlearn discover`` cut to 80 + 30 steps and 10,000 training mosaics runs as a
subprocess, once on a quiet machine and once beside one busy-loop process per core (a CPU hog
holding every core), for each thread policy:

- ``torch default``: torch's own thread count (the core count) with libgomp's default active
  wait (its threads spin at every barrier: on an oversubscribed machine they burn the time
  slices the other threads need);
- ``1 thread``;
- ``passive wait``: the core count with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
- ``short spin``: the core count with ``GOMP_SPINCOUNT=10000`` (spin briefly, then sleep).

Reported: seconds contended (ours) and quiet (the baseline column); the ratio column is quiet / contended (target:
at least 0.5, i.e. a slowdown of at most 2x); ``quiet_vs_default`` is the quiet time against
the torch default's quiet time (target: at most 1.10). The two sides of a policy run back to
back; the hogs are killed after each contended run. Numbers do not depend on the wait policy
(only on the thread count), so a wait policy changes no result.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from structlearn.bench import Benchmark, Context, Result, Target, Timing

POLICIES = {
    "torch default": ({}, 0),
    "1 thread": ({}, 1),
    "passive wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "short spin": ({"GOMP_SPINCOUNT": "10000"}, 0),
}
HOG = "while True: pass"


def reduced_discover(env_extra: dict[str, str], threads: int, steps: int, finetune: int, n_train: int) -> float:
    """Wall seconds of one reduced default discover in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "structlearn.cli", "discover", "--wandb", "disabled", "--no-progress", "--out", out,
               "--set", f"threads={threads}", "--set", f"layers.0.steps={steps}",
               "--set", f"layers.0.prune.finetune_steps={finetune}", "--set", f"data.n_train={n_train}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return time.perf_counter() - t0


def run(ctx: Context) -> list[Result]:
    steps, finetune, n_train = ctx.pick((80, 30, 10000), (30, 10, 4000), (3, 1, 600))
    cores = os.cpu_count() or 1
    quiet: dict[str, float] = {}
    rows = []
    for name, (env_extra, threads) in POLICIES.items():
        quiet[name] = reduced_discover(env_extra, threads, steps, finetune, n_train)
        hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cores)]
        try:
            time.sleep(0.5)
            busy = reduced_discover(env_extra, threads, steps, finetune, n_train)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        rows.append(Result(
            "contention", name, f"{name}, beside {cores} busy loops", f"{name}, quiet", Timing([busy]), Timing([quiet[name]]),
            target=Target("speedup", ">=", 0.5),
            quality={"quiet_s": round(quiet[name], 1), "contended_s": round(busy, 1), "slowdown": round(busy / quiet[name], 2),
                     "quiet_vs_default": round(quiet[name] / quiet["torch default"], 3)},
            notes=f"default discover cut to {steps}+{finetune} steps, {n_train} mosaics; env {env_extra or '-'}, "
                  f"threads {threads or 'torch default'}"))
    return rows


BENCHMARK = Benchmark("contention", 11, run, "default discover beside a CPU hog on every core, per thread policy (minutes)",
                      default=False)
