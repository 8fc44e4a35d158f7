"""Downstream use of a discovered layer: the information-plane estimator against its closed
forms and a float64 loop, the comparison nets (same fan-in, same parameter count), seeded
training, and the experiment end to end on a tiny run."""
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from structlearn.export.model import DiscoveredNet
from structlearn.info.plane import kde_information_plane
from structlearn.supervised import VARIANTS, FirstLayer, Task, effective_params, fit, matched_cnn_channels, variant_spec
from structlearn.supervised.nets import cnn_params

ROOT = Path(__file__).resolve().parents[1]


def loop_reference(t, y, noise):
    """The two bounds with explicit float64 loops over pairs (math.exp, math.log)."""
    t = t.double().tolist()
    n, d = len(t), len(t[0])
    mean = [sum(r[k] for r in t) / n for k in range(d)]
    s2 = noise * sum(sum((r[k] - mean[k]) ** 2 for k in range(d)) for r in t) / n

    def term(idx):
        out = 0.0
        for i in idx:
            acc = sum(math.exp(-sum((t[i][k] - t[j][k]) ** 2 for k in range(d)) / (2 * s2)) for j in idx)
            out -= math.log(acc / len(idx))
        return out / len(idx)

    hx = term(range(n))
    labels = y.tolist()
    cond = sum(labels.count(c) / n * term([i for i in range(n) if labels[i] == c]) for c in set(labels))
    return hx, hx - cond


def test_information_plane_matches_a_float64_loop_and_is_invariant_to_scale_and_rotation():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(30, 4, generator=g) + torch.arange(30)[:, None] % 3
    y = torch.arange(30) % 3
    got = kde_information_plane(t, y, noise=0.2)
    want = loop_reference(t, y, 0.2)
    assert got == pytest.approx(want, abs=1e-10)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    moved = kde_information_plane(7.5 * t.double() @ q + 3.0, y, noise=0.2)
    assert moved == pytest.approx(got, abs=1e-9)
    assert 0 < got[1] < got[0] < math.log(30)


def test_information_plane_closed_forms():
    n = 24
    y = torch.arange(n) % 4
    # every sample distinct and far apart (relative to the noise): I(X;T') = log n, and with 4
    # equal classes I(T';Y) = log n - log(n/4) = log 4 = H(Y)
    ixt, ity = kde_information_plane(torch.eye(n) * 5.0, y, noise=1e-3)
    assert ixt == pytest.approx(math.log(n), abs=1e-9) and ity == pytest.approx(math.log(4), abs=1e-9)
    # one tight cluster per class, clusters far apart: both equal H(Y)
    centres = torch.eye(4)[y] * 10 + 1e-4 * torch.randn(n, 4, generator=torch.Generator().manual_seed(1))
    ixt, ity = kde_information_plane(centres, y, noise=1e-3)
    assert ixt == pytest.approx(math.log(4), abs=1e-6) and ity == pytest.approx(math.log(4), abs=1e-6)
    # a constant layer carries nothing
    assert kde_information_plane(torch.ones(n, 3), y) == (0.0, 0.0)
    # more noise, less information (a monotone family of bounds)
    t = torch.randn(n, 5, generator=torch.Generator().manual_seed(2))
    vals = [kde_information_plane(t, y, s)[0] for s in (0.01, 0.1, 1.0)]
    assert vals[0] > vals[1] > vals[2] > 0


@pytest.mark.parametrize("t, y, noise, msg", [
    (torch.randn(5), torch.zeros(5), 0.1, "allowed: \\(n, d\\)"),
    (torch.full((4, 2), float("nan")), torch.zeros(4), 0.1, "NaN"),
    (torch.randn(4, 2), torch.zeros(3), 0.1, "labels"),
    (torch.randn(4, 2), torch.zeros(4), 0.0, "noise=0.0 out of range"),
])
def test_information_plane_bad_input(t, y, noise, msg):
    with pytest.raises(ValueError, match=msg):
        kde_information_plane(t, y, noise)


