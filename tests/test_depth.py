"""Entropy gain per layer (planted cases, invariances, float64 reference) and the Optuna depth
search: outputs, seeded reproducibility, resume after SIGKILL, two journal workers."""
from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from structlearn.depth.gain import (
    EntropyProfile,
    LayerEntropyRecorder,
    choose_depth,
    entropy_profile,
    layer_entropy,
    reference_coding_rate,
    sphere_codes,
)
from structlearn.functional.rate import coding_rate

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def white(n: int, d: int, seed: int) -> torch.Tensor:
    """ZCA-whitened correlated Gaussian data (the 'whitened input' of layer 0): (n, d)."""
    g = gen(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    x = torch.randn(n, d, generator=g, dtype=F64) @ a
    x = x - x.mean(0)
    lam, v = torch.linalg.eigh(x.T @ x / n)
    return x @ (v * lam.rsqrt()) @ v.T


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(seed), dtype=F64))
    return q


# ----------------------------------------------------------------------------- the measure
def test_reference_coding_rate_matches_float64_formula():
    z = torch.randn(300, 12, generator=gen(0), dtype=F64).abs() * torch.linspace(0.1, 3, 12, dtype=F64)
    zs = (z - z.mean(0)) / z.std(0, correction=0)
    zhat = zs / zs.norm(dim=1, keepdim=True)
    for d_ref in (12, 40):
        c = d_ref / (300 * 0.5)
        want = 0.5 * np.linalg.slogdet(np.eye(12) + c * zhat.numpy().T @ zhat.numpy())[1]
        assert float(reference_coding_rate(z, d_ref, 0.5)) == pytest.approx(want, rel=1e-12)
    # with d_ref = d it is MCR^2's R(Zhat, eps) of structlearn.functional.rate
    assert float(reference_coding_rate(z)) == pytest.approx(float(coding_rate(zhat, 0.5)), rel=1e-12)


def test_isotropic_codes_reach_the_closed_form_maximum():
    # R_ref <= d/2 log(1 + d_ref/(d eps^2)), attained when Zhat^T Zhat / m = I / d
    d, d_ref, m = 8, 20, 40000
    z = torch.randn(m, d, generator=gen(1), dtype=F64)
    bound = d / 2 * math.log(1 + d_ref / (d * 0.5))
    r = float(reference_coding_rate(z, d_ref))
    assert r <= bound + 1e-9 and r == pytest.approx(bound, rel=2e-3)


def test_scale_and_unit_gain_invariance():
    z = torch.randn(500, 10, generator=gen(2), dtype=F64).pow(3)
    gains = torch.logspace(-3, 3, 10, dtype=F64)
    h = float(layer_entropy(z))
    assert float(layer_entropy(7.0 * z)) == pytest.approx(h, rel=1e-12)
    assert float(layer_entropy(z * gains + 5.0)) == pytest.approx(h, rel=1e-12)  # per-unit gain and offset
    for m in ("gaussian", "knn"):
        assert float(layer_entropy(z * gains, m)) == pytest.approx(float(layer_entropy(z, m)), rel=1e-9)


def test_dead_units_are_ignored():
    z = torch.randn(400, 6, generator=gen(3), dtype=F64)
    padded = torch.cat([z, torch.zeros(400, 3, dtype=F64), 1e-12 * torch.randn(400, 1, generator=gen(4), dtype=F64)], 1)
    assert float(layer_entropy(padded, d_ref=6)) == pytest.approx(float(layer_entropy(z, d_ref=6)), rel=1e-12)
    assert torch.equal(sphere_codes(padded)[:, 6:], torch.zeros(400, 4, dtype=F64))


