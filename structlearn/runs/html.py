"""``report.html``: one self-contained page per run folder or search folder.

Every image is inlined (``data:image/png;base64``), there is no script and no external file,
so the page opens in any browser on a cluster with no network. A run's page shows its
configuration, training and held-out curves, tile map, filter montages before and after
pruning (all units grouped by tile, and the sample of units per tile), the structure table (one
row per layer), the architecture it exports (one row per stage), the weight-sharing curve
(weight error against the number of shared kernels, from ``structure.json``) and the Gabor and
kernel montages. A search's page shows the gain-per-layer table of every trial and the
search's plots. The figures are PNG files in the folder (``curves.png``,
``sharing_layer<i>.png``), beside the numbers they show.
"""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any, Sequence

from structlearn.io import atomic_write_text, read_json
from structlearn.runs.run import Run

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figcaption{font-size:.85em;color:#555;max-width:600px}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}.note{color:#a33;font-size:.9em}"""


def _img(path: Path, caption: str, width: int | None = None) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    w = f' style="width:{width}px"' if width else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"{w}>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v) if all(isinstance(x, (int, float)) for x in v) else json.dumps(v)
    return "-" if v is None else str(v)


def _page(title: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(s for s in sections if s)
            + f'\n<p style="color:#888;font-size:.8em">written {time.strftime("%Y-%m-%d %H:%M:%S")} by structlearn report --html</p>'
            "\n</body></html>\n")


def run_sections(run: Run) -> list[str]:
    from structlearn.runs.export import spec_from_run
    from structlearn.runs.readout import ensure_structure
    from structlearn.structure.readout import STRUCTURE_COLUMNS, structure_rows
    from structlearn.viz.curves import plot_sharing_curve, plot_training_curves

    cfg = run.cfg
    out = []
    summary = run.summary() if run.file("summary.json").is_file() else {}
    keys = ("objective", "n_units", "input_shape", "density", "tile_purity_mean", "chance_purity", "tile_purity_shuffled_mean",
            "single_tile_fraction", "recon_rel_error", "code_kurtosis", "seconds", "device")
    out.append("<h2>Summary</h2>" + _table(("quantity", "value"), [(k, summary[k]) for k in keys if k in summary], "summary")
               if summary else '<h2>Summary</h2><p class="note">summary.json is missing: the run has not finished.</p>')
    rows = []
    if run.file("metrics.jsonl").is_file():
        for line in run.file("metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if plot_training_curves(rows, run.file("curves.png")):
        out.append("<h2>Training and held-out curves</h2>" + _img(run.file("curves.png"), "per layer against the global "
                   "step; dotted lines: pruning rounds"))
    out.append("<h2>Data</h2>" + _img(run.file("tile_map.png"), f"tile map: {cfg.data.grid[0]}x{cfg.data.grid[1]} tiles of "
                                      f"{cfg.data.tile[0]}x{cfg.data.tile[1]} pixels, each from an independent image", 256)
               if run.file("tile_map.png").is_file() else "")
    figs = [_img(run.file(f"filters_{tag}.png"), f"{what}: all units, grouped by dominant tile, then by purity; zero is white")
            + "<br>" + _img(run.file(f"filters_{tag}_sample.png"), f"{what}: up to 12 units per tile", 420)
            for tag, what in (("before_prune", "before pruning"), ("after_prune", "after pruning"), ("final", "final"))
            if run.file(f"filters_{tag}.png").is_file()]
    if any(figs):
        out.append("<h2>Filters (first layer)</h2>" + "<br>".join(f for f in figs if f))
    structure = None
    if all(run.file(f"layer{i}.pt").is_file() for i in range(len(cfg.layers))):
        structure = ensure_structure(run)
    if structure is not None:
        srows, notes = structure_rows(structure)
        out.append("<h2>Structure (one row per layer)</h2>" + _table(STRUCTURE_COLUMNS, srows, "structure")
                   + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes))
        try:
            spec, _ = spec_from_run(run, structure.get("conv_kwargs") or None)
        except ValueError as e:
            out.append(f'<h2>Architecture</h2><p class="note">no architecture spec: {html.escape(str(e))}</p>')
        else:
            stages = [(i, st["type"], {k: v for k, v in st.items() if k not in ("type", "evidence")}, st.get("evidence", {}))
                      for i, st in enumerate(spec["stages"])]
            out.append("<h2>Architecture (one row per stage, as structlearn export writes it)</h2>"
                       + _table(("stage", "type", "parameters", "evidence"), stages, "architecture"))
        for entry in structure["layers"]:
            sh = entry.get("sharing")
            if not isinstance(sh, dict) or "curve" not in sh:
                continue
            li, conv = entry["layer"], entry.get("conv") or {}
            strict = (conv["channels"], conv["coverage"]) if "channels" in conv else None
            png = run.file(f"sharing_layer{li}.png")
            plot_sharing_curve(sh["curve"]["C"], sh["curve"]["weight_error"], sh["knee_C"], sh["channels"], png, strict)
            out.append(f"<h2>Weight sharing, layer {li}</h2>" + _img(png, "weight error against the number of shared "
                       "kernels, every unit covered (structure.json: sharing)")
                       + _table(("shared kernels C", "weight error"), list(zip(sh["curve"]["C"], sh["curve"]["weight_error"])),
                                f"sharing{li}")
                       + ("<p>at the knee: " if sh.get("chosen_by") == "knee" else
                          "<p>the curve has no knee (each added kernel buys about as much as the last): the smallest C with "
                          "weight error at most 0.25, or all units, is shown: ")
                       + f"C = {sh['channels']}, kernel {sh['kernel_size']}x{sh['kernel_size']}, "
                       f"coverage {sh['coverage']:.3f}, weight error {sh['weight_error']:.4g}, response error on held-out "
                       f"inputs {_fmt(sh.get('response_error'))}</p>")
        pngs = [_img(run.file(n), {"gabor": "filters beside their Gabor fits", "kernels": "shared kernels of the conv read-out"}
                     [n.split("_")[1]], 560) for e in structure["layers"] for n in e.get("pngs", [])]
        if any(pngs):
            out.append("<h2>Gabor fits and shared kernels</h2>" + "".join(pngs))
    out.append("<h2>Configuration</h2><pre>" + html.escape(run.file("config.yaml").read_text()) + "</pre>")
    return out


def search_sections(folder: Path) -> list[str]:
    s = read_json(folder / "search.json")
    out = [f"<h2>Chosen depth: {s.get('chosen_depth')}</h2><p>threshold {s.get('threshold')} {html.escape(str(s.get('gain_unit', '')))};"
           f" {s.get('n_finished')} finished trials {html.escape(json.dumps(s.get('states', {})))}</p>"]
    rows = [(t.get("number"), str(t.get("state", "")).lower(), t.get("params", {}).get("depth"),
             json.dumps({k: v for k, v in t.get("params", {}).items() if k != "depth"}),
             ", ".join(f"{g:+.4f}" for g in t.get("scored_gains") or []), t.get("useful_depth"), t.get("useful_entropy"))
            for t in s.get("trials", [])]
    out.append("<h2>Gain per layer, every trial</h2>" + _table(("trial", "state", "depth", "parameters", "gain per layer",
                                                                "useful depth", "useful entropy"), rows, "gains"))
    out.append("<h2>Plots</h2>" + _img(folder / "gain_vs_depth.png", "gain of each layer per trial; right: entropy per layer")
               + _img(folder / "trials.png", "useful entropy of each trial in order"))
    if (folder / "search.yaml").is_file():
        out.append("<h2>Configuration</h2><pre>" + html.escape((folder / "search.yaml").read_text()) + "</pre>")
    return out


def write_report(target: Run | str | Path) -> Path:
    """Write ``report.html`` into a run folder or a finished search folder; returns its path."""
    folder = target.path if isinstance(target, Run) else Path(target)
    if not isinstance(target, Run) and (folder / "search.yaml").is_file():
        if not (folder / "search.json").is_file():
            raise ValueError(f"{str(folder)!r} is a search folder without search.json: the search has not finished; "
                             f"allowed: finish it (structlearn search --resume {folder}) first")
        page = _page(f"structlearn search: {folder.name}", search_sections(folder))
    else:
        run = target if isinstance(target, Run) else Run(folder)
        page = _page(f"structlearn run: {run.name}", run_sections(run))
    path = folder / "report.html"
    atomic_write_text(path, page)
    return path
