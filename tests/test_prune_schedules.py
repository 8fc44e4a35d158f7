"""Pruning schedules: exact target densities, IMP rounds, weight rewinding, masks that survive
training, exact resume in the middle of IMP, the density sweep and its knee, bad input."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

import structlearn.objectives  # noqa: F401  (registers the objectives)
from structlearn.config import load_config
from structlearn.loggers import JsonlLogger
from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES
from structlearn.prune import PRUNERS, IterativeMagnitudePruner, imp_schedule, magnitude_mask
from structlearn.prune.sweep import knee, summarise_sweep
from structlearn.runs.sweep import density_sweep
from structlearn.testing import trainer_in
from structlearn.train import Trainer

# a 2x2 mosaic of 4x4 tiles (64 pixels), 12 units: a whole run takes well under a second
TINY = ["name=tiny", "wandb=disabled", "data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=600", "data.n_test=100",
        "layers.0.n_units=12", "layers.0.params={lam: 0.3, n_iter: 10, eval_iter: 20}", "layers.0.steps=12",
        "layers.0.batch_size=32", "eval_every=5", "checkpoint_every=5"]
IMP = ["layers.0.prune.method=imp", "layers.0.prune.threshold=null", "layers.0.prune.density=0.2",
       "layers.0.prune.rounds=3", "layers.0.prune.finetune_steps=6"]


def tiny(*extra: str):
    return load_config(None, TINY + list(extra))


# ----------------------------------------------------------------------------- exact densities

@pytest.mark.parametrize("density, rounds", [(0.1, 1), (0.1, 4), (0.37, 3), (0.013, 7), (1.0, 2)])
def test_imp_schedule_is_geometric_and_ends_exactly(density, rounds):
    s = imp_schedule(density, rounds)
    assert len(s) == rounds and s[-1] == density  # bit-exact final density
    ratios = [s[0]] + [b / a for a, b in zip(s, s[1:])]
    np.testing.assert_allclose(ratios, density ** (1 / rounds), rtol=1e-12)  # same share kept each round


@pytest.mark.parametrize("scope", ["unit", "global"])
@pytest.mark.parametrize("density, rounds", [(0.1, 3), (0.05, 5), (0.5, 1)])
def test_imp_rounds_meet_each_target_exactly_and_nest(scope, density, rounds):
    g = torch.Generator().manual_seed(3)
    layer = DenseLayer(100, 40, generator=g)
    pruner = PRUNERS.create("imp", scope=scope, density=density, rounds=rounds)
    prev = layer.mask.clone()
    for r in range(rounds):
        with torch.no_grad():  # training between rounds moves the weights
            layer.weight.add_(0.3 * torch.randn(layer.weight.shape, generator=g)).mul_(layer.mask)
        pruner(layer, r)
        d = pruner.density_at(r)
        if scope == "unit":
            assert torch.all(layer.mask.sum(1) == round(d * 100))
        else:
            assert int(layer.mask.sum()) == round(d * 4000)
        assert not torch.any(layer.mask & ~prev)  # pruned weights never come back
        assert torch.all(layer.weight[~layer.mask] == 0)
        prev = layer.mask.clone()
    assert layer.density() == pytest.approx(density, abs=0.5 / 100)


def test_density_exact_even_with_kept_exact_zeros():
    """Kept weights that are exactly zero still rank above pruned ones: the count stays exact."""
    w = torch.tensor([[0.0, 0.0, 3.0, 0.0, 1.0, 2.0]])
    mask = torch.tensor([[True, True, True, False, False, True]])
    m = magnitude_mask(w, mask, scope="unit", density=0.5)  # 3 of the 4 kept ones
    assert int(m.sum()) == 3 and not torch.any(m & ~mask) and bool(m[0, 2]) and bool(m[0, 5])


def test_all_zero_mask_stays_all_zero():
    layer = DenseLayer(20, 5, generator=torch.Generator().manual_seed(0))
    layer.set_mask_(torch.zeros(5, 20, dtype=torch.bool))
    PRUNERS.create("imp", density=0.5, rounds=2)(layer, 0)
    assert int(layer.mask.sum()) == 0 and torch.all(layer.weight == 0)


def test_beta_lasso_pruner_threshold_and_shrink():
    layer = DenseLayer(4, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.02, 0.04, -0.3]]))
    p = PRUNERS.create("beta_lasso", lam=0.01, beta=3.0, lr=2.0)
    p(layer, 0)  # keep |w| >= 0.03
    assert layer.mask.tolist() == [[True, False, True, True]]
    p.after_step(layer)  # w - 0.02 sign(w) -> [0.48, 0, 0.02, -0.28]; 0.02 < 0.03 is pruned
    assert layer.mask.tolist() == [[True, False, False, True]]
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[0.48, 0.0, 0.0, -0.28]]))


# ----------------------------------------------------------------------------- the trainer

@pytest.mark.parametrize("method, extra", [
    ("magnitude", ["layers.0.prune.threshold=null", "layers.0.prune.density=0.25"]),
    ("imp", IMP[1:]),
    ("beta_lasso", ["layers.0.prune.threshold=null", "layers.0.prune.params={lam: 0.01, beta: 2.0, lr: 0.1}"]),
])
def test_masks_survive_training(method, extra, monkeypatch):
    """After every pruning round the mask only shrinks; magnitude masks stay fixed through
    fine-tuning; pruned weights stay exactly zero at every step; the saved layer is the pruned one."""
    cfg = tiny(f"layers.0.prune.method={method}", "layers.0.prune.finetune_steps=6", *extra)
    pruner_cls = type(cfg.layers[0].prune.build())
    seen: dict = {}
    orig = pruner_cls.__call__

    def recording(self, layer, round=0):
        orig(self, layer, round)
        seen["layer"], seen["mask"] = layer, layer.mask.clone()
        seen.setdefault("rounds", []).append(round)

    monkeypatch.setattr(pruner_cls, "__call__", recording)
    checks = []

    def on_step(step):
        if "layer" not in seen:
            return
        layer = seen["layer"]
        assert torch.all(layer.weight[~layer.mask] == 0)
        assert not torch.any(layer.mask & ~seen["mask"])  # never regrows
        if method != "beta_lasso":
            assert torch.equal(layer.mask, seen["mask"])
        checks.append(step)

    tr = trainer_in(cfg, on_step=on_step)
    tr.run()
    pr = cfg.layers[0].prune
    assert seen["rounds"] == list(range(pr.rounds))
    assert checks == list(range(12, 12 + pr.rounds * pr.finetune_steps + 1))  # from the first prune on, every step
    final = tr.objectives[0].layer
    assert final is seen["layer"] and torch.all(final.weight[~final.mask] == 0)
    if method != "beta_lasso":
        assert torch.equal(final.mask, seen["mask"])


def test_imp_in_the_trainer_reaches_the_final_density_exactly():
    cfg = tiny(*IMP)
    tr = Trainer(cfg)
    s = tr.run()
    layer = tr.objectives[0].layer
    assert torch.all(layer.mask.sum(1) == round(0.2 * 64))  # per unit, exactly
    traj = s["layers"][0]["prune_trajectory"]
    assert [t["round"] for t in traj] == [0, 1, 2, 3] and [t["step"] for t in traj] == [12, 18, 24, 30]
    want = [1.0] + [round(d * 64) / 64 for d in imp_schedule(0.2, 3)]
    np.testing.assert_allclose([t["density"] for t in traj], want, rtol=1e-6)


def test_pruning_happens_without_finetuning():
    tr = Trainer(tiny("layers.0.prune.threshold=null", "layers.0.prune.density=0.25", "layers.0.prune.finetune_steps=0"))
    tr.run()
    assert tr.objectives[0].layer.density() == pytest.approx(0.25)


def test_rewind_restores_the_early_weights_on_the_kept_support():
    k = 5
    early = Trainer(tiny(f"layers.0.steps={k}", "layers.0.prune=null"))
    early.run()
    late = Trainer(tiny("layers.0.prune=null"))  # the same stream of minibatches, 12 steps
    late.run()
    run = Trainer(tiny("layers.0.prune.threshold=null", "layers.0.prune.density=0.3", "layers.0.prune.finetune_steps=0",
                       f"layers.0.prune.rewind_step={k}"))
    run.run()
    w_early, w_late = early.objectives[0].layer.weight.detach(), late.objectives[0].layer.weight.detach()
    layer = run.objectives[0].layer
    mask = magnitude_mask(w_late, scope="unit", density=0.3)  # chosen on the late weights ...
    assert torch.equal(layer.mask, mask)
    assert torch.equal(layer.weight.detach(), w_early * mask)  # ... applied to the early ones
    assert not torch.equal(w_early, w_late)
    # the rest of the objective's state (sparse coding's running statistics) is rewound too
    assert torch.equal(run.objectives[0].A, early.objectives[0].A)


def _final(run_dir):
    return torch.load(run_dir / "layer0.pt", weights_only=True)


class Killed(Exception):
    pass


@pytest.mark.parametrize("stop_at, exc", [(18, KeyboardInterrupt), (23, Killed)])
def test_resume_in_the_middle_of_imp_equals_uninterrupted(tmp_path, stop_at, exc):
    """Rounds at steps 12, 18, 24 with rewinding to step 3; stop right after round 1 (saved
    there), or kill at 23 (resume from the step-20 checkpoint: rounds done 2, rewind state in it)."""
    cfg = tiny(*IMP, "layers.0.prune.rewind_step=3", "layers.0.prune.finetune_params={lam: 0.2}")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()

    def run(d, stop_at=None):
        stop = threading.Event()

        def hook(step):  # KeyboardInterrupt: a stop request (checkpoint at that boundary); Killed: no save
            if step == stop_at:
                if exc is KeyboardInterrupt:
                    stop.set()
                else:
                    raise exc
        return trainer_in(cfg, d, [JsonlLogger(d / "metrics.jsonl")], on_step=hook, stop=stop).run()

    full = run(a)
    with pytest.raises(exc):
        run(b, stop_at)
    ck = torch.load(b / "checkpoint.pt", weights_only=True)
    assert ck["rounds_done"] == 2 and isinstance(ck["rewind"]["objective"]["layer.weight"], torch.Tensor)
    resumed = run(b)
    fa, fb = _final(a), _final(b)
    assert torch.equal(fa["weight"], fb["weight"]) and torch.equal(fa["mask"], fb["mask"])
    drop = {"seconds"}
    assert {k: v for k, v in full.items() if k not in drop} == {k: v for k, v in resumed.items() if k not in drop}
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()


# ----------------------------------------------------------------------------- sweep and knee

def test_knee_of_a_planted_curve():
    x = [0.0, 0.2, 0.5, 1.0]
    y = [1.0, 0.1, 0.05, 0.0]  # chord x + y = 1: distances |x + y - 1| / sqrt 2
    k = knee(x, y, log_x=False)
    assert k["index"] == 1 and k["x"] == 0.2
    np.testing.assert_allclose(k["distance"], [0, 0.7 / math.sqrt(2), 0.45 / math.sqrt(2), 0], atol=1e-12)
    # invariant to the order of the points and to a positive affine change of y
    perm = [2, 0, 3, 1]
    k2 = knee([x[i] for i in perm], [3 * y[i] + 7 for i in perm], log_x=False)
    assert k2["x"] == 0.2 and k2["index"] == perm.index(1)


def test_knee_on_log_density_finds_the_elbow():
    d = np.geomspace(1, 0.01, 11)
    err = 0.1 + np.maximum(0, np.log(0.1 / d))  # a hinge: flat down to d = 0.1, then rising linearly in log d
    assert knee(d, err)["x"] == pytest.approx(0.1)


@pytest.mark.parametrize("x, y, msg", [([1, 2], [1, 2], ">= 3"), ([1, 1, 2], [0, 1, 2], "distinct"),
                                       ([0, 1, 2], [1, 2, 3], "x > 0"), ([1, 2, 3], [1, float("nan"), 3], "finite")])
def test_knee_bad_input(x, y, msg):
    with pytest.raises(ValueError, match=msg):
        knee(x, y)


def test_density_sweep_exact_densities_and_restores_the_layer():
    g = torch.Generator().manual_seed(0)
    layer = DenseLayer(36, 10, (6, 6), generator=g)
    obj = OBJECTIVES.create("sparse_coding", layer, generator=g, lam=0.2, n_iter=10, eval_iter=20)
    x = torch.randn(200, 36, generator=g)
    before = {k: v.clone() for k, v in obj.state_dict().items()}
    ds = [1.0, 0.5, 0.25, 0.1]
    for mode in ("oneshot", "imp"):
        rows = density_sweep(obj, x, x[:50], ds, mode=mode, finetune_steps=2, batch_size=16,
                             finetune_params={"lam": 0.1}, generator=torch.Generator().manual_seed(1))
        assert [r["density"] for r in rows] == pytest.approx([round(d * 36) / 36 for d in ds])
        assert all(k in rows[0] for k in ("recon_rel_error", "loss", "median_spread", "participation_ratio_mean"))
        for k, v in obj.state_dict().items():
            assert torch.equal(v, before[k]), k
        assert obj.lam == 0.2
    # density 1 with no fine-tuning is the layer itself
    from structlearn.metrics import evaluate

    (row,) = density_sweep(obj, x, x[:50], [1.0], finetune_steps=0)
    assert row["recon_rel_error"] == pytest.approx(evaluate(obj, x[:50], None, True)["recon_rel_error"])
    s = summarise_sweep(rows, mode="imp")
    assert s["metric"] == "recon_rel_error" and "density" in s["knee"]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("override, msg", [
    ("layers.0.prune.method=imp", "imp' needs a final density"),
    ("layers.0.prune.rounds=3", "rounds=3 is not allowed; allowed: 1 \\(magnitude pruning is one-shot"),
    ("layers.0.prune.rounds=0", "layers.0.prune: pruner 'magnitude': rounds=0 is not allowed"),
    ("layers.0.prune.rewind_step=13", "rewind_step=13 out of range; allowed: \\[0, layers.0.steps=12\\]"),
    ("layers.0.prune.rewind_step=-1", "rewind_step=-1 out of range"),
    ("layers.0.prune.method=beta_lasso\nlayers.0.prune.threshold=0.1",
     "prune.threshold=0.1: pruner 'beta_lasso' has no threshold"),
    ("layers.0.prune.params={gamma: 1}", "pruner 'magnitude' has no parameter 'gamma'; allowed: rounds, scope"),
    ("layers.0.prune.method=random", "unknown pruner 'random'; available: beta_lasso, imp, magnitude"),
])
def test_bad_prune_config(override, msg):
    with pytest.raises(ValueError, match=msg):
        tiny(*override.split("\n"))


@pytest.mark.parametrize("kw, msg", [
    ({"density": 0.0, "rounds": 2}, "density"), ({"density": 1.5}, "density"), ({"density": 0.1, "rounds": 0}, "rounds"),
    ({"density": 0.1, "threshold": 0.2}, "no parameter 'threshold'"), ({"density": 0.1, "scope": "row"}, "scope"),
])
def test_bad_imp_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PRUNERS.create("imp", **kw)
    if "rounds" not in kw or kw["rounds"] >= 1:
        with pytest.raises(ValueError, match="round"):
            IterativeMagnitudePruner(density=0.5, rounds=2).density_at(2)


def test_bad_sweep_arguments():
    g = torch.Generator().manual_seed(0)
    layer = DenseLayer(16, 4, (4, 4), generator=g)
    obj = OBJECTIVES.create("sparse_coding", layer, generator=g)
    x = torch.randn(20, 16, generator=g)
    for kw, msg in [({"densities": [0.5, 0.0]}, "density=0.0 out of range"), ({"densities": [1.2]}, "density=1.2"),
                    ({"densities": []}, "empty"), ({"mode": "random"}, "mode='random'"),
                    ({"finetune_steps": -1}, "finetune_steps"), ({"finetune_params": {"lam": -1}}, "lam=-1")]:
        with pytest.raises(ValueError, match=msg):
            density_sweep(obj, x, x, **kw)


def test_isotonic_fit_matches_the_pava_closed_forms():
    from structlearn.prune.sweep import isotonic

    np.testing.assert_allclose(isotonic([1, 3, 2, 4]), [1, 2.5, 2.5, 4])  # one violator pooled
    np.testing.assert_allclose(isotonic([3, 2, 1]), [2, 2, 2])  # all pooled into the mean
    np.testing.assert_allclose(isotonic([5, 1, 2, 0], increasing=False), [5, 1.5, 1.5, 0])
    y = np.random.default_rng(0).normal(size=30)
    f = isotonic(y)
    assert np.all(np.diff(f) >= -1e-12) and f.mean() == pytest.approx(y.mean())  # monotone, mean kept


def test_monotone_knee_ignores_noise_on_the_plateau():
    d = np.geomspace(1, 0.01, 11)
    err = 0.1 + np.maximum(0, np.log(0.1 / d))
    err[4] -= 0.3  # a lucky fine-tuning run just above the elbow (d = 0.158) pulls the raw knee there
    assert knee(d, err)["x"] == pytest.approx(d[4])
    assert knee(d, err, monotone="decreasing")["x"] == pytest.approx(0.1)
