"""The README's "Extending" examples, executed verbatim: a new objective and a new pruner are
one file each, pass the shipped conformance suites, do what their math promises, and run
through `discover`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from structlearn.objectives.base import OBJECTIVES
from structlearn.prune.base import PRUNERS
from structlearn.testing import objectives as obj_suite
from structlearn.testing import pruners as pruner_suite

README = Path(__file__).resolve().parents[1] / "README.md"


def example(tag: str) -> str:
    m = re.search(rf"<!-- {tag} -->\n```python\n(.*?)```\n<!-- /{tag} -->", README.read_text(), re.S)
    assert m, f"README has no {tag} block"
    return m.group(1)


@pytest.fixture(scope="module")
def registered():
    for tag in ("example-objective", "example-pruner"):
        code = example(tag)
        assert len(code.strip().splitlines()) <= 45, f"the {tag} should stay a short, complete file"
        exec(compile(code, f"README:{tag}", "exec"), {})
    yield
    OBJECTIVES._items.pop("sanger", None)
    PRUNERS._items.pop("random", None)


def test_objective_passes_the_conformance_suite(registered):
    obj_suite.check_objective("sanger")


def test_pruner_passes_the_conformance_suite(registered):
    pruner_suite.check_pruner("random")


def test_sanger_finds_the_planted_principal_axes(registered):
    """x = z diag(s) Q^T with known axes Q and variances s^2: the rows of W converge to the
    first k columns of Q (up to sign), in order."""
    g = torch.Generator().manual_seed(0)
    d, k = 8, 3
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    s = torch.tensor([3.0, 2.0, 1.5, 0.5, 0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    x = (torch.randn(20000, d, generator=g, dtype=torch.float64) * s) @ Q.T
    obj = obj_suite.OBJECTIVES.create("sanger", obj_suite.DenseLayer(d, k, generator=g, dtype=torch.float64),
                                      generator=g, lr=0.01)
    for i in range(3000):
        j = (i * 256) % 19744
        obj.train_step(x[j:j + 256])
    W = obj.layer.weight.detach()
    cos = (W @ Q[:, :k]).abs() / W.norm(dim=1, keepdim=True)
    assert torch.all(cos.diagonal() > 0.99), cos


def test_random_pruner_keeps_the_density_and_is_not_magnitude(registered):
    from structlearn.prune import magnitude_mask

    w = torch.randn(20, 50, generator=torch.Generator().manual_seed(1))
    m = PRUNERS.create("random", density=0.2).compute_mask(w, torch.ones_like(w, dtype=torch.bool))
    assert torch.all(m.sum(1) == 10)
    assert not torch.equal(m, magnitude_mask(w, scope="unit", density=0.2))


def test_tiny_discover_with_both(registered, tmp_path):
    from structlearn.config import load_config
    from structlearn.runs.discover import start_discover

    cfg = load_config(None, ["data.grid=[2,2]", "data.tile=[4,4]", "data.n_train=600", "data.n_test=100",
                             "layers.0.n_units=8", "layers.0.objective=sanger", "layers.0.params={lr: 0.005}",
                             "layers.0.steps=20", "layers.0.batch_size=64", "layers.0.prune.method=random",
                             "layers.0.prune.density=0.25", "layers.0.prune.finetune_steps=5", "wandb=disabled"])
    with start_discover(cfg, out=tmp_path) as job:
        summary = job.train()
        structure = job.read_out()
    assert summary["objective"] == "sanger" and summary["density"] == pytest.approx(0.25)
    assert torch.isfinite(torch.tensor(summary["recon_rel_error"]))
    assert structure["layers"][0]["density"] == pytest.approx(0.25)
    assert (job.run.path / "layer0.pt").is_file() and (job.run.path / "structure.json").is_file()
