"""W&B online failures end cleanly (issue 12): with no API key, and with a key but an
unreachable host (the base URL points at a closed local port), `structlearn discover --wandb
online` ends within 30 s with one line and exit 2, leaves no run folder, and writes nothing
outside it (HOME is a fresh folder that must stay empty)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ARGS = ["--set", "data.n_train=600", "--set", "layers.0.n_units=8", "--set", "layers.0.steps=5", "--wandb", "online",
        "--no-progress"]


@pytest.mark.parametrize("case", ["no_key", "no_network"])
def test_wandb_online_failure_is_one_line_within_30_s(case, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(home)
    if case == "no_network":
        env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "discover", *ARGS, "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and "W&B (online) could not start" in lines[0] and "--wandb offline" in lines[0]
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not any(home.iterdir()), sorted(p.name for p in home.rglob("*"))