# ----------------------------------------------------------------------------- planted gains
def test_duplicating_layer_has_zero_gain():
    x = white(2000, 16, 5)
    h1 = torch.relu(x @ torch.randn(16, 24, generator=gen(6), dtype=F64))  # some nonlinear layer
    prof = entropy_profile([x, torch.cat([x, x], 1), h1, torch.cat([h1, h1, h1], 1)])
    assert prof.gains[0] == pytest.approx(0.0, abs=1e-9)  # copy of the input
    assert prof.gains[2] == pytest.approx(0.0, abs=1e-9)  # triplicate of a nonlinear layer
    # the same duplication under MCR^2's own-d convention would show a spurious gain
    xs = sphere_codes(x)
    assert float(coding_rate(sphere_codes(torch.cat([x, x], 1)), 0.5)) - float(coding_rate(xs, 0.5)) > 1.0


def test_invertible_whitening_layer_gains_nothing():
    x = white(3000, 12, 7)  # layer 0: the whitened input
    lam, v = torch.linalg.eigh(x.T @ x / x.shape[0])
    pca_white = x @ v * lam.rsqrt()  # a PCA-whitening layer (invertible)
    rotated = x @ orthogonal(12, 8)  # any orthogonal layer
    prof = entropy_profile([x, pca_white, rotated])
    assert abs(prof.gains[0]) < 1e-6 and abs(prof.gains[1]) < 1e-6
    # a non-isometric invertible layer on a white input changes the rate (the test can fail)
    skew = x @ torch.diag(torch.logspace(-2, 2, 12, dtype=F64)) @ orthogonal(12, 9)
    assert entropy_profile([x, skew]).gains[0] < -0.5


def test_independent_dims_and_noise_injection_gain():
    x = white(3000, 16, 10)
    extra = torch.randn(3000, 16, generator=gen(11), dtype=F64)
    proj = x @ orthogonal(16, 12)[:, :4] @ orthogonal(16, 13)[:4]  # a lossy layer: rank 4 of 16
    noisy = proj + 0.3 * torch.randn(3000, 16, generator=gen(14), dtype=F64)
    prof = entropy_profile([x, torch.cat([x, extra], 1), proj, noisy])
    assert prof.gains[0] > 1.0  # more independent dimensions
    assert prof.gains[1] < -1.0  # losing dimensions costs entropy
    assert prof.gains[2] > 1.0  # injected noise fills the lost directions
    ladder = [float(layer_entropy(proj + s * torch.randn(3000, 16, generator=gen(15), dtype=F64), d_ref=16))
              for s in (0.01, 0.1, 0.3, 1.0)]
    assert all(b > a for a, b in zip(ladder, ladder[1:]))  # monotone in the noise level


def test_choose_depth_and_profile_table():
    assert choose_depth([0.1, 0.05, 0.01, 0.2], 0.02) == 2
    assert choose_depth([0.01, 0.5], 0.02) == 0
    assert choose_depth([0.1, float("nan"), 0.3], 0.02) == 1
    prof = EntropyProfile((10.0, 12.0, 12.1), (4, 8, 8), "coding_rate", 0.5, 4)
    assert prof.gains == pytest.approx((2.0, 0.1)) and prof.relative_gains == pytest.approx((0.2, 0.01))
    assert prof.chosen_depth(0.02) == 1 and prof.chosen_depth(0.05, relative=False) == 2
    assert "| 2 | 8 | 12.100 | +0.100 | +0.0100 |" in prof.table()


def test_bad_input_raises():
    with pytest.raises(ValueError, match="measure"):
        layer_entropy(torch.randn(10, 3), "histogram")
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        layer_entropy(torch.randn(10))
    with pytest.raises(ValueError, match="NaN"):
        layer_entropy(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))
    with pytest.raises(ValueError, match="eps2"):
        reference_coding_rate(torch.randn(10, 3), eps2=0.0)
    with pytest.raises(ValueError, match="same held-out samples"):
        entropy_profile([torch.randn(10, 3), torch.randn(9, 3)])


