"""``experiments/gpu_checks.py`` (the accelerator checks of issue 11, run on a GPU when one is
lent) runs its own code on the CPU at tiny sizes: the block-wise ZCA it compares on the device
equals the one-piece fit, a training step reads the host a fixed few times whatever FISTA's
iteration count (the host-side counters skipped, as in the hot-path test), and the epoch loop visits every full batch."""
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_checks_run_on_the_cpu(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import gpu_checks
    finally:
        sys.path.pop(0)
    assert gpu_checks.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert res["zca"]["max |W_device - W_cpu| / max |W|"] <= 1e-12
    assert res["zca"]["max |whitened difference|"] <= 1e-5
    for name in gpu_checks.CONFIGS:
        row = res["host_reads"][name]
        counts = [row[f"n_iter={i}"]["conversions"] for i in (10, 40)]
        assert max(counts) <= 4, (name, counts)  # not one per FISTA iteration (10 or 40)
        assert all(row[k]["cuda_syncs"] == 0 for k in row)  # no CUDA here
    exact = res["host_reads"]["bcd, exact L (default)"]
    assert exact["n_iter=10"]["conversions"] == exact["n_iter=40"]["conversions"] == 2  # FISTA's step, the live atoms
    assert res["epoch"]["steps"] == 2000 // 256
    assert math.isfinite(res["epoch"]["held loss (finite)"])
