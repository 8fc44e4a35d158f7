"""Plug-in points: the entry-point group loads the NAS plugin; its space is centred on the spec."""
import json
from importlib.metadata import entry_points

import optuna
import pytest
import torch

from structlearn.export import EXPORTERS, build_module, make_spec

SPEC = make_spec((24, 24), [
    {"type": "conv2d", "out_channels": 8, "kernel_size": [5, 5], "stride": [2, 2], "padding": [0, 0]},
    {"type": "activation", "fn": "abs"},
    {"type": "pool", "kind": "l2", "kernel_size": [2, 2], "stride": [2, 2]},
])


def test_nas_plugin_is_found_through_the_entry_point_group(tmp_path):
    names = [ep.name for ep in entry_points(group="structlearn.plugins")]
    assert "nas" in names  # installed by `make test` (pip install -e plugins/structlearn-nas)
    write = EXPORTERS.create("optuna_space")  # unknown until the plugin hook has run
    write(SPEC, tmp_path / "space.json")
    import json

    space = json.loads((tmp_path / "space.json").read_text())
    conv = space["stages"][0]
    assert conv["out_channels"] == [4, 8, 16] and conv["kernel_size"] == [3, 5, 7] and conv["stride"] == [2, 3]


def test_nas_trials_sample_valid_buildable_specs(tmp_path):
    import structlearn_nas

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0),
                                storage=f"sqlite:///{tmp_path / 'nas.db'}")
    shapes = set()

    def objective(trial):
        spec = structlearn_nas.suggest_spec(trial, SPEC)
        out = build_module(spec)(torch.randn(2, 1, 24, 24))
        shapes.add(tuple(out.shape[1:]))
        return float(out.numel())

    study.optimize(objective, n_trials=12)
    assert len(study.trials) == 12 and len(shapes) > 1  # the space really varies the architecture
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


SHARED = make_spec((12, 12), [
    {"type": "shared_conv", "out_channels": 6, "kernel_size": [5, 5], "units": 40},
    {"type": "activation", "fn": "abs"},
    {"type": "dense", "out_features": 10},
    {"type": "activation", "fn": "relu"},
    {"type": "dense", "out_features": 4},
])


@pytest.mark.parametrize("spec", [SPEC, SHARED], ids=["conv", "shared_conv"])
def test_optuna_distributions_seeding_and_the_sampled_names_agree(spec, tmp_path):
    """The `optuna` export is Optuna's own distribution JSON, keyed by the names suggest_spec
    samples; the discovered architecture is a point of that space and seeds a study's first trial."""
    from optuna.distributions import json_to_distribution

    import structlearn_nas

    EXPORTERS.create("optuna")(spec, tmp_path / "space.json")
    loaded = {k: json_to_distribution(v) for k, v in json.loads((tmp_path / "space.json").read_text()).items()}
    assert loaded == structlearn_nas.distributions(spec)
    seeded = structlearn_nas.discovered_params(spec)
    assert set(seeded) == set(loaded) and all(loaded[k]._contains(loaded[k].to_internal_repr(v)) for k, v in seeded.items())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    assert structlearn_nas.seed_study(study, spec) == seeded
    names: list[set] = []

    def objective(trial):
        s = structlearn_nas.suggest_spec(trial, spec)
        names.append(set(trial.params))
        return float(build_module(s)(torch.randn(2, 1, *spec["input"]["shape"])).numel())

    study.optimize(objective, n_trials=6)
    first = study.trials[0]
    assert first.params == seeded and first.user_attrs["seeded_from"] == "spec"
    assert all(n == set(loaded) for n in names)
    base = structlearn_nas.suggest_spec(optuna.trial.FixedTrial(seeded), spec)  # the seed is the discovered shape
    assert [st["type"] for st in base["stages"]] == [("conv2d" if st["type"] == "shared_conv" else st["type"])
                                                     for st in spec["stages"]]
    assert base["stages"][0]["out_channels"] == spec["stages"][0]["out_channels"]


