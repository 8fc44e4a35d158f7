"""``experiments/whole_images.py`` on tiny runs of the shipped ``experiments/whole_images.yaml``
(8 x 8 crops, 128 units, 40 steps): the natural run against its Gaussian clone, the table's
numbers recomputed from the runs, and the arguments' order checked."""
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from structlearn.cli import main as cli
from structlearn.structure.locality import energy_radius

ROOT = Path(__file__).resolve().parents[1]
SHRINK = ["--set", "data.patch=[8,8]", "--set", "data.n_train=2000", "--set", "data.n_test=200",
          "--set", "layers.0.n_units=128", "--set", "layers.0.steps=40", "--set", "layers.0.batch_size=64",
          "--set", "layers.0.prune.finetune_steps=10", "--set", "eval_every=40", "--set", "checkpoint_every=20"]


def test_whole_images_report_on_tiny_runs(tmp_path, capsys):
    runs = {}
    for name, extra in (("natural", []), ("clone", ["--set", "data.gaussian_clone=true"])):
        out = tmp_path / name
        assert cli(["discover", str(ROOT / "experiments" / "whole_images.yaml"), *SHRINK, *extra, "--out", str(out),
                    "--no-progress", "--no-html", "--no-readout"]) == 0
        (runs[name],) = out.iterdir()
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import whole_images
    finally:
        sys.path.pop(0)
    from structlearn.runs.run import Run

    assert whole_images.main([str(runs["natural"]), str(runs["clone"])]) == 0
    text = (runs["natural"] / "whole_images.md").read_text()
    a, b = whole_images.describe(Run(runs["natural"])), whole_images.describe(Run(runs["clone"]))
    for group in ("all", "most used quartile"):
        ratio = float(re.search(rf"\| {group} \| natural / clone \| \| \*\*([0-9.]+)\*\*", text).group(1))
        assert ratio == pytest.approx(a[group]["median"] / b[group]["median"], abs=0.006)
    assert a["units"] == b["units"] == 128 and a["all"]["n"] == 128 and a["most used quartile"]["n"] >= 32
    want_density = yaml.safe_load((ROOT / "experiments" / "whole_images.yaml").read_text())["layers"][0]["prune"]["density"]
    assert abs(a["density"] - want_density) < 0.01 and b["density"] == a["density"]  # the same share by construction
    assert (runs["natural"] / "filters_most_used.png").stat().st_size > 0
    # the share sweep, recomputed: each dense unit's largest round(share * 64) weights by a sort
    row = re.search(r"\| natural / clone \| ([-0-9. |]+)\|\n", text).group(1).split("|")
    want = []
    for name in ("natural", "clone"):
        W = torch.load(runs[name] / "layer0_dense.pt")["objective"]["layer.weight"].double()
        meds = []
        for share in whole_images.SHARES:
            kth = W.abs().sort(1, descending=True).values[:, max(1, round(share * 64)) - 1:][:, :1]
            kept = torch.where(W.abs() >= kth, W, torch.zeros_like(W))
            meds.append(float((energy_radius(kept.reshape(-1, 8, 8)) / 8).median()))
        want.append(meds)
    assert len(row) == len(whole_images.SHARES)
    for got, x, y in zip(row, *want):  # one kept weight has radius 0 in both runs: no ratio
        assert got.strip() == "-" if y == 0 else float(got) == pytest.approx(x / y, abs=0.006)
    assert want[0][whole_images.SHARES.index(1.0)] > want[0][0]  # pruning harder can only narrow the units here
    assert "Fine-tuned density sweeps" not in text  # no sweep.json yet: no third table
    # the fine-tuned sweeps of both runs: the third table's ratios are the sweeps' own radii
    for name in ("natural", "clone"):
        assert cli(["sweep", str(runs[name]), "--densities", "0.5", "0.25", "0.1", "--finetune-steps", "3"]) == 0
    assert whole_images.main([str(runs["natural"]), str(runs["clone"])]) == 0
    text = (runs["natural"] / "whole_images.md").read_text()
    section = text.split("Fine-tuned density sweeps")[1]
    cell = r" \| ([0-9.]+)"
    rows = re.findall(r"\| ([0-9.]+)(?: \(knee\))?" + cell * 7 + r" \|\n", section)
    sa, sb = (json.loads((runs[n] / "sweep.json").read_text())["rows"] for n in ("natural", "clone"))
    assert len(rows) == 3 and [r["density_target"] for r in sa] == [0.5, 0.25, 0.1]
    for got, x, y in zip(rows, sa, sb):
        assert float(got[0]) == pytest.approx(x["density"], rel=1e-3)
        assert float(got[3]) == pytest.approx(x["energy_radius90_median"] / y["energy_radius90_median"], abs=0.006)
        assert float(got[4]) == pytest.approx(x["recon_rel_error"], abs=1e-4)
        assert float(got[7]) == pytest.approx(y["loss"], abs=0.006)
        assert 0 < x["energy_radius90_median"] <= 1 and 0 < y["energy_radius90_median"] <= 1
    clone_sweep = json.loads((runs["clone"] / "sweep.json").read_text())
    (runs["clone"] / "sweep.json").write_text(json.dumps({**clone_sweep, "finetune_steps": 4}))
    with pytest.raises(SystemExit, match="differ in finetune_steps"):  # not a table of two unlike sweeps
        whole_images.main([str(runs["natural"]), str(runs["clone"])])
    with pytest.raises(SystemExit, match="natural run first"):
        whole_images.main([str(runs["clone"]), str(runs["natural"])])
