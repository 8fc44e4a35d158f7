"""Plug-in points: the entry-point group loads the NAS plugin; its space is centred on the spec."""
from importlib.metadata import entry_points

import optuna
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
