"""`structlearn discover` on several processes (issue 11): torchrun with gloo, started by the
tests (`--nproc 2`, or `python -m torch.distributed.run` directly).

- two processes sharding the atoms train the one-process layer (float64, to rounding), through
  pruning and fine-tuning, and rank 0 alone writes the run folder and the W&B run;
- world size 1 under torchrun is today's single-process path, byte for byte;
- data-parallel RICA and MCR^2 equal one process on the same global batches;
- an interrupted 2-process run resumes bit-identically on 2 processes and within rounding on 1,
  and a 1-process checkpoint resumes on 2;
- a killed rank ends the run within seconds with a clear message, and the run then resumes;
  a hung one ends it after ``parallel.timeout_s``;
- settings that cannot split are refused before any file is written.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from structlearn.parallel.engine import LayerEngine
from structlearn.parallel.mesh import Mesh, mesh_shape

TINY = """
name: dist
seed: 3
dtype: float64
threads: 1
eval_every: 20
checkpoint_every: 10
wandb: disabled
data: {grid: [2, 2], tile: [4, 4], n_train: 2000, n_test: 200}
layers:
  - n_units: 96
    steps: 150
    batch_size: 64
    params: {lam: 0.5, n_iter: 20, eval_iter: 50, dict_update: usage, lipschitz: power, resample_every: 10}
    prune: {threshold: 0.1, finetune_steps: 20, finetune_params: {lam: 0.3}}
