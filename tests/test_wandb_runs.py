"""What a W&B user sees (issue 15), read back from the offline run files with W&B's own protobuf
definitions (:mod:`structlearn.testing.wandb_records`): filters over time for every layer and
pruning round, per-unit tables, the read-out and artifacts in the same run, the configured
identity, sweeps driving `discover` through ``wandb.config``, one run per search trial, and
nothing written outside the run folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from structlearn.config import RunConfig, load_config
from structlearn.runs.wandb_run import sweep_overrides
from structlearn.testing.wandb_records import artifacts, config, history, records, run_record, summary

STACK = {
    "name": "wbstack", "seed": 0, "threads": 1,
    "data": {"grid": [2, 2], "tile": [4, 4], "n_train": 1200, "n_test": 200},
    "layers": [
        {"n_units": 24, "params": {"lam": 0.3, "n_iter": 15, "eval_iter": 40}, "steps": 20, "batch_size": 64,
         "prune": {"method": "imp", "density": 0.3, "rounds": 2, "finetune_steps": 10}},
        {"n_units": 12, "params": {"lam": 0.3, "n_iter": 15, "eval_iter": 40}, "steps": 20, "batch_size": 64},
    ],
    "eval_every": 10, "checkpoint_every": 10,
    "wandb": {"mode": "offline", "group": "g-test", "job_type": "jt-test", "tags": ["t1", "t2"], "log_images_every": 5},
}


def _env(tmp: Path) -> dict[str, str]:
    """A clean process: a fresh empty HOME, no W&B variables, matplotlib's cache outside HOME."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), MPLCONFIGDIR=str(tmp / "mpl"), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def _cli(tmp: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    cwd = tmp / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "structlearn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or _env(tmp), cwd=cwd)


def _wandb_files(run: Path) -> list[Path]:
    return sorted(run.glob("wandb/offline-run-*/run-*.wandb"))


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wb")
    (tmp / "stack.yaml").write_text(yaml.safe_dump(STACK))
    r = _cli(tmp, "discover", str(tmp / "stack.yaml"), "--out", "runs", "--no-progress")
    assert r.returncode == 0, r.stderr
    (run,) = (tmp / "cwd" / "runs").iterdir()
    return tmp, run


def _png(path: Path) -> np.ndarray:
    from skimage.io import imread

    return imread(path)


def test_filters_over_time_every_layer_and_round(stack_run):
    tmp, run = stack_run
    (f,) = _wandb_files(run)
    recs = records(f)
    media = f.parent / "files"
    for layer, total, expect_phases in ((0, 40, ("dense", "before pruning round 0", "before pruning round 1", "pruned")),
                                        (1, 20, ("dense", "end of layer"))):
        key = f"filters/layer{layer}"
        rows = [h for h in history(recs) if f"{key}/path" in h]
        steps = [h["_step"] for h in rows]
        assert len(steps) >= 4 and steps == sorted(steps), steps
        captions = [h[f"{key}/caption"] for h in rows]
        for phase in expect_phases:
            assert any(f"({phase})" in c for c in captions), (phase, captions)
        assert all("density" in c and f"step {s}" in c for c, s in zip(captions, steps))
        if layer == 0:
            assert all("tile purity" in c for c in captions)
        scales = {c.split("colour scale |w|/||w|| = ")[1] for c in captions}
        assert len(scales) == 1  # one fixed colour scale per layer
        imgs = [_png(media / h[f"{key}/path"]) for h in rows]
        for img in imgs:
            assert img.dtype == np.uint8 and img.ndim == 3 and img[..., :3].std() > 5  # decodes, not constant
        assert len({img.tobytes() for img in imgs}) == len(imgs)  # the filters change over time


def test_unit_tables_have_one_row_per_unit(stack_run):
    tmp, run = stack_run
    (f,) = _wandb_files(run)
    rows = [h for h in history(records(f)) if "units/layer0/path" in h]
    assert len(rows) == 3  # before each of the 2 pruning rounds, and at the layer's end
    for h in rows:
        assert h["units/layer0/nrows"] == 24
        table = json.loads((f.parent / "files" / h["units/layer0/path"]).read_text())
        assert len(table["data"]) == 24 and table["columns"][:4] == ["filter", "unit", "dominant_tile", "tile_purity"]
        for col in ("participation_ratio", "radius90", "gabor_r2", "gabor_theta", "kernel_id", "density"):
            assert col in table["columns"]
        dens = [r[table["columns"].index("density")] for r in table["data"]]
        assert all(0 <= d <= 1 for d in dens)
    last = json.loads((f.parent / "files" / rows[-1]["units/layer0/path"]).read_text())
    d = np.mean([r[last["columns"].index("density")] for r in last["data"]])
    assert d == pytest.approx(json.loads((run / "structure.json").read_text())["layers"][0]["density"], abs=1e-6)


