"""The README's bad-input table (issue 12): every case runs the real CLI in-process and must end
with exit code 2, one line on stderr, no traceback, the expected words in the message, and no
run folder left behind.

    python tests/test_bad_input_table.py      # prints the table (case, command, message) for the README
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

D = ["discover", "--wandb", "disabled"]  # each discover case adds --out <tmp>


def fixtures(root: Path) -> dict[str, str]:
    """Files and folders the cases point at."""
    from skimage.io import imsave

    f = {}
    for name, body in (("dup.yaml", "seed: 1\nseed: 2\n"), ("bad.yaml", "layers: [unclosed\n"), ("list.yaml", "- a\n- b\n")):
        (root / name).write_text(body)
        f[name] = str(root / name)
    for folder, make in (("textimg", lambda p: (p / "a.png").write_text("not a picture")),
                         ("binary", lambda p: imsave(p / "b.png", ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8),
                                                     check_contrast=False)),
                         ("flat", lambda p: imsave(p / "c.png", np.full((64, 64), 7, np.uint8), check_contrast=False))):
        (root / folder).mkdir()
        make(root / folder)
        f[folder] = str(root / folder)
    np.save(root / "nan.npy", np.full((100, 8), np.nan))
    (root / "trunc.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (100, 8), }")
    np.save(root / "flat.npy", np.ones((100, 8)))
    for name in ("nan.npy", "trunc.npy", "flat.npy"):
        f[name] = str(root / name)
    (root / "afile").write_text("x")
    f["afile"] = str(root / "afile")
    (root / "norun").mkdir()
    f["norun"] = str(root / "norun")
    run = root / "corruptrun"
    run.mkdir()
    from structlearn.config import dump_config, load_config

    (run / "config.yaml").write_text(dump_config(load_config(None, ["wandb=disabled"])))
    (run / "checkpoint.pt").write_bytes(b"garbage")
    f["corruptrun"] = str(run)
    return f


CASES: list[tuple[str, list[str], str]] = [
    ("unknown config key", D + ["--set", "nope=1"], r"unknown config key\(s\) \['nope'\]; allowed: name, seed"),
    ("unknown key in a section", D + ["--set", "data.colour=1"], r"unknown config key\(s\) \['colour'\] in data; allowed: source"),
    ("unknown objective", D + ["--set", "layers.0.objective=magic"], r"unknown objective 'magic'; available: .*sparse_coding"),
    ("hyperparameter out of range", D + ["--set", "layers.0.params.lam=0"], r"lam=0 out of range; allowed: finite numbers in \(0, inf\)"),
    ("negative hyperparameter", D + ["--set", "layers.0.params.lam=-1"], r"lam=-1 out of range"),
    ("infinite hyperparameter", D + ["--set", "layers.0.params.lam=.inf"], r"lam=inf is not finite"),
    ("NaN hyperparameter", D + ["--set", "layers.0.params.lam=.nan"], r"lam=nan is not finite"),
    ("non-integer count", D + ["--set", "layers.0.params.n_iter=2.5"], r"n_iter=2.5 is not an integer"),
    ("infinite count", D + ["--set", "layers.0.params.n_iter=.inf"], r"n_iter=inf is not finite"),
    ("unknown hyperparameter", D + ["--set", "layers.0.params.nonsense=3"], r"has no parameter 'nonsense'; allowed: lam"),
    ("bad fine-tuning value", D + ["--set", "layers.0.prune.finetune_params={lam: -2}"], r"finetune_params: .*lam=-2 out of range"),
    ("density out of range", D + ["--set", "layers.0.prune.density=1.5"], r"density=1.5 out of range; allowed: finite numbers in \(0, 1\]"),
    ("threshold and density", D + ["--set", "layers.0.prune.density=0.2"], r"a threshold or a density, not both"),
    ("unknown pruner", D + ["--set", "layers.0.prune.method=random"], r"unknown pruner 'random'; available: beta_lasso, imp, magnitude"),
    ("IMP without a density", D + ["--set", "layers.0.prune.method=imp", "--set", "layers.0.prune.threshold=null"],
     r"'imp' needs a final density"),
    ("one-shot pruner with rounds", D + ["--set", "layers.0.prune.rounds=3"], r"rounds=3 is not allowed; allowed: 1"),
    ("a field the pruner lacks", D + ["--set", "layers.0.prune.method=beta_lasso"], r"prune.threshold=0.1: pruner 'beta_lasso' has no threshold; its parameters"),
    ("unknown pruner parameter", D + ["--set", "layers.0.prune.params={gamma: 1}"], r"has no parameter 'gamma'"),
    ("rewind after the last step", D + ["--set", "layers.0.steps=12", "--set", "layers.0.prune.rewind_step=13"],
     r"rewind_step=13 out of range; allowed: \[0, layers.0.steps=12\]"),
    ("a one-tile mosaic", D + ["--set", "data.grid=[1, 1]"], r"has one tile"),
    ("tiles larger than the images", D + ["--set", "data.tile=[600, 8]", "--set", "data.n_train=100", "--set", "data.n_test=10"], r"larger than every image"),
    ("unknown whitening", D + ["--set", "data.whitening=pca"], r"allowed: zca, one_over_f, none"),
    ("infinite ZCA floor", D + ["--set", "data.zca_floor=.inf"], r"zca_floor=inf is not finite"),
    ("zero ZCA floor", D + ["--set", "data.zca_floor=0"], r"zca_floor=0.0 out of range"),
    ("text where a count goes", D + ["--set", "data.n_train=abc"], r"data.n_train must be an integer"),
    ("missing image folder", D + ["--set", "data.source=/nonexistent/images"], r"does not exist or is not a folder"),
    ("a text file named .png", D + ["--set", "data.source={textimg}"], r"is not an image file"),
    ("a binary image", D + ["--set", "data.source={binary}"], r"only 2 distinct grey levels; allowed: at least 16"),
    ("a constant image", D + ["--set", "data.source={flat}"], r"constant image"),
    ("unknown W&B mode", D + ["--set", "wandb=maybe"], r"wandb.mode=.maybe.*allowed: offline, online, online-or-offline, disabled"),
    ("empty W&B tag", D + ["--set", "wandb.tags=['']"], r"wandb.tags.*allowed: non-empty tags"),
    ("negative image interval", D + ["--set", "wandb.log_images_every=-1"], r"wandb.log_images_every.*allowed"),
    ("unknown device", D + ["--set", "device=tpu"], r"allowed: auto, cpu, cuda"),
    ("unknown dtype", D + ["--set", "dtype=float16"], r"allowed: float32, float64"),
    ("no layers", D + ["--set", "layers=[]"], r"layers is empty"),
    ("zero units", D + ["--set", "layers.0.n_units=0"], r"n_units=0 out of range"),
    ("a layer that cannot fit in memory", D + ["--set", "layers.0.n_units=10000000"],
     r"needs at least .* GiB .*; available RAM .* GiB; allowed: fewer units"),
    ("a key given twice in YAML", ["discover", "{dup.yaml}"], r"duplicate key 'seed' at line 2; allowed: each key once"),
    ("invalid YAML", ["discover", "{bad.yaml}"], r"is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2"),
    ("YAML that is not a mapping", ["discover", "{list.yaml}"], r"must hold a mapping at the top level"),
    ("missing config file", ["discover", "/nonexistent.yaml"], r"does not exist; allowed: a YAML path or a bundled config"),
    ("--set without =", D + ["--set", "seed"], r"expected key=value"),
    ("--set index out of range", D + ["--set", "layers.5.n_units=3"], r"index '5' out of range; allowed: 0..0"),
    ("resume a missing folder", ["discover", "--resume", "/nonexistent/run"], r"does not exist"),
    ("resume with --set", ["discover", "--resume", "{norun}", "--set", "seed=1"], r"--resume takes the run's own config"),
    ("resume a corrupt checkpoint", ["discover", "--resume", "{corruptrun}"], r"is corrupt, truncated or not a structlearn checkpoint \(UnpicklingError\)"),
    ("output below a file", D + ["--set", "data.n_train=600", "--set", "layers.0.n_units=8", "--out", "{afile}/runs"],
     r"a path component is not a folder"),
    ("report: not a run folder", ["report", "{norun}"], r"is not a run folder: config.yaml is missing"),
    ("report: threshold out of range", ["report", "{corruptrun}", "--threshold", "0"], r"--threshold=0.0 out of range; allowed: \(0, 1\]"),
    ("export: unknown format", ["export", "{norun}", "--format", "nope"], r"unknown exporter 'nope'; available: json"),
    ("sweep: negative fine-tuning", ["sweep", "{corruptrun}", "--finetune-steps", "-1"], r"--finetune-steps=-1 out of range"),
    ("search: SQLite with 2 workers", ["search", "--workers", "2", "--out", "{out}"], r"SQLite is for one process"),
    ("search: unreachable database", ["search", "--out", "{out}", "--storage", "postgresql+psycopg2://u:hunter2@127.0.0.1:9/db"],
     r"postgresql\+psycopg2://u:\*\*\*@127.0.0.1:9/db: cannot open the database"),
    ("redunet: non-positive eps2", ["redunet", "--set", "eps2=0", "--out", "{out}"], r"eps2=0.0 out of range; allowed: finite numbers in \(0, inf\)"),
    ("redunet: Gaussians with convolutions", ["redunet", "--set", "data=gaussians", "--out", "{out}"],
     r"data=gaussians is a vector problem; allowed: spatial_dims 0"),
    ("randnet: too few networks", ["randnet", "--set", "n_nets=1", "--out", "{out}"], r"n_nets=1 out of range"),
    ("bench: no threads", ["bench", "--threads", "0", "--list"], r"--threads=0 out of range"),
    ("array file with NaN", D + ["--set", "data.kind=array", "--set", "data.source={nan.npy}"],
     r"nan.npy' contains NaN or Inf; allowed: finite values"),
    ("truncated array file", D + ["--set", "data.kind=array", "--set", "data.source={trunc.npy}"],
     r"trunc.npy' is corrupt, truncated or not in numpy's format"),
    ("constant array file", D + ["--set", "data.kind=array", "--set", "data.source={flat.npy}"],
     r"flat.npy' is constant across samples"),
    ("array file without kind array", D + ["--set", "data.source={flat.npy}"],
     r"allowed: data.kind 'array' exactly when data.source is a .npy or .npz file"),
    ("planted depth out of range", D + ["--set", "data.kind=hierarchical", "--set", "data.depth=5"],
     r"data.depth=5 out of range; allowed: 1, 2 or 3"),
    ("search: too few held-out samples for the TC measure", ["search", "search_planted", "--set", "data.n_test=50", "--out", "{out}"],
     r"needs data.n_test > 2 x the widest layer \(64\)"),
]


def fill(arg: str, names: dict[str, str]) -> str:
    """``{name}`` placeholders of the fixtures, leaving YAML braces such as ``{lam: -2}`` alone."""
    for k, v in names.items():
        arg = arg.replace("{" + k + "}", v)
    return arg


def run_case(argv: list[str], files: dict[str, str], out: Path) -> tuple[int, str]:
    """Run one case through the CLI in-process; ``(exit code, stderr)``."""
    import contextlib
    import io

    from structlearn.cli import main

    args = [fill(a, {"out": str(out), **files}) for a in argv]
    if args[0] == "discover" and "--out" not in args:
        args += ["--out", str(out)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(args)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return fixtures(tmp_path_factory.mktemp("bad_input"))


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, argv, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, argv, pattern, files, tmp_path):
    out = tmp_path / "out"
    rc, err = run_case(argv, files, out)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    assert "hunter2" not in err
    assert not out.exists() or not any(out.iterdir()), "a failed command left a folder behind"


def test_debug_shows_the_traceback_instead_of_one_line():
    from structlearn.cli import main

    with pytest.raises(ValueError, match="unknown config key"):
        main(["--debug", "discover", "--set", "nope=1", "--wandb", "disabled"])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        files = fixtures(Path(tmp))
        print("| # | case | command | message |\n|---:|---|---|---|")
        for i, (case, argv, _) in enumerate(CASES, 1):
            rc, err = run_case(argv, files, Path(tmp) / f"out{i}")
            shown = " ".join(fill(a, {"out": "OUT", **{k: f"<{k}>" for k in files}}) for a in argv)
            msg = err.strip().replace(tmp, "<tmp>").replace("|", "\\|")
            print(f"| {i} | {case} | `structlearn {shown}` | {msg} |")
    sys.exit(0)