"""

RICA = """
name: dist_rica
seed: 1
dtype: float64
threads: 1
eval_every: 20
wandb: disabled
data: {grid: [2, 2], tile: [4, 4], n_train: 2000, n_test: 200, zca_floor: 0.001}
parallel: {dp: 2}
layers:
  - n_units: 64
    objective: rica
    steps: 40
    batch_size: 64
    params: {lam: 0.1, lr: 0.01}
    prune: {threshold: 0.1, finetune_steps: 20}
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def start(args: list[str], cwd: Path, torchrun: int | None = None) -> subprocess.Popen:
    """``structlearn discover ARGS --no-progress --no-html``, or the same under ``torchrun``
    with ``torchrun`` processes."""
    head = [sys.executable, "-m", "structlearn"] if torchrun is None else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun), "-m", "structlearn"]
    return subprocess.Popen([*head, "discover", *args, "--no-progress", "--no-html"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)


def finish(p: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"hung past {timeout} s: {err[-3000:]}") from None
    return p.returncode, out, err


def run(args: list[str], cwd: Path, torchrun: int | None = None) -> tuple[str, str]:
    rc, out, err = finish(start(args, cwd, torchrun))
    assert rc == 0, err[-3000:]
    return out, err


def folder(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # one run folder, made by rank 0 alone
    return runs[0]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "layer0.pt")


def wait_for_checkpoint(p: subprocess.Popen, base: Path) -> Path:
    """Read stderr until rank 0 names the run folder (relative to ``base``), then wait for its
    first checkpoint (sharded or single-process)."""
    assert p.stderr is not None
    for line in p.stderr:
        if line.startswith("run folder: "):
            run_dir = base / line.split(": ", 1)[1].strip()
            break
    else:
        raise AssertionError(f"no run folder announced; exit {p.wait()}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run_dir / "checkpoint" / "latest").is_file() or (run_dir / "checkpoint.pt").is_file():
            return run_dir
        time.sleep(0.05)
    raise AssertionError("no checkpoint within 120 s")


def rank_pids(marker: str, rank: int) -> list[int]:
    """Processes whose command line holds ``marker`` and whose environment says ``RANK=rank``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmd and f"RANK={rank}".encode() in env:
            found.append(int(d.name))
    return found


def assert_same_layer(one: Path, other: Path) -> None:
    """``other``'s run trained ``one``'s layer: the same pruning mask, weights to 1e-12 (float64),
    the same held-out summary."""
    a, b = weights(one), weights(other)
    assert torch.equal(a["mask"], b["mask"]) and 0.3 < a["mask"].double().mean() < 0.95  # pruned, identically
    torch.testing.assert_close(b["weight"], a["weight"], rtol=0, atol=1e-12)
    sa, sb = json.loads((one / "summary.json").read_text()), json.loads((other / "summary.json").read_text())
    for k in ("density", "tile_purity_mean", "recon_rel_error", "loss"):
        assert sb[k] == pytest.approx(sa[k], rel=1e-9, abs=1e-12), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Uninterrupted runs of TINY: one process, and two (W&B offline) sharding the atoms."""
    base = tmp_path_factory.mktemp("dist")
    (base / "tiny.yaml").write_text(TINY)
    run(["tiny.yaml", "--out", "one"], base)
    out, err = run(["tiny.yaml", "--out", "two", "--wandb", "offline", "--nproc", "2"], base)
    return {"base": base, "one": folder(base / "one"), "two": folder(base / "two"), "stdout_two": out}


def test_two_processes_train_the_one_process_layer_and_only_rank_0_writes(reference):
    one, two = reference["one"], reference["two"]
    assert_same_layer(one, two)
    # rank 0 alone: the same files as one process (a sharded checkpoint instead of checkpoint.pt),
    # one W&B run, one summary printed
    extra = {"checkpoint", "checkpoint.pt", "wandb", "wandb_id.txt", "architecture.json", "architecture_kernels.pt"}
    files = [{p.name for p in d.iterdir()} - extra for d in (one, two)]  # (the architecture files: W&B's model artifact)
    assert files[1] == files[0]
    assert (two / "checkpoint" / "latest").is_file() and not (two / "checkpoint.pt").exists()
    assert len([p for p in (two / "wandb").iterdir() if p.name.startswith("offline-run-")]) == 1
    assert reference["stdout_two"].count('"tile_purity_mean"') == 1


def test_data_parallel_sparse_coding_trains_the_one_process_layer(reference, tmp_path):
    """``parallel.dp=2``: each replica codes half of every batch with the whole dictionary
    (one all-reduce of the gradient per step) and half of every evaluation's rows; the layer,
    its pruning and its held-out metrics are the one-process run's, to rounding."""
    shutil.copy(reference["base"] / "tiny.yaml", tmp_path)
    run(["tiny.yaml", "--out", "dp", "--nproc", "2", "--set", "parallel.dp=2"], tmp_path)
    assert_same_layer(reference["one"], folder(tmp_path / "dp"))


@pytest.mark.slow  # two runs (14 s)
def test_world_size_one_under_torchrun_is_todays_path(reference, tmp_path):
    shutil.copy(reference["base"] / "tiny.yaml", tmp_path)
    run(["tiny.yaml", "--out", "solo", "--set", "layers.0.steps=40"], tmp_path, torchrun=1)
    run(["tiny.yaml", "--out", "plain", "--set", "layers.0.steps=40"], tmp_path)
    solo, plain = folder(tmp_path / "solo"), folder(tmp_path / "plain")
    for name in ("layer0.pt", "layer0_dense.pt", "checkpoint.pt"):
        assert (solo / name).read_bytes() == (plain / name).read_bytes(), name
    assert not (solo / "checkpoint").exists()


@pytest.mark.slow  # an interrupted 2-process run, resumed on 2 and on 1 (35 s; the default suite's longest test)
def test_interrupted_run_resumes_on_two_processes_exactly_and_on_one(reference):
    base = reference["base"]
    p = start(["tiny.yaml", "--out", "cut", "--nproc", "2"], base)
    run_dir = wait_for_checkpoint(p, base)
    os.kill(p.pid, signal.SIGTERM)  # the launcher passes it on; every rank stops at the same step boundary
    rc, _, err = finish(p)
    assert rc != 0 and "checkpoint saved at the step boundary" in err and "--nproc 2" in err
    meta = torch.load(next((run_dir / "checkpoint").glob("*/meta.pt")))
    assert 0 < meta["step"] < 150 and not (run_dir / "layer0.pt").exists()  # stopped mid-training
    copy = base / "cut_copy" / run_dir.name
    shutil.copytree(run_dir, copy)
    run(["--resume", str(run_dir), "--nproc", "2"], base)
    assert torch.equal(weights(run_dir)["weight"], weights(reference["two"])["weight"])  # bit for bit
    run(["--resume", str(copy)], base)  # 2 -> 1: DCP reshards into one process
    torch.testing.assert_close(weights(copy)["weight"], weights(reference["one"])["weight"], rtol=0, atol=1e-12)
    assert (copy / "checkpoint.pt").is_file() and not (copy / "checkpoint").exists()  # the newer kind only


@pytest.mark.slow  # a 1-process run interrupted, then 2 processes (25 s)
def test_one_process_checkpoint_resumes_on_two(reference):
    base = reference["base"]
    p = start(["tiny.yaml", "--out", "cut1"], base)
    run_dir = wait_for_checkpoint(p, base)
    os.kill(p.pid, signal.SIGTERM)
    rc, _, err = finish(p)
    assert rc == 130, err[-2000:]
    assert 0 < torch.load(run_dir / "checkpoint.pt")["step"] < 150
    run(["--resume", str(run_dir), "--nproc", "2"], base)
    torch.testing.assert_close(weights(run_dir)["weight"], weights(reference["one"])["weight"], rtol=0, atol=1e-12)


@pytest.mark.slow  # a killed run and its resumption (31 s)
def test_killed_rank_ends_the_run_with_a_clear_error_and_it_resumes(reference):
    base = reference["base"]
    p = start(["tiny.yaml", "--out", "killed", "--nproc", "2"], base)
    run_dir = wait_for_checkpoint(p, base)
    victims = rank_pids("killed", 1)
    assert victims, "rank 1 not found"
    t0 = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    rc, _, err = finish(p, timeout=120)
    assert rc != 0 and time.monotonic() - t0 < 60
    assert "lost contact with the other processes" in err and f"--resume {run_dir.relative_to(base)}" in err
    run(["--resume", str(run_dir), "--nproc", "2"], base)  # the last checkpoint is whole
    assert torch.equal(weights(run_dir)["weight"], weights(reference["two"])["weight"])


@pytest.mark.slow  # waits for the timeout and torchrun's 30 s grace period (about 40 s)
def test_hung_rank_times_out(reference):
    base = reference["base"]
    p = start(["tiny.yaml", "--out", "hung", "--set", "parallel.timeout_s=5", "--nproc", "2"], base)
    wait_for_checkpoint(p, base)
    for pid in rank_pids("hung", 1):
        os.kill(pid, signal.SIGSTOP)
    rc, _, err = finish(p, timeout=120)
    assert rc != 0 and "lost contact with the other processes" in err and "parallel.timeout_s=5" in err


@pytest.mark.slow  # four runs (40 s)
@pytest.mark.parametrize("objective", ["rica", "mcr2_sparse"])
def test_data_parallel_gradient_objectives_equal_one_process(tmp_path, objective):
    """RICA all-reduces its batch-mean gradient; MCR^2 (not separable over samples) its Gram
    matrices, each replica augmenting the global batch and keeping its own sources."""
    sets = [] if objective == "rica" else ["--set", "layers.0.objective=mcr2_sparse", "--set", "layers.0.params={lr: 0.01}",
                                           "--set", "layers.0.n_units=32", "--set", "layers.0.steps=30"]
    (tmp_path / "rica.yaml").write_text(RICA)
    run(["rica.yaml", "--out", "dp", "--nproc", "2", *sets], tmp_path)
    run(["rica.yaml", "--out", "one", *sets], tmp_path)  # parallel.dp has no effect on one process
    a, b = weights(folder(tmp_path / "one")), weights(folder(tmp_path / "dp"))
    assert torch.equal(a["mask"], b["mask"]) and not bool(a["mask"].all())
    torch.testing.assert_close(b["weight"], a["weight"], rtol=0, atol=1e-12)


def test_what_cannot_split_is_refused_before_any_file(tmp_path):
    (tmp_path / "rica.yaml").write_text(RICA)
    rc, _, err = finish(start(["rica.yaml", "--out", "x", "--set", "layers.0.params.optimizer=lbfgs", "--nproc", "2"],
                              tmp_path))
    assert rc != 0 and err.count("has no batch-mean statistics") == 1 and "allowed: parallel.dp=1" in err
    assert not (tmp_path / "x").exists()


def fake_mesh(size: int, dp: int) -> Mesh:
    return Mesh(0, size, dp, size // dp, torch.device("cpu"), None)


def test_mesh_shape_and_layer_checks():
    from structlearn.config import ParallelConfig
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives import OBJECTIVES

    assert mesh_shape(ParallelConfig(), 4) == (1, 4) and mesh_shape(ParallelConfig(dp=2), 4) == (2, 2)
    with pytest.raises(ValueError, match="allowed: dp x atoms = 4"):
        mesh_shape(ParallelConfig(dp=3), 4)
    layer = DenseLayer(16, 10)
    cases = [
        (fake_mesh(2, 1), OBJECTIVES.create("sparse_coding", layer), 64, "needs a gradient dictionary update"),
        (fake_mesh(2, 1), OBJECTIVES.create("rica", DenseLayer(16, 10)), 64, "shards the atoms of sparse_coding only"),
        (fake_mesh(4, 1), OBJECTIVES.create("sparse_coding", DenseLayer(16, 5), dict_update="usage"), 64,
         "without atoms"),
        (fake_mesh(2, 2), OBJECTIVES.create("rica", DenseLayer(16, 10)), 63, "allowed: a multiple of 2"),
        (fake_mesh(2, 2), OBJECTIVES.create("rica", DenseLayer(16, 10), optimizer="lbfgs"), 64, "allowed: parallel.dp=1"),
        (fake_mesh(2, 2), OBJECTIVES.create("mcr2", DenseLayer(16, 10, (4, 4)), partition="labels"), 64,
         "takes params.partition 'augment'"),
    ]
    for mesh, obj, batch, msg in cases:
        with pytest.raises(ValueError, match=msg):
            LayerEngine.check(mesh, obj, batch)
    LayerEngine.check(fake_mesh(2, 2), OBJECTIVES.create("sparse_coding", DenseLayer(16, 10)), 64)  # dp: BCD's A, B average
