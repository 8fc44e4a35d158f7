"""Sharded sparse coding across processes (issue 11): two gloo processes started by the test with
torchrun give the unsharded results."""
import os
import subprocess
import sys

import pytest
import torch

from structlearn.parallel import shard_bounds
from structlearn.testing import sharded_check


def test_shard_bounds_are_torch_chunk_blocks():
    """The blocks are ``torch.chunk``'s (DTensor's ``Shard(0)`` layout, which the sharded
    checkpoints record); a split that leaves a rank without atoms is refused."""
    for k, size in ((10, 3), (96, 2), (7, 7), (7, 3), (1000, 16)):
        spans = [shard_bounds(k, r, size) for r in range(size)]
        chunks = torch.arange(k).chunk(size)
        assert len(chunks) == size
        assert spans == [(int(c[0]), int(c[-1]) + 1) for c in chunks]
    with pytest.raises(ValueError, match="allowed: 0 <= rank < size <= k"):
        shard_bounds(3, 0, 4)
    with pytest.raises(ValueError, match="leave rank 3 of 4 without atoms"):
        shard_bounds(5, 0, 4)


def test_two_processes_match_one(tmp_path):
    """torchrun, 2 ranks, gloo: sharded FISTA equals unsharded FISTA (1e-12 float64, 1e-5
    float32), and 20 training steps of the sharded layer (usage updates, power Lipschitz
    constant, dead-atom re-seeding across shards) give the unsharded atoms (1e-10), with and
    without homeostasis (whose per-atom thresholds match too)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "structlearn.testing.sharded_check", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [(r["start"], r["stop"]) for r in ranks] == [(0, 60), (60, 120)]
    ref = sharded_check.reference()
    z64 = torch.cat([r["z64"] for r in ranks], 1)
    torch.testing.assert_close(z64, ref["z64"], rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cat([r["z32"] for r in ranks], 1), ref["z32"], rtol=0, atol=1e-5)
    assert (z64 != 0).any() and (z64 == 0).any()  # a sparse solution, not a trivial one
    assert (ref["dead_per_half"] > 0).all()  # atoms were re-seeded on both shards
    torch.testing.assert_close(torch.cat([r["weight"] for r in ranks]), ref["weight"], rtol=0, atol=1e-10)
    theta = torch.cat([r["theta_h"] for r in ranks])  # homeostasis: the thresholds' rates averaged over the shards
    assert float(theta.abs().max()) > 0.05
    torch.testing.assert_close(theta, ref["theta_h"], rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([r["weight_h"] for r in ranks]), ref["weight_h"], rtol=0, atol=1e-10)
