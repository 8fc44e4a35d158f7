"""Every command that creates folders keeps them under --out (issue 12): run names with
``..``, absolute paths, NUL and 300 characters become one safe folder name inside --out."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml

from structlearn.cli import main
from structlearn.runs.run import new_run_dir, safe_name

BAD_NAMES = ["../../../escape", "/abs/olute", "nul\x00byte", "x" * 300, "..", ".hidden/../.."]

SEARCH = {
    "seed": 0, "threads": 1, "wandb": "disabled",
    "data": {"grid": [2, 2], "tile": [4, 4], "n_train": 400, "n_test": 100, "zca_floor": 0.1},
    "layers": [{"n_units": 8, "objective": "sparse_coding", "params": {"lam": 0.5, "n_iter": 5, "eval_iter": 5},
                "steps": 2, "batch_size": 32, "prune": {"threshold": 0.1, "finetune_steps": 1}}],
    "eval_every": 1000, "checkpoint_every": 1000,
    "search": {"n_trials": 1, "max_depth": 1, "widths": [8, 8], "sparsity": [0.5, 0.5], "n_startup_trials": 1,
               "measure": "coding_rate"},
}

COMMANDS = {
    "discover": lambda name, cfg: ["discover", "--set", f"name={json.dumps(name)}", "--set", "data.n_train=400",
                                   "--set", "data.n_test=50", "--set", "layers.0.n_units=8", "--set", "layers.0.steps=2",
                                   "--set", "layers.0.prune.finetune_steps=1", "--set", "layers.0.params.eval_iter=5",
                                   "--wandb", "disabled", "--no-progress"],
    "search": lambda name, cfg: ["search", str(cfg), "--set", f"name={json.dumps(name)}"],
    "randnet": lambda name, cfg: ["randnet", "--set", f"name={json.dumps(name)}", "--set", "n_nets=3",
                                  "--set", "widths=[8]", "--set", "depths=[1]", "--set", "n_train_per_class=4",
                                  "--set", "n_test_per_class=2", "--set", "n_bootstrap=10", "--set", "images=[camera, moon]",
                                  "--quiet"],
    "redunet": lambda name, cfg: ["redunet", "--set", f"name={json.dumps(name)}", "--set", "data=gaussians",
                                  "--set", "spatial_dims=0", "--set", "layers=1", "--set", "n_train=30", "--set", "n_test=9"],
}


@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot", "absolute", "nul", "long", "only-dots", "hidden"])
def test_safe_name_and_new_run_dir_stay_inside(name, tmp_path):
    s = safe_name(name)
    assert s and "/" not in s and "\x00" not in s and not s.startswith(".") and len(s) <= 80
    d = new_run_dir(tmp_path / "out", name)
    assert d.resolve().parent == (tmp_path / "out").resolve()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_keeps_its_folder_under_out(command, tmp_path):
    cfg = tmp_path / "search.yaml"
    cfg.write_text(yaml.safe_dump(SEARCH))
    out = tmp_path / "out"
    for name in ("../../../escape", "/abs/olute", "nul\x00byte", "x" * 300):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = main(COMMANDS[command](name, cfg) + ["--out", str(out)])
        assert rc == 0, err.getvalue()
    made = sorted(p for p in tmp_path.rglob("*") if p.is_dir())
    outside = [p for p in made if not (p == out or out in p.parents)]
    assert outside == [], outside
    tops = list(out.iterdir())
    assert len(tops) == 4 and all("\x00" not in p.name and len(p.name) < 120 for p in tops)