TINY = {
    "name": "tiny", "seed": 0, "threads": 1, "wandb": "disabled",
    "data": {"grid": [2, 2], "tile": [4, 4], "n_train": 800, "n_test": 200, "zca_floor": 0.1},
    "layers": [{"n_units": 32, "objective": "sparse_coding", "params": {"lam": 0.5, "n_iter": 10, "eval_iter": 20},
                "steps": 12, "batch_size": 64,
                "prune": {"threshold": 0.1, "finetune_steps": 4, "finetune_params": {"lam": 0.15}}}],
    "eval_every": 1000, "checkpoint_every": 1000,
    "search": {"n_trials": 5, "max_depth": 3, "widths": [16, 128], "sparsity": [0.1, 1.0], "n_startup_trials": 3,
               "threshold": -0.05, "measure": "coding_rate"},
}


def test_recorder_follows_the_trainer():
    from structlearn.callbacks import OnCodes
    from structlearn.depth.space import search_config_from_dict
    from structlearn.train import Trainer

    d = dict(TINY, layers=TINY["layers"] * 2)
    d.pop("search")
    run = search_config_from_dict(d).run
    seen, codes = [], []
    data = Trainer(run).prepare()
    rec = LayerEntropyRecorder(data.test, on_gain=lambda layer, g, h: seen.append((layer, g, h)))

    def hook(li, obj, z):
        codes.append(z)
        rec(li, obj, z)

    tr = Trainer(run, callbacks=[OnCodes(hook)], data=data)
    tr.run()
    assert [s[0] for s in seen] == [1, 2] and len(rec.entropies) == 3
    ref = entropy_profile([tr.data.test] + codes)
    assert rec.profile().entropies == pytest.approx(ref.entropies, rel=1e-12)
    assert [s[1] for s in seen] == pytest.approx(list(ref.gains), rel=1e-12)


# ----------------------------------------------------------------------------- the search
def _yaml(tmp_path: Path, **search) -> Path:
    d = json.loads(json.dumps(TINY))
    d["search"].update(search)
    p = tmp_path / "tiny_search.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _cli(*args: str) -> int:
    from structlearn.cli import main

    return main(["search", *args])


def _finished(summary: dict) -> list[tuple]:
    return [(r["params"], r["state"], r["scored_gains"]) for r in sorted(summary["trials"], key=lambda r: r["number"])
            if r["state"] in ("COMPLETE", "PRUNED")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted tiny study (n_trials=5, W&B offline), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("search")
    assert _cli(str(_yaml(tmp)), "--out", str(tmp / "runs"), "--wandb", "offline") == 0
    (run,) = (tmp / "runs").iterdir()
    return run, json.loads((run / "search.json").read_text())


def test_search_writes_json_table_and_plots(uninterrupted):
    from skimage.io import imread

    run, s = uninterrupted
    assert s["n_finished"] == 5 and s["states"]["COMPLETE"] + s["states"]["PRUNED"] == 5
    best = s["best_trial"]
    assert isinstance(s["chosen_depth"], int) and s["chosen_depth"] == best["useful_depth"]
    assert best["useful_entropy"] == max(r["useful_entropy"] for r in s["trials"])
    assert len(best["entropies"]) == len(best["scored_gains"]) + 1 == len(best["dims"])
    # the gains are the differences of the entropies, as a share of H_0
    h = best["entropies"]
    assert best["scored_gains"] == pytest.approx([(h[i] - h[i - 1]) / h[0] for i in range(1, len(h))])
    assert s["chosen_depth"] == choose_depth(best["scored_gains"], s["threshold"])
    for r in s["trials"]:  # pruned exactly when a layer fell below the threshold
        assert (r["state"] == "PRUNED") == (min(r["scored_gains"]) < s["threshold"])
    assert "| 0 (input) | 64 |" in (run / "gain.md").read_text()
    for png in ("gain_vs_depth.png", "trials.png"):
        img = imread(run / png)
        assert img.ndim == 3 and img.shape[0] > 200 and img[..., :3].std() > 10, png
    assert (run / "study.db").is_file()
    # one offline W&B run per trial, inside the folder, grouped by the study, with every sampled parameter
    from structlearn.testing.wandb_records import config, history, records, run_record, summary

    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 5
    by_trial = {}
    for f in files:
        recs = records(f)
        rr, c = run_record(recs), config(recs)
        assert rr.run_group == run.name and rr.job_type == "search-trial" and run.name in list(rr.tags)
        by_trial[c["trial_number"]] = (c, summary(recs), history(recs))
    for t in s["trials"]:
        c, sm, hist = by_trial[t["number"]]
        assert {k: c[k] for k in t["params"]} == t["params"] and c["trial_state"] == t["state"].lower()
        assert sm["useful_entropy"] == pytest.approx(t["useful_entropy"])
        assert [h["trial/entropy"] for h in hist] == pytest.approx(t["entropies"])


def test_same_seed_same_trials_and_rerun_adds_nothing(uninterrupted, tmp_path):
    run, s = uninterrupted
    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "runs")) == 0
    (other,) = (tmp_path / "runs").iterdir()
    assert other.name == run.name  # folder name = config fingerprint
    assert _finished(json.loads((other / "search.json").read_text())) == _finished(s)
    # the same command again finds the finished study and runs no new trial
    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "runs")) == 0
    assert len(json.loads((other / "search.json").read_text())["trials"]) == 5