def planted_layer(n_units=12, shape=(6, 6)):
    """A layer of local units: each reads one 3 x 3 window (the mask) of a 6 x 6 input."""
    mask = torch.zeros(n_units, shape[0] * shape[1])
    for i in range(n_units):
        r, c = (i // 4) % 4, i % 4
        win = torch.zeros(shape)
        win[r:r + 3, c:c + 3] = 1
        mask[i] = win.flatten()
    weight = torch.randn(n_units, mask.shape[1], generator=torch.Generator().manual_seed(0)) * mask
    from structlearn.export.spec import make_spec

    spec = make_spec(shape, [{"type": "dense", "out_features": n_units, "masked": True}])
    return FirstLayer(spec, [{"weight": weight, "mask": mask}], mask)


def test_variants_keep_fan_in_density_and_parameter_budget():
    layer = planted_layer()
    built = {}
    spec0, k0 = variant_spec("discovered", layer, 3, torch.Generator().manual_seed(0))
    target = effective_params(DiscoveredNet(spec0, k0, num_classes=3))
    for v in VARIANTS:
        spec, k = variant_spec(v, layer, 3, torch.Generator().manual_seed(1), target_params=target)
        built[v] = DiscoveredNet(spec, k, num_classes=3)
        assert built[v](torch.randn(2, 1, 6, 6)).shape == (2, 3)
    disc = built["discovered"].features[1]  # after the Flatten
    assert torch.equal(disc.mask, layer.mask) and torch.equal(disc.weight, layer.kernels[0]["weight"])
    rand = built["random_mask"].features[1].mask
    assert torch.equal(rand.sum(1), layer.mask.sum(1)) and not torch.equal(rand, layer.mask)  # same fan-in, moved
    fresh = built["discovered_mask"].features[1]
    assert torch.equal(fresh.mask, layer.mask) and (fresh.weight.abs() <= 1 / 3 + 1e-7).all()  # bound 1/sqrt(9)
    assert effective_params(built["random_mask"]) == effective_params(built["discovered_mask"]) == target
    assert effective_params(built["dense"]) == 12 * 36 + 12 * 3 + 3
    c = built["cnn"].features[0].out_channels
    assert c == matched_cnn_channels(target, (6, 6), 3)
    assert abs(cnn_params(c, (6, 6), 3) - target) <= min(abs(cnn_params(c + d, (6, 6), 3) - target) for d in (-1, 1))
    with pytest.raises(ValueError, match="variant='conv'"):
        variant_spec("conv", layer, 3, torch.Generator())


def tiny_task(seed=0):
    """Two classes told apart by the sign of one local pattern."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(200) % 2
    x = torch.randn(200, 1, 6, 6, generator=g) * 0.3
    x[:, 0, 1, 1] += (2 * y - 1).float()
    return Task("tiny", x[:150], y[:150], x[150:], y[150:], 2)


def test_fit_is_seeded_learns_and_leaves_the_global_rng_alone():
    layer = planted_layer()
    spec, k = variant_spec("discovered", layer, 2, torch.Generator().manual_seed(0))
    task = tiny_task()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = fit(lambda: DiscoveredNet(spec, k, num_classes=2), task, epochs=12, lr=0.02, seed=3, plane_every=6,
            plane_samples=50)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = fit(lambda: DiscoveredNet(spec, k, num_classes=2), task, epochs=12, lr=0.02, seed=3, plane_every=6,
            plane_samples=50)
    assert a.curve == b.curve and a.plane == b.plane  # same seed, same numbers
    assert a.test_acc >= 0.9 and a.curve[-1]["loss"] < a.curve[0]["loss"]
    assert sorted({p["epoch"] for p in a.plane}) == [0, 6, 12] and {p["layer"] for p in a.plane} == {"hidden", "output"}
    with pytest.raises(ValueError, match="epochs=0 out of range"):
        fit(lambda: DiscoveredNet(spec, k, num_classes=2), task, epochs=0)


TINY = {"name": "tiny", "seed": 0, "threads": 1, "wandb": "disabled",
        "data": {"grid": [2, 2], "tile": [6, 6], "n_train": 2000, "n_test": 200},
        "layers": [{"n_units": 48, "params": {"lam": 0.5, "n_iter": 15, "eval_iter": 30}, "steps": 60, "batch_size": 128,
                    "prune": {"threshold": 0.2, "finetune_steps": 10}}],
        "eval_every": 30, "checkpoint_every": 30}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from structlearn.cli import main as cli

    tmp = tmp_path_factory.mktemp("downstream")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert cli(["discover", str(tmp / "tiny.yaml"), "--out", str(tmp / "runs"), "--no-progress", "--no-html"]) == 0
    (run,) = (tmp / "runs").iterdir()
    return run


def experiment(name):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_downstream_experiment_end_to_end(tiny_run, tmp_path, capsys):
    run = tiny_run
    downstream = experiment("downstream")
    out = tmp_path / "ds"
    assert downstream.main(["--run", str(run), "--quick", "--tasks", "digits,lfw", "--plane-task", "lfw",
                            "--epochs", "2", "--out", str(out), "--threads", "1"]) == 0
    res = json.loads((out / "downstream.json").read_text())
    assert set(res["tasks"]) == {"digits", "lfw"} and (out / "info_plane.png").stat().st_size > 10_000
    for t in res["tasks"].values():
        assert set(t["rows"]) == set(VARIANTS)
        for row in t["rows"].values():
            assert len(row["test_acc"]) == 2 and all(0 <= a <= 1 for a in row["test_acc"])
        assert t["rows"]["random_mask"]["params"] == t["rows"]["discovered_mask"]["params"]
    assert res["tasks"]["digits"]["rows"]["discovered"]["mean"] > 0.3  # 10 classes: well above chance in 2 epochs
    assert "plane" in res["tasks"]["lfw"]["rows"]["discovered"] and "| digits (" in (out / "downstream.md").read_text()
    with pytest.raises(SystemExit):
        downstream.main(["--run", str(run), "--tasks", "imagenet"])
    assert "allowed: a comma-separated list from bundled, digits, lfw, cifar" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_colour_run(tmp_path_factory):
    from structlearn.cli import main as cli

    tmp = tmp_path_factory.mktemp("colour")
    cfg = {**TINY, "data": {"grid": [2, 2], "tile": [4, 4], "color": True, "images": ["astronaut", "chelsea", "coffee", "rocket"],
                            "n_train": 1500, "n_test": 100, "zca_floor": 0.1},
           "layers": [{**TINY["layers"][0], "n_units": 32, "steps": 30}]}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert cli(["discover", str(tmp / "c.yaml"), "--out", str(tmp / "runs"), "--no-progress", "--no-html"]) == 0
    (run,) = (tmp / "runs").iterdir()
    return run


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_downstream_on_a_colour_run(tiny_colour_run, tmp_path, capsys):
    """A colour run's downstream comparison: RGB patches of the four colour photographs, every
    variant on (n, 3, H, W), the hand-designed CNN matched in parameters with its 3 input
    channels counted; grayscale tasks are refused by name."""
    from structlearn.supervised.nets import VARIANTS, cnn_params

    downstream = experiment("downstream")
    out = tmp_path / "ds"
    assert downstream.main(["--run", str(tiny_colour_run), "--quick", "--epochs", "1", "--out", str(out),
                            "--threads", "1"]) == 0
    res = json.loads((out / "downstream.json").read_text())
    rows = res["tasks"]["bundled"]["rows"]
    assert list(res["tasks"]) == ["bundled"] and res["tasks"]["bundled"]["classes"] == 4
    assert set(rows) == set(VARIANTS) and all(0 <= v <= 1 for r in rows.values() for v in r["test_acc"])
    assert 32 * 3 * 64 <= rows["dense"]["params"] <= 32 * 3 * 64 + 32 + 32 * 4 + 4  # the dense layer reads all 3 H W inputs
    assert rows["discovered_mask"]["params"] == rows["random_mask"]["params"]  # the same fan-in per unit
    assert cnn_params(2, (3, 8, 8), 4) == 2 * 3 * 25 + 2 * 16 * 4 + 4 and cnn_params(2, (8, 8), 4) == 2 * 25 + 2 * 16 * 4 + 4
    with pytest.raises(SystemExit):
        downstream.main(["--run", str(tiny_colour_run), "--tasks", "bundled,digits", "--out", str(out)])
    assert "the run is colour (3, 8, 8); allowed: a comma-separated list from bundled, cifar" in capsys.readouterr().err


def test_nas_seeded_on_a_colour_run(tiny_colour_run, tmp_path):
    """A colour run's NAS comparison: its export is an RGB shared_conv, the seed point comes from
    its colour kernels, and both arms train RGB CNNs on RGB patches of the four colour photographs
    whitened with the run's colour ZCA."""
    run = tiny_colour_run
    nas = experiment("nas_seeded")
    out = tmp_path / "nas"
    assert nas.main(["--run", str(run), "--quick", "--repeats", "1", "--trials", "2", "--epochs", "1", "--out", str(out),
                     "--threads", "1"]) == 0
    res = json.loads((out / "nas_seeded.json").read_text())
    assert res["task"]["classes"] == 4 and res["task"]["train"] == 4 * 60
    seeded = next(s for s in res["studies"] if s["arm"] == "seeded")
    assert seeded["params"][0] == res["seed_point"] and all(0 <= v <= 1 for v in seeded["values"])
    from structlearn.runs import Run
    from structlearn.runs.export import spec_from_run

    spec, _ = spec_from_run(Run(run))
    assert spec["input"]["channels"] == 3 and spec["stages"][0]["type"] == "shared_conv"


def test_nas_seeded_experiment_end_to_end_and_resume(tiny_run, tmp_path):
    """Both arms run the same budget; the seeded arm's first trial is the discovered point; the
    studies persist, so a second call with a larger budget only adds the missing trials."""
    import optuna

    nas = experiment("nas_seeded")
    out = tmp_path / "nas"
    args = ["--run", str(tiny_run), "--quick", "--repeats", "1", "--trials", "3", "--epochs", "1", "--out", str(out),
            "--threads", "1"]
    assert nas.main(args) == 0
    first = json.loads((out / "nas_seeded.json").read_text())
    seeded = next(s for s in first["studies"] if s["arm"] == "seeded")
    assert seeded["params"][0] == first["seed_point"] and all(len(s["values"]) == 3 for s in first["studies"])
    assert first["curves"]["seeded"]["median"] == sorted(first["curves"]["seeded"]["median"])  # best so far
    assert nas.main([*args[:-4], "--trials", "5", "--out", str(out), "--threads", "1"]) == 0
    again = json.loads((out / "nas_seeded.json").read_text())
    for s0, s1 in zip(first["studies"], again["studies"]):
        assert len(s1["values"]) == 5 and s1["values"][:3] == s0["values"]  # kept, then extended
    study = optuna.load_study(study_name="seeded-r0", storage=f"sqlite:///{out / 'nas.db'}")
    assert len(study.trials) == 5 and (out / "nas_curves.png").stat().st_size > 10_000
    assert nas.trials_to_reach([0.1, 0.3, 0.3, 0.5], 0.3) == 2 and nas.trials_to_reach([0.1], 0.2) is None
