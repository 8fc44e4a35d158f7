"""The accelerator checks of issue 11 that the benchmark table does not cover, in one short run:

    python experiments/gpu_checks.py --device cuda --out OUT       # on a GPU machine (about a minute)
    structlearn bench --device cuda --json OUT/bench_cuda.json      # the full table (FISTA's share of peak)
    python experiments/gpu_checks.py --device cpu --quick --out OUT   # the same code on tiny sizes

1. **Host reads per training step**: a sparse-coding step on the device, for the default
   block-coordinate update, its sparse statistics with the power Lipschitz constant, the usage
   update and homeostasis. Counted two ways: every tensor-to-host conversion but the host-side
   step counters (:mod:`structlearn.testing.host_reads`, as the test
   ``test_a_training_step_reads_the_device_a_fixed_few_times`` counts them), and on CUDA every
   synchronising call that ``torch.cuda.set_sync_debug_mode("warn")`` reports (which also sees
   implicit ones: a boolean-mask index, ``nonzero``, ``to_sparse``). The counts must not grow with
   FISTA's iterations: each configuration runs at two iteration counts.
2. **Whitening on the device**: ZCA fitted and applied in blocks on the device against the
   one-piece float64 fit on the CPU (max abs difference of the whitening matrix, relative).
3. **One epoch at (d, k) = (3072, 12288)**: 50,000 samples of 3072 values (32 x 32 RGB) on the
   device once, batches of 256, usage updates and the power Lipschitz constant, float32;
   seconds for the epoch (196 steps) and per step. ``--quick``: (48, 192), 2,000 samples.
4. **Devices**: how many GPUs torch sees; with more than one, the 2-GPU run is
   ``structlearn discover experiments/whole_images_64.yaml --nproc 2`` (NCCL, atoms sharded).

Writes ``OUT/gpu_checks.json`` (atomically) and prints it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

CONFIGS = {
    "bcd, exact L (default)": {},
    "bcd, sparse stats, power L": {"stats": "sparse", "lipschitz": "power"},
    "usage, power L": {"dict_update": "usage", "lipschitz": "power"},
    "usage, power L, homeostasis": {"dict_update": "usage", "lipschitz": "power", "homeostasis": 0.02},
}


@contextlib.contextmanager
def counting_syncs(device: torch.device) -> Iterator[dict[str, int]]:
    """On CUDA, every sync that ``torch.cuda.set_sync_debug_mode("warn")`` warns about inside
    (the conversions are counted by :func:`structlearn.testing.host_reads.counting_reads`)."""
    counts = {"conversions": 0, "cuda_syncs": 0}
    cuda = device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    counts["cuda_syncs"] = sum("synchroniz" in str(w.message) for w in caught)


def host_reads(device: torch.device, quick: bool) -> dict[str, Any]:
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives.sparse_coding import SparseCoding
    from structlearn.testing.host_reads import counting_reads, host_counters

    n, d, k = (32, 16, 48) if quick else (256, 576, 2304)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    out: dict[str, Any] = {"shape (n, d, k)": [n, d, k]}
    for name, params in CONFIGS.items():
        row = {}
        for n_iter in (10, 40):
            layer = DenseLayer(d, k, generator=torch.Generator().manual_seed(1), device=device)
            obj = SparseCoding(layer, lam=0.5, n_iter=n_iter, resample_every=0, **params)
            for _ in range(3):  # past the first steps' exact Lipschitz constant and warm-up
                obj.train_step(x)
            with counting_syncs(device) as c, counting_reads(skip=host_counters(obj)) as reads:
                obj.train_step(x)
            row[f"n_iter={n_iter}"] = {**c, "conversions": len(reads)}
        out[name] = row
    return out


def zca_parity(device: torch.device, quick: bool) -> dict[str, Any]:
    from structlearn.data.whiten import ZCA

    n, d = (600, 64) if quick else (16384, 2304)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, d, generator=g) @ (torch.randn(d, d, generator=g) / d ** 0.5) + 0.1 * torch.randn(n, d, generator=g)
    ref = ZCA(d, floor=0.1).fit(x)
    t0 = time.perf_counter()
    dev = ZCA(d, floor=0.1).fit(x, device)
    y = dev(x, device)
    fit_s = time.perf_counter() - t0
    scale = float(ref.matrix.abs().max())
    return {"shape (n, d)": [n, d], "seconds (fit + whiten on the device)": fit_s,
            "max |W_device - W_cpu| / max |W|": float((dev.matrix - ref.matrix).abs().max()) / scale,
            "max |whitened difference|": float((y - ref(x)).abs().max())}


def epoch(device: torch.device, quick: bool) -> dict[str, Any]:
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives.sparse_coding import SparseCoding

    n_samples, d, k, batch = (2000, 48, 192, 256) if quick else (50000, 3072, 12288, 256)
    g = torch.Generator().manual_seed(3)
    data = torch.randn(n_samples, d, generator=g).to(device)  # on the device once
    layer = DenseLayer(d, k, generator=torch.Generator().manual_seed(4), device=device)
    obj = SparseCoding(layer, lam=1.0, n_iter=30, dict_update="usage", lipschitz="power")
    order = torch.randperm(n_samples, generator=g).to(device)
    obj.train_step(data[order[:batch]])  # warm-up (kernels, the first exact L)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    steps = 0
    for i in range(0, n_samples - batch + 1, batch):
        obj.train_step(data[order[i : i + batch]])
        steps += 1
    sync()
    seconds = time.perf_counter() - t0
    loss = float(obj.loss(data[:batch]))
    return {"(n_samples, d, k, batch)": [n_samples, d, k, batch], "steps": steps, "epoch_s": seconds,
            "step_s": seconds / steps, "held loss (finite)": loss}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_checks.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of the same code)")
    args = p.parse_args(argv)
    from structlearn.io import atomic_write_text
    from structlearn.runtime import resolve_device

    device = torch.device(resolve_device(args.device))
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "gpus": torch.cuda.device_count(), "torch": torch.__version__, "quick": args.quick,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "host_reads": host_reads(device, args.quick), "zca": zca_parity(device, args.quick),
              "epoch": epoch(device, args.quick)}
    if result["gpus"] > 1:
        result["multi_gpu"] = "structlearn discover experiments/whole_images_64.yaml --nproc 2"
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    atomic_write_text(args.out / "gpu_checks.json", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