def _db_states(db: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [r[0] for r in con.execute("select state from trials order by number")]
    except sqlite3.Error:
        return []


def _training_first_layer(db: Path) -> bool:
    """A RUNNING trial that has measured H_0 but not yet finished its first layer."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("select a.value_json from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
                               "where t.state = 'RUNNING' and a.key = 'entropies'").fetchall()
    except sqlite3.Error:
        return False
    return any(len(json.loads(v)) == 1 for (v,) in rows)


def _search_proc(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "structlearn.cli", "search", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_resume_after_sigkill_keeps_finished_trials(uninterrupted, tmp_path):
    _, reference = uninterrupted
    cmd = (str(_yaml(tmp_path)), "--out", str(tmp_path / "runs"))
    p = _search_proc(*cmd)
    t0, db = time.time(), None
    while time.time() - t0 < 120:
        dirs = list((tmp_path / "runs").glob("search-*")) if (tmp_path / "runs").exists() else []
        db = dirs[0] / "study.db" if dirs else None
        st = _db_states(db) if db is not None and db.exists() else []
        if sum(s in ("COMPLETE", "PRUNED") for s in st) >= 2 and _training_first_layer(db):
            break
        assert p.poll() is None, p.communicate()[0]
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = _db_states(db)
    assert "RUNNING" in before and before.count("COMPLETE") + before.count("PRUNED") >= 2
    run = db.parent
    done_before = {r[0]: r[1:] for r in _rows(db) if r[1] in ("COMPLETE", "PRUNED")}
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "search", *cmd], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "enqueued again" in r.stderr
    s = json.loads((run / "search.json").read_text())
    assert s["n_finished"] == 5 and s["states"]["FAIL"] == 1 and s["states"]["RUNNING"] == 0
    after = {row[0]: row[1:] for row in _rows(db)}
    for number, rec in done_before.items():  # nothing finished was lost or changed
        assert after[number] == rec
    failed = [t for t in s["trials"] if t["state"] == "FAIL"][0]
    retry = [t for t in s["trials"] if t["retry_of"] == failed["number"]]
    assert len(retry) == 1 and retry[0]["params"] == failed["params"] and retry[0]["state"] in ("COMPLETE", "PRUNED")
    # the killed trial re-ran first with its own parameters: the study equals an uninterrupted one
    assert _finished(s) == _finished(reference)


def _rows(db: Path) -> list[tuple]:
    """(number, state, value, params) of every trial, read from the SQLite file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("select t.number, t.state, v.value, t.trial_id from trials t "
                           "left join trial_values v on v.trial_id = t.trial_id order by t.number").fetchall()
        params = con.execute("select trial_id, param_name, param_value from trial_params").fetchall()
    by_id: dict = {}
    for tid, name, value in params:
        by_id.setdefault(tid, {})[name] = value
    return [(n, state, value, by_id.get(tid, {})) for n, state, value, tid in rows]


def test_two_journal_workers_share_a_study(tmp_path):
    n = 6  # the workers meet at a start barrier, so both run trials
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "search", str(_yaml(tmp_path, n_trials=n)),
                        "--out", str(tmp_path / "runs"), "--storage", "journal", "--workers", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    s = json.loads((run / "search.json").read_text())
    assert (run / "study.journal").is_file() and not (run / "study.db").exists()
    numbers = sorted(t["number"] for t in s["trials"])
    assert numbers == list(range(n))  # none lost, none duplicated, no overshoot
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in s["trials"])
    assert len({t["worker_pid"] for t in s["trials"]}) == 2  # both workers ran trials
    assert len({json.dumps(t["params"], sort_keys=True) for t in s["trials"]}) == n


