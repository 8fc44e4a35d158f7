"""Fault injection with real signals (issue 12): `structlearn discover` is interrupted by SIGINT,
SIGTERM or SIGKILL at random times (training, pruning rounds, fine-tuning, evaluation,
checkpoint writes, the second layer), resumed with `--resume` until it finishes, and must then
equal an uninterrupted run bit for bit: summary.json without timings, every layer<i>.pt, and
metrics.jsonl. Also: two writers on one folder, a corrupt or truncated checkpoint, a read-only
output folder."""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = """
name: faults
seed: 3
threads: 1
wandb: disabled
eval_every: 9
checkpoint_every: 7
data: {grid: [2, 2], tile: [4, 4], n_train: 3000, n_test: 200}
layers:
  - n_units: 24
    objective: sparse_coding
    params: {lam: 0.5, n_iter: 15, eval_iter: 30}
    steps: 40
    batch_size: 64
    prune: {method: imp, density: 0.3, rounds: 2, finetune_steps: 15, finetune_params: {lam: 0.3}}
  - n_units: 12
    objective: rica
    params: {lam: 0.5, lr: 0.003}
    steps: 25
    batch_size: 64
    prune: {method: magnitude, density: 0.5, finetune_steps: 10}
"""


def discover(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "structlearn.cli", "discover", *args, "--no-progress"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_run_folder(p: subprocess.Popen) -> tuple[Path, float]:
    """Read stderr until the run folder is announced (training starts): (folder, time)."""
    assert p.stderr is not None
    for line in p.stderr:
        if line.startswith("run folder: "):
            return Path(line.split(": ", 1)[1].strip()), time.monotonic()
    raise AssertionError(f"no run folder announced; exit {p.wait()}")


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k != "seconds"}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def outputs(run: Path) -> dict:
    layers = {p.name: torch.load(p, weights_only=True) for p in sorted(run.glob("layer[0-9].pt"))}
    return {"summary": strip(json.loads((run / "summary.json").read_text())),
            "metrics": (run / "metrics.jsonl").read_text(), "layers": layers}


