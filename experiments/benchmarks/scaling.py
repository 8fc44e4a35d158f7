"""7. Scaling: time per epoch versus input size and number of units; peak memory of a run.

Time per epoch: one :meth:`SparseCoding.train_step` of the default run's settings (batch 256,
FISTA 30 iterations, ``lam = 1``) on whitened-like Gaussian data, median of a few steps, times
the steps of one epoch of the default 50,000 training samples (196). Inputs d in (576, 2304,
4096) (3x3 mosaics of 8x8, 16x16 and ~21x21 tiles) at 1,024 units; units 1k, 2k, 4k, 8k and
16k (full run) at d = 576, and the fitted exponent ``p`` of ``t ~ size^p``. From 4k units on
one step is timed once (8k: ~9 s, 16k: ~33 s on one core), without warm-up from 8k on.

Peak memory: ``structlearn discover`` (the default experiment) in a child process, with the
steps cut to a few and 20 instead of 200 FISTA iterations for the held-out codes (same data,
same layer, same pruning and evaluation sizes), reports its own
peak RSS (``VmHWM`` on Linux; see ``_RSS_CHILD``). The full default run is the separate benchmark
``discover_memory`` (several minutes; run it by name).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile

import torch

from structlearn.bench import Benchmark, Context, Result, Target, fit_exponent
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding

BATCH, N_TRAIN = 256, 50000
STEPS_PER_EPOCH = math.ceil(N_TRAIN / BATCH)

# The child's own peak: VmHWM of /proc/self/status (the high-water mark of this process's
# address space, new at exec). ``getrusage(RUSAGE_SELF).ru_maxrss`` is NOT: Linux carries it
# over from the forked parent across exec, so it reported the benchmark process's 3.5 GiB
# (after the 16k-unit step) as the child's. ru_maxrss stays the fallback off Linux.
_RSS_CHILD = (
    "import resource, sys\n"
    "from structlearn.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "try:\n"
    "    kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])\n"
    "except (OSError, StopIteration):\n"
    "    pass\n"
    "print('PEAK_RSS_KB', kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def step_time(ctx: Context, d: int, units: int, n_steps: int) -> object:
    g = ctx.generator(f"scaling/{d}/{units}")
    side = int(math.isqrt(d))
    shape = (side, side) if side * side == d else (d,)
    layer = DenseLayer(d, units, shape, generator=g, device=ctx.device)
    obj = SparseCoding(layer, lam=1.0, n_iter=30, generator=g)
    x = torch.randn(BATCH, d, generator=g).to(ctx.device)
    kw = {"repeat": 1} if units >= 4096 else {"repeat": n_steps}  # seconds per step: time one
    if units >= 8192:
        kw["warmup"] = 0
    return ctx.time(lambda: obj.train_step(x), **kw)


def discover_peak_rss(overrides: list[str], timeout: float) -> dict:
    """Run ``structlearn discover`` in a child process; its peak RSS in GiB (self and its own children)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", _RSS_CHILD, "discover", "--no-progress", "--wandb", "disabled", "--out", out]
        for o in overrides:
            cmd += ["--set", o]
        env = dict(os.environ, WANDB_MODE="disabled")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")]
    if p.returncode != 0 or not line:
        raise ValueError(f"structlearn discover failed (rc={p.returncode}): {p.stderr[-2000:]}")
    kb_self, kb_child = (int(v) for v in line[-1].split()[1:3])
    return {"peak_rss_gb": kb_self / 2**20, "children_peak_rss_gb": kb_child / 2**20}


def run(ctx: Context) -> list[Result]:
    n_steps = ctx.pick(3, 2, 2)
    rows = []
    series = {
        "input": (ctx.pick((576, 2304, 4096), (576, 2304), (16, 64)), lambda v: (v, ctx.pick(1024, 512, 32))),
        "units": (ctx.pick((1024, 2048, 4096, 8192, 16384), (512, 1024), (32, 64)), lambda v: (ctx.pick(576, 576, 16), v)),
    }
    for name, (values, shape_of) in series.items():
        epoch = []
        for v in values:
            d, units = shape_of(v)
            t = step_time(ctx, d, units, n_steps)
            epoch.append(t.median * STEPS_PER_EPOCH)
            rows.append(Result("scaling", f"{name}: d={d} units={units}", "SparseCoding.train_step x epoch", None, t,
                               quality={"epoch_s": epoch[-1]},
                               notes=f"ours_s is one step (batch {BATCH}); epoch_s = ours_s x {STEPS_PER_EPOCH} steps"))
        p = fit_exponent(values, epoch)
        q = {"exponent": p}
        rows[-1].quality.update(q)
    steps = ctx.pick(10, 4, 2)
    overrides = [f"layers.0.steps={steps}", "layers.0.prune.finetune_steps=2", "checkpoint_every=1000",
                 "layers.0.params.eval_iter=20",
                 f"eval_every={steps}", f"threads={ctx.threads}", f"device={'cpu' if ctx.device.type == 'cpu' else 'cuda'}"]
    if ctx.size != "full":
        overrides += [f"data.n_train={ctx.pick(50000, 5000, 300)}", f"data.n_test={ctx.pick(2000, 200, 50)}",
                      f"layers.0.n_units={ctx.pick(1024, 256, 16)}"]
    mem: dict = {}
    t = ctx.time(lambda: mem.update(discover_peak_rss(overrides, 1800)), repeat=1, warmup=0)
    which = "default" if ctx.size == "full" else "reduced"
    rows.append(Result("scaling", f"discover peak RSS ({which} data and layer, {steps} steps)", "structlearn discover",
                       None, t, target=Target("peak_rss_gb", "<=", 2.0), quality=mem,
                       notes="same data, layer, pruning and evaluation sizes as the default run; "
                             "fewer steps and eval iterations"))
    return rows


def run_full_discover(ctx: Context) -> list[Result]:
    mem: dict = {}
    t = ctx.time(lambda: mem.update(discover_peak_rss([f"threads={ctx.threads}"], 3600)), repeat=1, warmup=0)
    return [Result("discover_memory", "default structlearn discover run", "structlearn discover", None, t,
                   target=Target("peak_rss_gb", "<=", 2.0), quality=mem)]


BENCHMARK = Benchmark("scaling", 7, run, "time per epoch vs input size and units (fitted exponent); discover peak RSS")
