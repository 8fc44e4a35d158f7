"""Planted-depth data, user arrays, PCA-whitened log-magnitude layers, and the search that
recovers the planted depth."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from structlearn.build import PCAWhitening, apply_nonlinearity
from structlearn.config import LayerConfig, RunConfig, from_dict, merge_config, to_dict
from structlearn.configs import config_path
from structlearn.data.hierarchical import hierarchical
from structlearn.data.prepare import prepare
from structlearn.depth.space import load_search_config
from structlearn.info.total_correlation import total_correlation


def run_config(**data) -> RunConfig:
    d = merge_config(to_dict(RunConfig()), {"data": data, "wandb": "disabled"}, "")
    cfg = from_dict(RunConfig, d)
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- the generator
def test_hierarchical_is_seeded_finite_and_has_its_levels():
    x, levels = hierarchical(3000, 3, (16, 4, 2), (4.0, 16.0), torch.Generator().manual_seed(0))
    x2, _ = hierarchical(3000, 3, (16, 4, 2), (4.0, 16.0), torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and x.shape == (3000, 16)
    assert [tuple(lv.shape) for lv in levels] == [(3000, 16), (3000, 4), (3000, 2)]
    assert bool(torch.isfinite(x).all())


def test_only_planted_levels_are_dependent():
    """L = 1: independent sources; L = 2: sources coupled through their variances, and the
    top level independent."""
    g = torch.Generator().manual_seed(1)
    _, one = hierarchical(8000, 1, (16,), (), g)
    _, two = hierarchical(8000, 2, (16, 4), (4.0,), g)
    assert abs(total_correlation(one[0]).total) < 0.05
    assert total_correlation(two[0]).total > 1.0
    assert abs(total_correlation(two[1]).total) < 0.05


@pytest.mark.parametrize("data,match", [
    ({"depth": 4}, "data.depth=4 out of range; allowed: 1, 2 or 3"),
    ({"depth": 3, "dims": [16, 4]}, "data.dims=\\[16, 4\\]; allowed: at least data.depth=3"),
    ({"depth": 2, "modulation": [float("inf")]}, "data.modulation"),
    ({"depth": 2, "modulation": [-1.0]}, "finite numbers > 0"),
    ({"whitening": "one_over_f"}, "allowed for data.kind='hierarchical': zca, none"),
])
def test_hierarchical_bad_config(data, match):
    with pytest.raises(ValueError, match=match):
        run_config(kind="hierarchical", **data)


def test_hierarchical_prepare_is_whitened_vectors():
    cfg = run_config(kind="hierarchical", depth=2, dims=[16, 4], n_train=4000, n_test=500, zca_floor=1e-6)
    data = prepare(cfg.data, 0)
    assert data.input_shape == (1, 16) == cfg.data.input_shape
    assert data.train.shape == (4000, 16) and data.test.shape == (500, 16)
    c = torch.cov(data.train.double().T)
    assert torch.allclose(c, torch.eye(16, dtype=torch.float64), atol=5e-3)  # float32 samples spanning 4 decades


# ----------------------------------------------------------------------------- user arrays
def test_array_source_vectors_and_images(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.laplace(size=(600, 12)).astype(np.float32)
    np.save(tmp_path / "v.npy", vec)
    cfg = run_config(kind="array", source=str(tmp_path / "v.npy"), n_train=500, n_test=100)
    data = prepare(cfg.data, 0)
    assert data.input_shape == (1, 12) == cfg.data.input_shape and data.train.shape == (500, 12)
    assert torch.equal(prepare(cfg.data, 0).train, data.train)
    ims = rng.normal(size=(300, 6, 5)) + 3.0
    np.savez(tmp_path / "ims.npz", x=ims, labels=np.arange(300))
    cfg = run_config(kind="array", source=str(tmp_path / "ims.npz"), n_train=250, n_test=50, remove_mean="tile")
    data = prepare(cfg.data, 0)
    assert data.input_shape == (6, 5) and data.train.shape == (250, 30)


@pytest.mark.parametrize("content,match", [
    (np.full((50, 4), np.nan), "contains NaN or Inf"),
    (np.ones((50, 4)), "constant across samples"),
    (np.arange(10.0), "shape \\(10,\\); allowed: \\(n, d\\) vectors or \\(n, H, W\\) images"),
    (np.array(["a", "b"] * 10).reshape(10, 2), "dtype <U1; allowed: real numbers"),
])
def test_array_source_bad_content(tmp_path, content, match):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(ValueError, match=match) as e:
        cfg = run_config(kind="array", source=str(tmp_path / "bad.npy"), n_train=10, n_test=2)
        prepare(cfg.data, 0)
    assert "bad.npy" in str(e.value)


def test_array_source_bad_files(tmp_path):
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="corrupt.npy.*corrupt, truncated or not in numpy's format"):
        run_config(kind="array", source=str(tmp_path / "corrupt.npy"))
    with pytest.raises(ValueError, match="missing.npz' does not exist"):
        run_config(kind="array", source=str(tmp_path / "missing.npz"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy.*without pickled objects"):
        run_config(kind="array", source=str(tmp_path / "obj.npy"))
    np.savez(tmp_path / "two.npz", a=np.ones((4, 2)), b=np.ones((4, 2)))
    with pytest.raises(ValueError, match="holds arrays \\['a', 'b'\\]; allowed: one array, or one named 'x'"):
        run_config(kind="array", source=str(tmp_path / "two.npz"))
    np.save(tmp_path / "small.npy", np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(ValueError, match="has 20 samples; data.n_train \\+ data.n_test = 60; allowed: at most 20"):
        prepare(run_config(kind="array", source=str(tmp_path / "small.npy"), n_train=50, n_test=10).data, 0)
    with pytest.raises(ValueError, match="allowed: data.kind 'array' exactly when data.source is a .npy or .npz"):
        run_config(kind="patches", source=str(tmp_path / "small.npy"))
    with pytest.raises(ValueError, match="allowed: data.kind 'array' exactly when"):
        run_config(kind="array", source="bundled")


# ----------------------------------------------------------------------------- layers
def test_pca_whitening_and_log_abs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 6, generator=g) @ torch.randn(6, 6, generator=g)
    pca = PCAWhitening(x, 3)
    y = pca(x).double()
    assert y.shape == (5000, 3)
    assert torch.allclose(torch.cov(y.T, correction=0), torch.eye(3, dtype=torch.float64), atol=1e-5)
    with pytest.raises(ValueError, match="fewer than n_units=3 dimensions"):
        PCAWhitening(torch.cat([x[:, :2], x[:, :1]], 1), 3)
    z = torch.tensor([[-2.0, 0.0, 3.0]])
    assert torch.allclose(apply_nonlinearity(z, LayerConfig(nonlinearity="log_abs")),
                          torch.log(torch.tensor([[2.0, 1e-6, 3.0]])))


def test_pca_input_wider_than_its_input_is_refused():
    from structlearn.train import Trainer

    d = merge_config(to_dict(RunConfig()), {
        "data": {"kind": "hierarchical", "depth": 2, "dims": [8, 2], "n_train": 500, "n_test": 100},
        "layers": [{"n_units": 4, "objective": "infomax", "steps": 1, "prune": None},
                   {"n_units": 6, "objective": "infomax", "steps": 1, "prune": None, "pca_input": True}],
        "wandb": "disabled"}, "")
    cfg = from_dict(RunConfig, d)
    cfg.validate()
    with pytest.raises(ValueError, match="layers.1.pca_input keeps n_units=6 principal components of 4 inputs"):
        Trainer(cfg).prepare()


def test_per_layer_widths_are_checked():
    with pytest.raises(ValueError, match="search.widths"):
        load_search_config(config_path("search_planted"), ["search.widths=[[64], []]"])
    cfg = load_search_config(config_path("search_planted"), ["search.widths=[[64], [4, 8]]"])
    assert cfg.search.layer_widths_lists() == [[64], [4, 8], [4, 8], [4, 8]]


# ----------------------------------------------------------------------------- recovery
SMALL = ["search.n_trials=1"]  # the enqueued first trial: the deepest stack, stopped where the gain vanishes


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_search_recovers_planted_depth_small(tmp_path, depth):
    """One seed, one trial (the README's experiment runs 5 seeds x 8 trials): the first trial
    runs the deepest stack; the chosen depth is the planted one, every planted layer gains at
    least the threshold and every layer past it less."""
    from structlearn.depth.study import run_search

    cfg = load_search_config(config_path("search_planted"), SMALL + [f"data.depth={depth}"])
    summary = run_search(cfg, tmp_path / "s", log=lambda m: None)
    gains = summary["best_trial"]["gains"]
    assert summary["chosen_depth"] == depth, gains
    assert all(g >= cfg.search.threshold for g in gains[:depth])
    assert all(g < cfg.search.threshold for g in gains[depth:])


@pytest.mark.slow
def test_planted_depth_experiment_full_size(tmp_path):
    """The README's experiment: 5 seeds per depth, threshold from calibration seeds; at least
    4 of 5 recovered for each L."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("planted_depth", Path(__file__).parents[1] / "experiments" / "planted_depth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "planted_depth.json").read_text())
    assert all(v >= 4 for v in res["recovered"].values()), res["recovered"]
    assert math.isfinite(res["threshold"])