def same(a: dict, b: dict) -> None:
    assert a["summary"] == b["summary"]
    assert a["metrics"] == b["metrics"]
    assert a["layers"].keys() == b["layers"].keys() and len(a["layers"]) == 2
    for name in a["layers"]:
        for k in ("weight", "mask"):
            assert torch.equal(a["layers"][name][k], b["layers"][name][k]), (name, k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    (root / "tiny.yaml").write_text(TINY)
    p = discover(["tiny.yaml", "--out", "ref"], root)
    run, t0 = wait_for_run_folder(p)
    assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    return root, root / run if not run.is_absolute() else run, time.monotonic() - t0


def interrupt_until_done(root: Path, sig: signal.Signals, training_s: float, rng: random.Random, n: int) -> Path:
    """Start, signal at a random time in the training, resume, ... ``n`` times, then finish."""
    p = discover(["tiny.yaml", "--out", f"run-{sig.name}"], root)
    run, t0 = wait_for_run_folder(p)
    run = run if run.is_absolute() else root / run
    codes = []
    for i in range(n + 1):
        if i < n:
            time.sleep(rng.uniform(0.0, 0.9) * training_s)
            p.send_signal(sig)
        codes.append(p.wait(timeout=300))
        if codes[-1] == 0 or (codes[-1] == -int(sig) and (run / "structure.json").is_file()):
            break  # finished (a signal after the last write ends the process the default way)
        assert codes[-1] == (-9 if sig == signal.SIGKILL else 130), (codes, p.stderr.read() if p.stderr else "")
        p = discover(["--resume", str(run)], root)
        wait_for_run_folder(p)
    else:
        assert p.wait(timeout=300) == 0
    return run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_and_resumed_equals_uninterrupted(reference, sig):
    root, ref, training_s = reference
    run = interrupt_until_done(root, sig, training_s, random.Random(int(sig)), n=3)
    same(outputs(run), outputs(ref))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_many_random_interruptions(reference, seed):
    root, ref, training_s = reference
    rng = random.Random(100 + seed)
    sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
    run = interrupt_until_done(root, sig, training_s, rng, n=6)
    same(outputs(run), outputs(ref))


def test_second_writer_on_one_folder_is_refused(reference):
    root, _, _ = reference
    p = discover(["tiny.yaml", "--out", "two", "--set", "layers.0.steps=2000"], root)  # a long first writer
    run, _ = wait_for_run_folder(p)
    run = run if run.is_absolute() else root / run
    q = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--resume", str(run)], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert p.poll() is None, "the first writer should still be running"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=300) == 130
    assert q.returncode == 2 and "being written by another process" in q.stderr and "Traceback" not in q.stderr
    assert len(q.stderr.strip().splitlines()) == 1
    ck = torch.load(run / "checkpoint.pt", weights_only=True)  # the first writer's checkpoint is intact
    assert ck["layer"] == 0 and ck["step"] > 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_is_a_clear_error(reference, damage):
    root, ref, _ = reference
    run = root / f"corrupt-{damage}"
    run.mkdir()
    for name in ("config.yaml", "checkpoint.pt"):
        (run / name).write_bytes((ref / name).read_bytes())
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(b"garbage" if damage == "garbage" else data[: len(data) // 2])
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--resume", str(run)], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "corrupt" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_read_only_output_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:  # root ignores permissions: a path through a file is the root-proof read-only case
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "runs"
    else:
        out = tmp_path / "ro"
        out.mkdir(mode=0o500)
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--set", "data.n_train=600",
                        "--set", "layers.0.n_units=8", "--set", "wandb=disabled", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(out.parent) in r.stderr


def test_resume_may_switch_the_wandb_mode(reference):
    """The W&B mode is not part of the experiment: a run made with W&B disabled, interrupted,
    resumes with --wandb offline and still equals the uninterrupted run."""
    root, ref, training_s = reference
    p = discover(["tiny.yaml", "--out", "switch"], root)
    run, _ = wait_for_run_folder(p)
    run = run if run.is_absolute() else root / run
    time.sleep(0.3 * training_s)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=300) in (0, 130)
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--resume", str(run), "--wandb", "offline",
                        "--no-progress"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (run / "wandb").is_dir()
    same(outputs(run), outputs(ref))


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (root only); skips the test with the reason when it cannot mount."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_is_one_line_and_the_run_resumes_exactly(reference, tmp_path):
    """The run folder's file system fills up mid-run: one line (exit 2), nothing half-written
    (every write is atomic, a cut metrics line is dropped on resume); after the file system
    grows, --resume ends bit-identical to the uninterrupted run."""
    root, ref, _ = reference
    with tmpfs(tmp_path / "small", "96k") as disk:
        r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", str(root / "tiny.yaml"), "--out",
                            str(disk), "--no-progress"], cwd=root, capture_output=True, text=True, timeout=300)
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(errors) == 1 and "the disk is full" in errors[0]
        (run,) = disk.iterdir()
        assert not list(run.glob(".*.tmp")), "a temporary file was left behind"
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--resume", str(run), "--no-progress"],
                           cwd=root, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        same(outputs(run), outputs(ref))


def test_read_only_file_system_is_one_line(tmp_path):
    with tmpfs(tmp_path / "ro", "1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--set", "data.n_train=600",
                            "--set", "layers.0.n_units=8", "--set", "wandb=disabled", "--out", str(disk / "runs")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "the file system is read-only" in r.stderr


def test_a_layer_finished_before_a_resume_encodes_as_it_did(tmp_path):
    """The finished layer is rebuilt from the checkpoint with its fine-tuning hyperparameters
    (not in its state dict): a kill during layer 1 resumes to the uninterrupted result (found by
    this file's SIGKILL test in CI: layer 0 encoded layer 1's inputs with lam 0.5 instead of 0.3)."""
    import threading

    import yaml

    from structlearn.config import RunConfig, from_dict, merge_config, to_dict
    from structlearn.loggers import JsonlLogger
    from structlearn.testing import trainer_in

    cfg = from_dict(RunConfig, merge_config(to_dict(RunConfig()), yaml.safe_load(TINY)))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    full = trainer_in(cfg, a, [JsonlLogger(a / "metrics.jsonl")]).run()
    layer0 = cfg.layers[0].steps + cfg.layers[0].prune.rounds * cfg.layers[0].prune.finetune_steps
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        trainer_in(cfg, b, [JsonlLogger(b / "metrics.jsonl")], on_step=lambda s: s == layer0 + 9 and stop.set(),
                   stop=stop).run()
    assert torch.load(b / "checkpoint.pt", weights_only=True)["layer"] == 1
    resumed = trainer_in(cfg, b, [JsonlLogger(b / "metrics.jsonl")]).run()
    assert strip(resumed) == strip(full)
