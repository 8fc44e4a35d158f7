"""Bad input: each gets a ValueError that names the problem and the allowed values."""
import numpy as np
import pytest

from structlearn.cli import main
from structlearn.config import load_config
from structlearn.train import Trainer

SMALL = ["data.n_train=600", "data.n_test=50", "layers.0.n_units=8", "layers.0.steps=2",
         "layers.0.prune.finetune_steps=0", "wandb=disabled"]


@pytest.mark.parametrize("override, msg", [
    ("nope=1", "unknown config key.*nope.*allowed: name, seed"),
    ("data.colour=1", "unknown config key.*colour.*in data; allowed: source"),
    ("layers.0.objective=magic", "unknown objective 'magic'; available: .*sparse_coding"),
    ("layers.0.params.lam=0", "lam=0 out of range; allowed: finite numbers in \\(0, inf\\)"),
    ("layers.0.params.lam=.inf", "lam=inf is not finite"),
    ("layers.0.params.n_iter=2.5", "n_iter=2.5 is not an integer"),
    ("layers.0.params.lam=-1", "lam=-1 out of range"),
    ("layers.0.params.nonsense=3", "nonsense"),
    ("layers.0.prune.threshold=null", None),  # valid: magnitude's own default threshold applies
    ("layers.0.prune.density=1.5", "exactly one|density"),
    ("data.grid=[1, 1]", "one tile"),
    ("data.tile=[600, 8]", "larger than every image"),
    ("data.whitening=pca", "allowed: zca, one_over_f, none"),
    ("wandb=maybe", "allowed: offline, online, online-or-offline, disabled"),
    ("device=tpu", "allowed: auto, cpu, cuda"),
    ("layers.0.prune.finetune_params={lam: -2}", "lam=-2"),
    ("layers.0.n_units=0", "n_units"),
    ("data.n_train=abc", "integer"),
])
def test_bad_config_values(override, msg):
    if msg is None:  # threshold=None and density=None: the pruner's default (0.1) applies
        assert load_config(None, SMALL + [override]).layers[0].prune.build().threshold == 0.1
        return
    with pytest.raises(ValueError, match=msg):
        Trainer(load_config(None, SMALL + [override])).run()


def test_bad_yaml_files(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("layers: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(p)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_folder_source_errors_through_the_pipeline(tmp_path):
    from skimage.io import imsave

    with pytest.raises(ValueError, match="holds no images"):
        Trainer(load_config(None, SMALL + [f"data.source={tmp_path}"])).run()
    imsave(tmp_path / "flat.png", np.full((40, 40), 128, np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match="flat.png: constant image"):
        Trainer(load_config(None, SMALL + [f"data.source={tmp_path}"])).run()


def test_cli_reports_errors_without_traceback(capsys, tmp_path):
    rc = main(["discover", "--set", "layers.0.params.lam=-1", "--set", "wandb=disabled", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "lam=-1 out of range" in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written: no run folder at all


def test_wandb_section_and_the_forms_of_earlier_versions():
    """``wandb`` is a section (mode and identity); the string form and ``wandb_project`` of
    earlier config files (and run folders) still load, with the same meaning."""
    from structlearn.config import RunConfig, from_dict, load_config, merge_config, to_dict

    cfg = load_config(None, ["wandb=disabled", "wandb.group=g", "wandb.tags=[a, b]", "wandb_project=p"])
    assert (cfg.wandb.mode, cfg.wandb.group, cfg.wandb.tags, cfg.wandb.project) == ("disabled", "g", ("a", "b"), "p")
    old = merge_config(to_dict(RunConfig()), {"wandb": "online", "wandb_project": "q"})
    assert from_dict(RunConfig, old).wandb == from_dict(RunConfig, {"wandb": {"mode": "online", "project": "q"}}).wandb
    assert from_dict(RunConfig, {"wandb": "offline", "wandb_project": "z"}).wandb.project == "z"
