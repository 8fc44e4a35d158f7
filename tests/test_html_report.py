"""report.html in a real browser (issue 15): headless Chromium (Debian's chromium and
chromium-driver, which `.ci/run` and `make test` install) loads the page from disk with the
network off and checks it as a user would see it: no console errors, every image decodes, the
structure table has one row per layer and the architecture table one row per exported stage.
A screenshot goes to the test's folder (and to $STRUCTLEARN_SCREENSHOTS when set)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from structlearn.cli import main

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
TINY = {
    "name": "html", "seed": 0, "threads": 1, "wandb": "disabled",
    "data": {"grid": [2, 2], "tile": [4, 4], "n_train": 1200, "n_test": 200},
    "layers": [{"n_units": 24, "params": {"lam": 0.3, "n_iter": 15, "eval_iter": 40}, "steps": 20, "batch_size": 64,
                "prune": {"threshold": 0.2, "finetune_steps": 10}},
               {"n_units": 8, "params": {"lam": 0.3, "n_iter": 15, "eval_iter": 40}, "steps": 10, "batch_size": 64}],
    "eval_every": 10, "checkpoint_every": 10,
}


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium "
                    "chromium-driver (.ci/run and `make test` do this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def _check_page(browser, page: Path, shot: Path) -> dict:
    browser.get(page.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    widths = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    assert widths and all(c and w > 0 for c, w, _ in widths), widths
    external = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => !u.startsWith('data:'))")
    assert external == []  # self-contained: nothing to fetch
    rows = browser.execute_script("const out = {}; for (const t of document.querySelectorAll('table[id]')) "
                                  "out[t.id] = t.tBodies[0].rows.length; return out")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(height + 50, 12000))
    png = base64.b64decode(browser.get_screenshot_as_base64())
    shot.write_bytes(png)
    if os.environ.get("STRUCTLEARN_SCREENSHOTS"):
        Path(os.environ["STRUCTLEARN_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["STRUCTLEARN_SCREENSHOTS"]) / shot.name).write_bytes(png)
    return {"rows": rows, "images": [a for _, _, a in widths]}


def test_run_report_in_headless_chromium(browser, tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["discover", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    page = run / "report.html"
    assert page.is_file()  # discover writes it by default
    got = _check_page(browser, page, tmp_path / "report_run.png")
    structure = json.loads((run / "structure.json").read_text())
    spec = json.loads((run / "architecture.json").read_text()) if (run / "architecture.json").is_file() else None
    assert got["rows"]["structure"] == len(structure["layers"]) == 2
    from structlearn.runs import Run
    from structlearn.runs.export import spec_from_run

    spec, _ = spec_from_run(Run(run))
    assert got["rows"]["architecture"] == len(spec["stages"])
    assert got["rows"]["sharing0"] == len(structure["layers"][0]["sharing"]["curve"]["C"]) and got["rows"]["summary"] >= 5
    alts = " ".join(got["images"])
    for what in ("tile map", "before pruning", "after pruning", "Gabor", "against the global step", "shared kernels"):
        assert what in alts, what
    # `report --html` rewrites the same page (e.g. after the read-out is recomputed)
    text = page.read_text()
    assert main(["report", str(run), "--html", "--threshold", "0.5"]) == 0
    assert page.read_text() != text and (tmp_path / "report_run.png").stat().st_size > 10_000


def test_search_report_in_headless_chromium(browser, tmp_path):
    from test_depth import _cli, _yaml

    assert _cli(str(_yaml(tmp_path)), "--out", str(tmp_path / "runs")) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    summary = json.loads((folder / "search.json").read_text())
    got = _check_page(browser, folder / "report.html", tmp_path / "report_search.png")
    assert got["rows"]["gains"] == len(summary["trials"])
    assert main(["report", str(folder), "--html"]) == 0
    html = (folder / "report.html").read_text()
    assert re.search(r"Chosen depth: \d", html) and html.count("data:image/png;base64,") == 2