def test_a_worker_whose_partner_never_starts_goes_on_after_the_start_timeout(tmp_path, monkeypatch):
    """The start barrier of spawned workers: a worker left alone at it waits START_TIMEOUT_S,
    says so, and runs the study to the end (no hang)."""
    import threading

    from structlearn.depth import study as st
    from structlearn.depth.space import load_search_config

    cfg = load_search_config(_yaml(tmp_path, n_trials=2))
    st.run_search(cfg, tmp_path / "s", storage_spec="journal", n_trials=1, log=lambda m: None)
    monkeypatch.setattr(st, "START_TIMEOUT_S", 0.3)
    said: list[str] = []
    t0 = time.monotonic()
    done = st.run_worker(tmp_path / "s", "journal", "s", 2, log=said.append, start=threading.Barrier(2))
    assert done == 1 and time.monotonic() - t0 >= 0.3
    assert "not every worker started within 0.3 s" in said[0], said


def test_two_workers_share_a_postgresql_study_and_rerun_adds_nothing(postgres_url, tmp_path):
    """A real PostgreSQL server (tests/conftest.py starts one): two worker processes finish
    the study with no lost or duplicated trial, the trials are in the database, and the same
    command again runs no new trial."""
    import optuna

    n = 6  # the workers meet at a start barrier, so both run trials
    cmd = [sys.executable, "-m", "structlearn.cli", "search", str(_yaml(tmp_path, n_trials=n)),
           "--out", str(tmp_path / "runs"), "--storage", postgres_url, "--study-name", "pg-study", "--workers", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    s = json.loads((run / "search.json").read_text())
    assert not (run / "study.db").exists() and not (run / "study.journal").exists()
    assert sorted(t["number"] for t in s["trials"]) == list(range(n))
    assert len({t["worker_pid"] for t in s["trials"]}) == 2
    stored = optuna.load_study(study_name="pg-study", storage=postgres_url).get_trials(deepcopy=False)
    assert sorted(t.number for t in stored) == list(range(n))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in stored)
    r = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=300)  # again, one worker
    assert r.returncode == 0, r.stderr
    assert len(optuna.load_study(study_name="pg-study", storage=postgres_url).trials) == n
    bad = postgres_url.rsplit(":", 1)[0] + ":1/structlearn"  # nothing listens on port 1
    r = subprocess.run(cmd[:5] + ["--out", str(tmp_path / "bad"), "--storage", bad], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "cannot open the database" in r.stderr, r.stderr


def test_search_bad_input(tmp_path, capsys):
    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "a"), "--workers", "2") == 2
    assert "SQLite is for one process" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert _cli(str(_yaml(tmp_path, widths=[])), "--out", str(tmp_path / "b")) == 2
    assert "search.widths" in capsys.readouterr().err
    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "c"), "--set", "search.sparsity_param=alpha") == 2
    assert "alpha" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "d"), "--set", "search.depth=3") == 2
    assert "unknown" in capsys.readouterr().err