def test_readout_artifacts_and_identity_in_the_same_run(stack_run):
    tmp, run = stack_run
    (f,) = _wandb_files(run)
    recs = records(f)
    rr = run_record(recs)
    assert (rr.run_group, rr.job_type, list(rr.tags), rr.project) == ("g-test", "jt-test", ["t1", "t2"], "structlearn")
    assert rr.run_id == (run / "wandb_id.txt").read_text().strip()
    s = summary(recs)
    structure = json.loads((run / "structure.json").read_text())
    assert s["structure/table/nrows"] == len(structure["layers"]) == 2
    assert s["structure/layer0/density"] == pytest.approx(structure["layers"][0]["density"])
    arts = {a.type: a for a in artifacts(recs) if a.type in ("model", "run")}
    model = sorted(e.path for e in arts["model"].manifest.contents)
    assert {"architecture.json", "layer0.pt", "layer1.pt", "structure.json", "structure_kernels.pt"} <= set(model), model
    run_files = sorted(e.path for e in arts["run"].manifest.contents)
    assert {"config.yaml", "summary.json", "metrics.jsonl", "report.html"} <= set(run_files), run_files
    cfg = config(recs)
    assert cfg["layers"][0]["prune"]["rounds"] == 2 and cfg["wandb"]["group"] == "g-test"


def test_nothing_is_written_outside_the_run_folder(stack_run):
    tmp, run = stack_run
    assert not any((tmp / "home").rglob("*")), sorted(str(p) for p in (tmp / "home").rglob("*"))
    assert sorted(p.name for p in (tmp / "cwd").iterdir()) == ["runs"]  # no ./wandb, no ./artifacts


def test_report_reopens_the_run_by_id_and_export_links_its_artifact(stack_run):
    tmp, run = stack_run
    r = _cli(tmp, "report", str(run), "--threshold", "0.5", "--html")
    assert r.returncode == 0, r.stderr
    assert "logged the read-out into W&B run" in r.stderr
    r = _cli(tmp, "export", str(run), "--out", str(run / "exported.json"))
    assert r.returncode == 0, r.stderr
    files = _wandb_files(run)
    assert len(files) == 3  # training, report, export: one W&B run id, three offline segments
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert {run_record(records(f)).run_id for f in files} == {run_id}
    rep = records(files[1])
    assert summary(rep)["structure/table/nrows"] == 2
    assert any(a.type == "model" for a in artifacts(rep))
    (art,) = [a for a in artifacts(records(files[2])) if a.type == "architecture"]
    assert sorted(e.path for e in art.manifest.contents)[0] == "exported.json"
    assert not any((tmp / "home").rglob("*"))


def test_sweep_overrides_read_back_from_wandb_config():
    cfg = load_config(None, ["wandb=disabled"])
    assert sweep_overrides({**json.loads(json.dumps(_as_dict(cfg)))}, cfg) == []  # its own config: nothing
    got = sweep_overrides({"layers.0.params.lam": 0.25, "seed": 3, "wandb": {"group": "x"}, "_wandb": {}}, cfg)
    assert got == ['layers.0.params.lam=0.25', 'seed=3']
    nested = sweep_overrides({"data": {"tile": [4, 4], "grid": [3, 3]}}, cfg)  # nested form, only what differs
    assert nested == ["data.tile=[4, 4]"]
    assert sweep_overrides({"eval_every": 100.0}, cfg) == []  # W&B may store 100 as 100.0


def _as_dict(cfg: RunConfig) -> dict:
    from structlearn.config import to_dict

    return to_dict(cfg)


