"""A 3-layer stack from one YAML (issue 3, done-point 6): greedy layer-wise training where each
layer learns on the previous layer's outputs after its nonlinearity, with every layer's
weights, masks and metrics in the run folder. Tiny sizes of experiments/stack3.yaml."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from structlearn.build import apply_nonlinearity, encode_all
from structlearn.config import load_config
from structlearn.metrics import evaluate
from structlearn.testing import trainer_in

STACK = Path(__file__).resolve().parents[1] / "experiments" / "stack3.yaml"

# experiments/stack3.yaml shrunk: 2x2 mosaics of 4x4 tiles (64 pixels); 16 -> 8 -> 4 units
TINY = [
    "data.grid=[2, 2]", "data.tile=[4, 4]", "data.n_train=1200", "data.n_test=200",
    "layers.0.n_units=16", "layers.0.steps=30", "layers.0.batch_size=64", "layers.0.prune.finetune_steps=10",
    "layers.0.params.lam=0.5", "layers.0.params.n_iter=15", "layers.0.params.eval_iter=40",
    "layers.1.n_units=8", "layers.1.steps=30", "layers.1.batch_size=64", "layers.1.prune.finetune_steps=10",
    "layers.1.params.n_iter=15", "layers.1.params.eval_iter=40",
    "layers.2.n_units=4", "layers.2.steps=60", "layers.2.batch_size=64", "layers.2.prune.finetune_steps=10",
    "eval_every=20", "checkpoint_every=20", "wandb=disabled",
]
# input width of each layer: 64 pixels, 16 units pooled in groups of 4, then 8 units (|z|)
N_IN = [64, 4, 8]
N_UNITS = [16, 8, 4]
OBJECTIVES = ["group_sparse_coding", "sparse_coding", "rica"]


def test_stack3_yaml_is_a_three_layer_stack():
    cfg = load_config(STACK)
    assert [lc.objective for lc in cfg.layers] == OBJECTIVES
    assert [lc.nonlinearity for lc in cfg.layers[:2]] == ["pool_energy", "abs"]
    assert all(lc.prune is not None for lc in cfg.layers)


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory):
    """The tiny stack, trained in-process (for the objectives) into a run folder."""
    run_dir = tmp_path_factory.mktemp("stack")
    cfg = load_config(STACK, TINY)
    trainer = trainer_in(cfg, run_dir)
    summary = trainer.run()
    return cfg, trainer, run_dir, summary


def test_each_layer_has_its_shapes_masks_and_files(stack_run):
    cfg, trainer, run_dir, summary = stack_run
    assert len(summary["layers"]) == 3 and len(trainer.objectives) == 3
    for li in range(3):
        saved = torch.load(run_dir / f"layer{li}.pt", weights_only=True)
        w, mask = saved["weight"], saved["mask"]
        assert w.shape == mask.shape == (N_UNITS[li], N_IN[li]), li
        assert mask.dtype == torch.bool
        assert bool((w[~mask] == 0).all()), f"layer {li}: pruned weights are not exactly zero"
        assert 0 < float(mask.float().mean()) < 1, f"layer {li}: nothing was pruned"
        assert bool(mask.any(1).all()), f"layer {li}: a unit lost every weight"
        layer = trainer.objectives[li].layer
        torch.testing.assert_close(layer.weight.detach().cpu(), w, rtol=0, atol=0)
        assert torch.equal(layer.mask.cpu(), mask)
        assert saved["input_shape"] == ([8, 8] if li == 0 else [N_IN[li]])
        m = summary["layers"][li]
        assert m["layer"] == li and m["objective"] == OBJECTIVES[li] and m["n_units"] == N_UNITS[li]
        assert abs(m["density"] - float(mask.float().mean())) < 1e-6
        for key in ("loss", "recon_rel_error", "code_kurtosis", "recon_rel_error_before_prune"):
            assert key in m and m[key] == m[key], (li, key)  # present and not NaN
        assert m["recon_rel_error"] < 1.0, f"layer {li} reconstructs worse than zero"
    assert "tile_purity_mean" in summary["layers"][0] and "tile_purity_mean" not in summary["layers"][1]
    for f in ("summary.json", "checkpoint.pt", "filters_after_prune.png", "tile_map.png"):
        assert (run_dir / f).is_file(), f
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert [m["objective"] for m in on_disk["layers"]] == OBJECTIVES


def test_each_layer_learns_on_the_previous_layers_outputs(stack_run):
    """Re-encode the held-out data through the saved stack (codes -> nonlinearity ->
    standardised with the training codes' statistics): layer l's reported metrics are
    reproduced only from layer l-1's outputs, and not from the raw input."""
    cfg, trainer, run_dir, summary = stack_run
    dev = trainer.device
    x_train, x_test = trainer.data.train, trainer.data.test
    for li, (obj, lcfg) in enumerate(zip(trainer.objectives, cfg.layers)):
        if li > 0:
            m = evaluate(obj, x_test, None, image_input=False)
            assert abs(m["recon_rel_error"] - summary["layers"][li]["recon_rel_error"]) < 1e-4 * max(1.0, m["recon_rel_error"])
        h_train = apply_nonlinearity(encode_all(obj, x_train, dev), lcfg)
        h_test = apply_nonlinearity(encode_all(obj, x_test, dev), lcfg)
        if li == 0:
            assert h_train.shape[1] == N_UNITS[0] // cfg.layers[0].pool_group
            assert bool((h_train >= 0).all())  # pooled energies
        mu, sd = h_train.mean(0), h_train.var(0).mean().sqrt()
        x_train, x_test = ((h_train - mu) / sd).float(), ((h_test - mu) / sd).float()


def test_stack3_from_the_command_line(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "structlearn.cli", "discover", str(STACK), "--out", str(out), "--no-progress",
           "--wandb", "disabled"] + [a for s in TINY for a in ("--set", s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (run,) = list(out.iterdir())
    assert load_config(run / "config.yaml", []).layers[2].n_units == N_UNITS[2]  # the resolved config
    summary = json.loads((run / "summary.json").read_text())
    assert [m["objective"] for m in summary["layers"]] == OBJECTIVES
    for li in range(3):
        saved = torch.load(run / f"layer{li}.pt", weights_only=True)
        assert saved["weight"].shape == (N_UNITS[li], N_IN[li])
        assert bool((saved["weight"][~saved["mask"]] == 0).all())