def test_stale_trial_of_a_dead_worker_is_failed_and_enqueued(tmp_path):
    import optuna

    from structlearn.depth.storage import WORKER_ATTR, WorkerIdentity, fail_stale_trials

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    me = WorkerIdentity()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for attr in ({**me.as_attr(), "pid": dead.pid, "token": "x"}, me.as_attr(),
                 {**me.as_attr(), "host": "elsewhere", "pid": 1}):
        t = study.ask({"depth": optuna.distributions.IntDistribution(1, 4)})
        study._storage.set_trial_system_attr(t._trial_id, WORKER_ATTR, attr)
    assert fail_stale_trials(study, me, grace_s=600) == [0]  # only the dead local worker's trial
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    assert study.get_trials()[3].system_attrs["fixed_params"] == study.get_trials()[0].params
    assert fail_stale_trials(study, me, grace_s=1e-6) == [2]  # other host: no heartbeat within the grace


# ----------------------------------------------------------------------------- random networks
def test_random_network_connectivity():
    from structlearn.depth.random_nets import RandomNetSpec, network_features, random_network

    local = random_network(RandomNetSpec(2, 300, 0.25, "local"), (16, 16), gen(0))
    m = (local[0] != 0).reshape(300, 16, 16)
    rows, cols = m.any(2), m.any(1)  # (300, 16) occupied rows / columns per unit
    assert (rows.sum(1) == 8).all() and (cols.sum(1) == 8).all() and (m.sum((1, 2)) == 64).all()  # one full 8x8 window
    for occ in (rows, cols):  # contiguous
        idx = occ.float().argmax(1)
        assert all(bool(occ[i, idx[i]: idx[i] + 8].all()) for i in range(300))
    assert local[1].shape == (300, 300)
    glob = random_network(RandomNetSpec(1, 512, 0.1, "global"), (16, 16), gen(1))[0]
    assert abs(float((glob != 0).float().mean()) - 0.1) < 0.01 and bool((glob != 0).any(1).all())
    sparse = random_network(RandomNetSpec(1, 64, 1e-4, "global"), (16, 16), gen(2))[0]
    assert ((sparse != 0).sum(1) == 1).all()  # every unit keeps at least one input
    x = torch.randn(4000, 256, generator=gen(3))
    pre = x @ glob.T  # He scaling per unit: unit-variance inputs give E[relu(u)^2] = 1
    assert float(torch.relu(pre).pow(2).mean()) == pytest.approx(1.0, abs=0.05)
    assert torch.equal(network_features([glob], x), torch.relu(pre))
    with pytest.raises(ValueError, match="connectivity"):
        random_network(RandomNetSpec(1, 8, 0.5, "conv"), (16, 16), gen(0))


def test_ridge_probe_matches_scikit_learn():
    from sklearn.linear_model import Ridge

    from structlearn.depth.random_nets import ridge_probe

    g = gen(4)
    y = torch.randint(0, 4, (600,), generator=g)
    f = torch.randn(600, 20, generator=g, dtype=F64) + 2.0 * torch.nn.functional.one_hot(y, 20).double()
    f = f * torch.linspace(0.5, 4, 20, dtype=F64)
    tr, te = slice(0, 400), slice(400, 600)
    res = ridge_probe(f[tr], y[tr], f[te], y[te], lambdas=(0.05,))
    mu, sd = f[tr].mean(0), f[tr].std(0, correction=0)
    sk = Ridge(alpha=0.05 * 400).fit(((f[tr] - mu) / sd).numpy(), torch.nn.functional.one_hot(y[tr], 4).numpy())
    want = float((sk.predict(((f[te] - mu) / sd).numpy()).argmax(1) == y[te].numpy()).mean())
    assert res.accuracy == pytest.approx(want, abs=1e-12) and res.lam == 0.05
    assert res.accuracy > 0.5  # planted class signal, chance 0.25


def test_spearman_bootstrap_interval():
    from structlearn.depth.random_nets import spearman_ci

    x = np.arange(30.0)
    assert spearman_ci(x, x**3, 200) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    rng = np.random.default_rng(0)
    rho, lo, hi = spearman_ci(rng.normal(size=200), rng.normal(size=200), 500, rng=np.random.default_rng(1))
    assert lo < 0 < hi and lo < rho < hi and hi - lo < 0.4
    rho, lo, hi = spearman_ci(x, -x + rng.normal(size=30), 500)
    assert rho < -0.9 and hi < -0.8