def test_a_sweep_drives_discover_through_wandb_config(tmp_path):
    """What `wandb agent` does: it writes the sampled parameters to a file named by
    WANDB_SWEEP_PARAM_PATH and starts the command; wandb.init reads them into wandb.config."""
    tiny = {**STACK, "layers": [STACK["layers"][1]], "wandb": {"mode": "offline"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"layers.0.params.lam": {"value": 0.25}, "seed": {"value": 3},
                                                          "data": {"value": {"n_train": 900}}}))
    env = _env(tmp_path)
    env.update(WANDB_SWEEP_ID="testsweep", WANDB_SWEEP_PARAM_PATH=str(tmp_path / "params.yaml"), WANDB_RUN_ID="sweeprun42")
    r = _cli(tmp_path, "discover", str(tmp_path / "tiny.yaml"), "--out", "runs", "--no-progress", "--no-html", env=env)
    assert r.returncode == 0, r.stderr
    assert "W&B sweep: data.n_train=900 layers.0.params.lam=0.25 seed=3" in r.stderr
    (run,) = (tmp_path / "cwd" / "runs").iterdir()
    resolved = load_config(run / "config.yaml")
    assert resolved.seed == 3 and resolved.layers[0].params["lam"] == 0.25 and resolved.data.n_train == 900
    assert resolved.data.tile == (4, 4)  # the rest of the nested data section is kept
    (f,) = _wandb_files(run)
    assert run_record(records(f)).run_id == (run / "wandb_id.txt").read_text() == "sweeprun42"  # the agent's run
    c = config(records(f))
    assert c["seed"] == 3 and c["layers"][0]["params"]["lam"] == 0.25
    # the run trained what the sweep asked for: same numbers as the same overrides given directly
    direct = _cli(tmp_path, "discover", str(tmp_path / "tiny.yaml"), "--out", "direct", "--no-progress", "--no-html",
                  "--wandb", "disabled", "--set", "seed=3", "--set", "layers.0.params.lam=0.25", "--set", "data.n_train=900")
    assert direct.returncode == 0, direct.stderr
    (other,) = (tmp_path / "cwd" / "direct").iterdir()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run, other))
    assert a["recon_rel_error"] == b["recon_rel_error"] and a["density"] == b["density"]


def test_bad_sweep_values_are_one_line_and_leave_no_folder(tmp_path):
    tiny = {**STACK, "layers": [STACK["layers"][1]], "wandb": {"mode": "offline"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"layers.0.params.lam": {"value": -1}}))
    env = _env(tmp_path)
    env.update(WANDB_SWEEP_ID="testsweep", WANDB_SWEEP_PARAM_PATH=str(tmp_path / "params.yaml"))
    r = _cli(tmp_path, "discover", str(tmp_path / "tiny.yaml"), "--out", "runs", "--no-progress", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "W&B sweep parameters" in r.stderr and "lam" in r.stderr
    assert not (tmp_path / "cwd" / "runs").exists() or not any((tmp_path / "cwd" / "runs").iterdir())


@pytest.mark.slow  # ~31 s (W&B's 15 s init timeout, then a run): kept out of the default suite's 10 minutes
def test_online_or_offline_falls_back_and_says_so(tmp_path):
    """A key but no reachable host: W&B's init gives up within its timeout; the run goes on
    offline, and one line says what happened."""
    tiny = {**STACK, "layers": [STACK["layers"][1]], "wandb": {"mode": "offline"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    env = _env(tmp_path)
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    r = _cli(tmp_path, "discover", str(tmp_path / "tiny.yaml"), "--out", "runs", "--no-progress", "--no-html",
             "--wandb", "online-or-offline", env=env)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "W&B" in x]
    assert len(lines) == 1 and lines[0].startswith("W&B online could not start") and "logging offline" in lines[0]
    (run,) = (tmp_path / "cwd" / "runs").iterdir()
    assert len(_wandb_files(run)) == 1
    assert not any((tmp_path / "home").rglob("*"))


def test_the_example_sweep_names_real_config_paths():
    """experiments/wandb_sweep.yaml stays usable: every parameter is a path of the config it
    runs, and each of its values passes the config's own validation."""
    import itertools

    from structlearn.config import apply_overrides, from_dict, to_dict

    root = Path(__file__).resolve().parents[1]
    sweep = yaml.safe_load((root / "experiments" / "wandb_sweep.yaml").read_text())
    assert sweep["command"][1:3] == ["structlearn", "discover"] and "${args}" not in sweep["command"]
    cfg = load_config(root / sweep["command"][3])
    choices = {k: v["values"] if "values" in v else [v["min"], v["max"]] for k, v in sweep["parameters"].items()}
    for point in itertools.product(*choices.values()):
        got = sweep_overrides(dict(zip(choices, point)), cfg)
        resolved = from_dict(RunConfig, apply_overrides(to_dict(cfg), got))
        resolved.validate()
        assert resolved.layers[0].params["lam"] == point[list(choices).index("layers.0.params.lam")]
    assert sweep["metric"]["name"].startswith("final/")
