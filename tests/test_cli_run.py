"""End to end: the CLI writes a complete run folder; an interrupted run resumes exactly."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import yaml

from structlearn.config import load_config
from structlearn.loggers import JsonlLogger
from structlearn.testing import trainer_in

TINY = {
    "name": "tiny",
    "data": {"grid": [2, 2], "tile": [4, 4], "n_train": 1500, "n_test": 200},
    "layers": [{"n_units": 24, "params": {"lam": 0.3, "n_iter": 15, "eval_iter": 40},
                "steps": 25, "batch_size": 64,
                "prune": {"threshold": 0.2, "finetune_steps": 10, "finetune_params": {"lam": 0.2}}}],
    "eval_every": 10,
    "checkpoint_every": 10,
    "wandb": "disabled",
}


@pytest.fixture
def tiny_yaml(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def test_cli_writes_every_output_and_offline_wandb(tiny_yaml, tmp_path):
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", str(tiny_yaml), "--out", str(out),
                        "--wandb", "offline", "--no-progress", "--set", "data.n_train=1200"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (run,) = list(out.iterdir())
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "layer0.pt",
              "filters_before_prune.png", "filters_after_prune.png", "tile_map.png"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    for k in ("tile_purity_mean", "single_tile_fraction", "density", "recon_rel_error", "n_units",
              "input_shape", "objective", "seconds"):
        assert k in summary, k
    assert summary["input_shape"] == [8, 8] and summary["n_units"] == 24 and summary["objective"] == "sparse_coding"
    assert 0 < summary["density"] < 1
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["n_train"] == 1200  # the resolved config, overrides included
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("final/recon_rel_error" in x for x in lines)
    wb = list((run / "wandb").glob("offline-run-*"))
    assert len(wb) == 1 and list(wb[0].glob("*.wandb"))
    imgs = sorted(p.name for p in (wb[0] / "files" / "media" / "images").glob("*.png"))
    assert any(n.startswith("filters_before_prune") for n in imgs) and any(n.startswith("filters_after_prune") for n in imgs)
    from skimage.io import imread

    img = imread(run / "filters_after_prune.png")
    assert img.ndim == 3 and img.shape[0] >= 256 and img.dtype == np.uint8


class Killed(Exception):
    pass


def _run(cfg, run_dir, stop_at=None, exc=KeyboardInterrupt):
    """``KeyboardInterrupt``: a stop request at ``stop_at`` (the trainer checkpoints at that step
    boundary, as after Ctrl-C in the CLI); another exception: a crash with no save at all."""
    stop = threading.Event()

    def hook(step):
        if stop_at is not None and step == stop_at:
            if exc is KeyboardInterrupt:
                stop.set()
            else:
                raise exc
    return trainer_in(cfg, run_dir, [JsonlLogger(run_dir / "metrics.jsonl")], on_step=hook, stop=stop).run()


def _final_state(run_dir):
    return torch.load(run_dir / "layer0.pt", weights_only=True)


@pytest.mark.parametrize("stop_at, exc", [(17, KeyboardInterrupt), (28, Killed)])
def test_resume_equals_uninterrupted(tiny_yaml, tmp_path, stop_at, exc):
    cfg = load_config(tiny_yaml)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    full = _run(cfg, a)
    with pytest.raises(exc):
        _run(cfg, b, stop_at, exc)  # Killed: no save at the stop, resume from the step-20 checkpoint
    assert not (b / "summary.json").exists()
    resumed = _run(cfg, b)
    sa, sb = _final_state(a), _final_state(b)
    assert torch.equal(sa["weight"], sb["weight"]) and torch.equal(sa["mask"], sb["mask"])
    drop = {"seconds"}
    assert {k: v for k, v in full.items() if k not in drop} == {k: v for k, v in resumed.items() if k not in drop}
    la = (a / "metrics.jsonl").read_text().splitlines()
    lb = (b / "metrics.jsonl").read_text().splitlines()
    assert la == lb  # no duplicated or lost metric lines


def test_resume_refuses_other_config_and_corrupt_checkpoint(tiny_yaml, tmp_path):
    cfg = load_config(tiny_yaml)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path, 12)
    other = load_config(tiny_yaml, ["seed=5"])
    with pytest.raises(ValueError, match="different config"):
        trainer_in(other, tmp_path).run()
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        trainer_in(cfg, tmp_path).run()


def test_cli_resume_of_missing_folder_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", "--resume", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