def test_randnet_cli_writes_json_and_scatter(tmp_path):
    from skimage.io import imread

    from structlearn.cli import main

    out = tmp_path / "runs"
    args = ["randnet", "--out", str(out), "--quiet", "--set", "n_nets=8", "--set", "n_train_per_class=60",
            "--set", "n_test_per_class=30", "--set", "images=[camera,grass,brick,coins]", "--set", "n_bootstrap=50",
            "--set", "widths=[8,64]"]
    assert main(args) == 0
    (run,) = out.iterdir()
    r = json.loads((run / "random_nets.json").read_text())
    assert r["n_nets"] == 8 and len(r["nets"]) == 8 and -1 <= r["spearman_rho"] <= 1
    assert r["ci95"][0] <= r["spearman_rho"] <= r["ci95"][1] and r["chance_accuracy"] == 0.25
    assert {n["width"] for n in r["nets"]} <= {8, 64} and r["config"]["n_nets"] == 8
    assert imread(run / "random_nets.png").shape[0] > 200
    assert main(["randnet", "--out", str(out), "--set", "density=[0, 1]"]) == 2


def test_storage_specs(tmp_path):
    import optuna

    from structlearn.depth.storage import is_single_process, make_storage, storage_url_for_display

    assert isinstance(make_storage(None, tmp_path), optuna.storages.RDBStorage) and (tmp_path / "study.db").exists()
    j = make_storage(f"journal:{tmp_path / 'shared' / 'j.log'}", tmp_path)
    assert isinstance(j, optuna.storages.JournalStorage) and (tmp_path / "shared" / "j.log").exists()
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # any SQLAlchemy URL passes through unchanged
    optuna.create_study(storage=make_storage(url, tmp_path), study_name="s")
    assert optuna.load_study(study_name="s", storage=url).study_name == "s"
    assert storage_url_for_display("postgresql://me:secret@db.example/optuna", tmp_path) == \
        "postgresql://me:***@db.example/optuna"
    assert is_single_process(None) and is_single_process(url) and not is_single_process("journal")
    with pytest.raises(ValueError, match="cannot open the database"):
        make_storage("sqlite:////nonexistent-dir/x/study.db", tmp_path)
    with pytest.raises(ValueError, match="SQLAlchemy URL"):
        make_storage("redis-please", tmp_path)


SECRET = "s3cr3t-Pa55"


def _grep_tree(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_an_unreachable_database_with_a_password_leaves_no_trace(tmp_path):
    """Issue 12: the password appears in no file and no output, and no folder is bound to it."""
    url = f"postgresql+psycopg2://someone:{SECRET}@127.0.0.1:9/db"  # nothing listens on port 9
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "search", str(_yaml(tmp_path)), "--out",
                        str(tmp_path / "runs"), "--storage", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot open the database" in r.stderr
    assert SECRET not in r.stderr + r.stdout and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert _grep_tree(tmp_path, SECRET) == []


def test_a_database_password_is_never_stored_and_the_folder_is_owner_only(postgres_url, tmp_path, monkeypatch):
    """The throw-away server trusts local connections, so any password connects: the URL with a
    password works, search_state.json keeps the URL without it, the folder is 0700, and a
    resume finds the password in STRUCTLEARN_STORAGE_URL."""
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@")
    cmd = [sys.executable, "-m", "structlearn.cli", "search", str(_yaml(tmp_path, n_trials=2)), "--out",
           str(tmp_path / "runs"), "--study-name", "secret-study"]
    r = subprocess.run(cmd + ["--storage", url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stderr + r.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert (run.stat().st_mode & 0o777) == 0o700
    assert _grep_tree(tmp_path, SECRET) == []
    assert json.loads((run / "search_state.json").read_text())["storage"] == postgres_url
    env = {**os.environ, "STRUCTLEARN_STORAGE_URL": url}
    r = subprocess.run([sys.executable, "-m", "structlearn.cli", "search", "--resume", str(run), "--n-trials", "3"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stderr + r.stdout and _grep_tree(tmp_path, SECRET) == []