@pytest.mark.parametrize("spec", [SPEC, SHARED], ids=["conv", "shared_conv"])
def test_syne_tune_reads_the_exported_space(spec, tmp_path):
    """The `syne` export is Syne Tune's own config-space JSON (read back with its
    config_space_from_json_dict); the discovered point is a valid configuration of it."""
    from syne_tune.config_space import Categorical, config_space_from_json_dict

    import structlearn_nas

    EXPORTERS.create("syne")(spec, tmp_path / "syne.json")
    space = config_space_from_json_dict(json.loads((tmp_path / "syne.json").read_text()))
    dists = structlearn_nas.distributions(spec)
    assert set(space) == set(dists)
    for name, dom in space.items():
        assert isinstance(dom, Categorical) and list(dom.categories) == list(dists[name].choices)
    point = structlearn_nas.discovered_params(spec)
    assert all(point[k] in space[k].categories for k in space)


@pytest.mark.parametrize("spec", [SPEC, SHARED], ids=["conv", "shared_conv"])
def test_ray_tune_takes_the_exported_space_and_starts_from_the_discovered_point(spec, tmp_path):
    """The `ray` export, loaded as Ray Tune's own `tune.choice` domains, drives Ray's OptunaSearch:
    its first suggestion is the discovered architecture (points_to_evaluate), later ones stay in
    the space, and every suggestion builds as a spec through suggest_spec."""
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.sample import Categorical

    import structlearn_nas

    EXPORTERS.create("ray")(spec, tmp_path / "ray.json")
    space, points = structlearn_nas.load_ray_space(tmp_path / "ray.json")
    dists = structlearn_nas.distributions(spec)
    assert set(space) == set(dists)
    assert all(isinstance(d, Categorical) and list(d.categories) == list(dists[k].choices) for k, d in space.items())
    assert points == [structlearn_nas.discovered_params(spec)]
    search = OptunaSearch(space=space, metric="acc", mode="max", points_to_evaluate=points,
                          sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [search.suggest(f"t{i}") for i in range(6)]
    assert configs[0] == points[0]
    assert len({tuple(sorted(c.items())) for c in configs}) > 1  # it samples, not repeats
    for c in configs:
        assert all(c[k] in dists[k].choices for k in dists)
        built = build_module(structlearn_nas.suggest_spec(optuna.trial.FixedTrial(c), spec))
        assert built(torch.randn(2, 1, *spec["input"]["shape"])).isfinite().all()
    with pytest.raises(ValueError, match="format must be"):
        structlearn_nas.load_ray_space({"format": "other"})
    with pytest.raises(ValueError, match="non-empty list"):
        structlearn_nas.load_ray_space({"format": "structlearn.ray_param_space", "version": 1,
                                        "param_space": {"s0_kernel": {"choice": []}}})


def planted_local_layer(k=3, stride=3, per_place=8, side=12):
    """``per_place`` units on every k x k window at stride ``stride`` of a side x side input, as a
    masked dense stage and as the equivalent shared_conv stage."""
    tops = list(range(0, side - k + 1, stride))
    places = [(r, c) for r in tops for c in tops]
    n = len(places) * per_place
    mask = torch.zeros(n, side, side)
    for i, (r, c) in enumerate(places):
        mask[i * per_place:(i + 1) * per_place, r:r + k, c:c + k] = 1
    dense = make_spec((side, side), [{"type": "dense", "out_features": n, "masked": True}])
    shared = make_spec((side, side), [{"type": "shared_conv", "out_channels": per_place, "kernel_size": [k, k], "units": n}])
    g = torch.Generator().manual_seed(0)
    unit_place = torch.tensor(places).repeat_interleave(per_place, 0)
    sk = {"kernels": torch.randn(per_place, k, k, generator=g), "channel": torch.arange(n) % per_place,
          "top": unit_place[:, 0], "left": unit_place[:, 1], "gain": torch.ones(n)}
    return (dense, [{"weight": mask.flatten(1), "mask": mask.flatten(1)}]), (shared, [sk])


def test_colour_specs_search_and_project_like_grayscale_ones():
    """Colour: the spec-centred space samples RGB specs that build and take (n, 3, H, W); a
    planted colour layer (each unit's mask on all three channels of its window) lands on the same
    CNN point as the grayscale one, and the CNN point builds for RGB inputs."""
    import optuna

    import structlearn_nas

    spec = make_spec((3, 16, 16), [{"type": "conv2d", "out_channels": 8, "kernel_size": [5, 5], "stride": [2, 2],
                                    "padding": [0, 0]}, {"type": "activation", "fn": "abs"}])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        new = structlearn_nas.suggest_spec(study.ask(structlearn_nas.distributions(spec)), spec)
        assert new["input"] == {"channels": 3, "shape": [16, 16]}
        assert build_module(new)(torch.randn(2, 3, 16, 16)).shape[0] == 2
    (dense, [w]), _ = planted_local_layer(5, 2, 4, 12)
    mask = w["mask"].reshape(-1, 1, 12, 12).expand(-1, 3, -1, -1).flatten(1)
    colour = make_spec((3, 12, 12), [{"type": "dense", "out_features": mask.shape[0], "masked": True}])
    point = structlearn_nas.cnn_params_from_discovery(colour, [{"weight": mask, "mask": mask}])
    assert point == structlearn_nas.cnn_params_from_discovery(dense, [w])
    assert (point["channels"], point["kernel"], point["stride"]) == (4, 5, 2)
    rgb = structlearn_nas.cnn_spec(point, (3, 12, 12))
    assert rgb["input"]["channels"] == 3 and build_module(rgb)(torch.randn(2, 3, 12, 12)).shape[1] == 4
    # the same lattice as a shared_conv stage on RGB, colour kernels (C, 3, k, k) with one channel
    # zero: the same point, and the module runs on (n, 3, H, W)
    _, (shared, [sk]) = planted_local_layer(5, 2, 4, 12)
    ck = torch.zeros(4, 3, 5, 5)
    ck[:, 1:] = sk["kernels"][:, None]
    rgb_shared = make_spec((3, 12, 12), [dict(shared["stages"][0])])
    colour_sk = {**sk, "kernels": ck}
    assert structlearn_nas.cnn_params_from_discovery(rgb_shared, [colour_sk]) == point
    assert build_module(rgb_shared, [colour_sk])(torch.randn(2, 3, 12, 12)).shape == (2, sk["channel"].shape[0])


@pytest.mark.parametrize("k, stride, per_place", [(3, 3, 8), (5, 2, 4), (7, 4, 32)])
def test_the_discovered_layer_lands_on_its_planted_cnn_point(k, stride, per_place):
    """A layer of per_place units on every k x k window at stride s projects to (channels, kernel,
    stride) = (per_place, k, s) in the generic CNN space, from the masked dense and from the
    shared_conv form alike; the point builds as a CNN."""
    import structlearn_nas

    side = 24 if k == 7 else 12
    for spec, kernels in planted_local_layer(k, stride, per_place, side):
        point = structlearn_nas.cnn_params_from_discovery(spec, kernels)
        got = (point["channels"], point["kernel"], point["stride"], point["pool"])
        assert got == (per_place, k, stride, False), spec["stages"][0]["type"]
        out = build_module(structlearn_nas.cnn_spec(point, (side, side)))(torch.randn(2, 1, side, side))
        assert out.shape[1] == per_place
    conv = make_spec((12, 12), [{"type": "conv2d", "out_channels": 10, "kernel_size": [4, 4], "stride": [2, 2],
                                 "padding": [0, 0]}, {"type": "pool", "kind": "l2", "kernel_size": [2, 2], "stride": [2, 2]}])
    assert structlearn_nas.cnn_params_from_discovery(conv) == {"channels": 8, "kernel": 3, "stride": 2, "pool": True,
                                                               "activation": "relu"}
    with pytest.raises(ValueError, match="needs its kernels"):
        structlearn_nas.cnn_params_from_discovery(planted_local_layer()[1][0])
    with pytest.raises(ValueError, match="CNN parameters"):
        structlearn_nas.cnn_spec({**structlearn_nas.discovered_params(SPEC), "kernel": 4}, (12, 12))