def test_trial_config_copies_pca_input_and_log_abs():
    from structlearn.depth.space import trial_config

    cfg = load_search_config(config_path("search_planted"))
    run = trial_config(cfg, {"depth": 3, "width_1": 64, "width_2": 8, "width_3": 2})
    assert [lc.n_units for lc in run.layers] == [64, 8, 2]
    assert all(lc.pca_input and lc.nonlinearity == "log_abs" for lc in run.layers)
    assert replace(run.data, depth=1).depth == 1


def test_total_correlation_search_refuses_too_few_held_out_samples_before_any_file(tmp_path):
    from structlearn.cli import main

    rc = main(["search", "search_planted", "--set", "data.n_test=100", "--out", str(tmp_path / "runs")])
    assert rc == 2
    assert not (tmp_path / "runs").exists()


def test_discover_and_export_run_on_vector_samples(tmp_path):
    """Planted vectors go through discover unchanged: no spatial read-out (a reason instead),
    and the exported spec has the log-magnitude activation."""
    import json

    import yaml

    from structlearn.cli import main

    cfg = {"name": "vec", "seed": 0, "wandb": "disabled",
           "data": {"kind": "hierarchical", "depth": 2, "dims": [16, 4], "n_train": 2000, "n_test": 500, "zca_floor": 1e-6},
           "layers": [{"objective": "infomax", "n_units": 16, "params": {"method": "newton", "score": "extended"},
                       "steps": 10, "batch_size": 2000, "prune": None, "nonlinearity": "log_abs"},
                      {"objective": "infomax", "n_units": 4, "params": {"method": "newton", "score": "extended"},
                       "steps": 10, "batch_size": 2000, "prune": None, "pca_input": True}]}
    (tmp_path / "vec.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["discover", str(tmp_path / "vec.yaml"), "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    layers = json.loads((run / "structure.json").read_text())["layers"]
    assert "vectors of 16 values" in layers[0]["error"]
    assert main(["export", str(run)]) == 0
    spec = json.loads((run / "architecture.json").read_text())
    assert {"type": "activation", "fn": "log_abs"} in [{k: st[k] for k in ("type", "fn")} for st in spec["stages"]
                                                        if st["type"] == "activation"]
