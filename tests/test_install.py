"""Installed, not editable: a wheel of this checkout carries the experiment configs and
py.typed, and `structlearn discover` run from an unrelated folder resolves exactly the config
that the repository's experiments/mosaic_sparse.yaml gives (issue 10: it used to fall back to
the dataclass defaults, a different experiment)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from structlearn.config import dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.n_train=600", "data.n_test=50", "layers.0.n_units=16", "layers.0.steps=2",
        "layers.0.prune.finetune_steps=1", "layers.0.params.eval_iter=5", "wandb=disabled"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    wheels, target = tmp / "wheels", tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("structlearn-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return wheel, target


def test_the_wheel_carries_configs_and_types(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "structlearn/py.typed" in names
    for yaml in (ROOT / "structlearn" / "configs").glob("*.yaml"):
        assert f"structlearn/configs/{yaml.name}" in names


def test_discover_from_another_folder_resolves_the_repository_config(installed, tmp_path):
    _, target = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run([sys.executable, "-c", "import structlearn; print(structlearn.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().startswith(str(target)), probe.stdout  # the installed copy, not this checkout
    sets = [a for s in TINY for a in ("--set", s)]
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", *sets,
                        "--no-progress", "--out", "runs"], cwd=elsewhere, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = (elsewhere / "runs").iterdir()
    want = dump_config(load_config(ROOT / "experiments" / "mosaic_sparse.yaml", TINY))
    assert (run / "config.yaml").read_text() == want
    assert json.loads((run / "summary.json").read_text())["n_units"] == 16
