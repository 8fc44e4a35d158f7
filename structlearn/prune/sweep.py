"""Density sweep curves: error and locality of a layer as functions of density, and the knee
of that curve (the density to choose). The sweep itself is :mod:`structlearn.runs.sweep`.

Two ways to walk the densities ``d_1 > d_2 > ...`` from the dense trained layer:

- ``oneshot``: every point starts again from the dense layer, is magnitude-pruned to ``d_i``
  and fine-tuned ``finetune_steps`` with the mask fixed;
- ``imp``: iterative magnitude pruning, each point pruned from the previous one and
  fine-tuned (Frankle and Carbin 2019; Pellegrini and Biroli 2022).

Knee (Kneedle; Satopaa, Albrecht, Irwin and Raghavan 2011): both axes scaled to [0, 1]
(``x = log d`` by default, as densities are spread geometrically), the knee is the point
farthest from the chord through the two end points,

    dist_i = |(y_n - y_1)(x_i - x_1) - (x_n - x_1)(y_i - y_1)| / sqrt((x_n - x_1)^2 + (y_n - y_1)^2).

For error-versus-density curves that stay flat and then shoot up as density falls, it is the
sparsest density before the error takes off. Measured errors are noisy (each point is its own
short fine-tuning), so the sweep takes the knee of their least-squares non-increasing fit in
density (isotonic regression, pool-adjacent-violators; ``monotone="decreasing"``), the shape
the error has in expectation; the raw values stay in the table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from structlearn.params import check_choice

__all__ = ["DEFAULT_DENSITIES", "format_sweep_table", "isotonic", "knee", "plot_sweep", "summarise_sweep"]

DEFAULT_DENSITIES = (1.0, 0.6, 0.4, 0.25, 0.16, 0.1, 0.063, 0.04, 0.025, 0.016, 0.01)


def isotonic(y: Sequence[float] | np.ndarray, *, increasing: bool = True) -> np.ndarray:
    """Least-squares monotone fit of ``y`` (in the given order) by pool-adjacent-violators:
    ``argmin_f sum (y_i - f_i)^2`` subject to ``f_1 <= f_2 <= ...`` (``>=`` when not increasing)."""
    v = np.asarray(y, dtype=np.float64) * (1 if increasing else -1)
    sums: list[float] = []
    counts: list[int] = []
    for val in v:
        sums.append(float(val))
        counts.append(1)
        while len(sums) > 1 and sums[-2] / counts[-2] > sums[-1] / counts[-1]:  # violator: pool
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    fit = np.repeat([s / c for s, c in zip(sums, counts)], counts)
    return fit if increasing else -fit


def knee(x: Sequence[float], y: Sequence[float], *, log_x: bool = True, monotone: str | None = None) -> dict[str, Any]:
    """Kneedle knee of ``y(x)`` (module docstring).

    Args:
        x: at least 3 distinct positive abscissae (any order), e.g. densities.
        y: the curve at ``x``, finite.
        log_x: use ``log x`` as the abscissa.
        monotone: ``None`` (use ``y`` as given), ``"decreasing"`` or ``"increasing"``: take the
            knee of the isotonic fit of ``y`` in ``x`` (:func:`isotonic`).

    Returns:
        ``{"index": i, "x": x_i, "y": y_i, "distance": [dist per point, in the order given],
        "fit": [the curve the knee was taken on, in the order given]}``.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape or xa.size < 3:
        raise ValueError(f"knee needs x and y of the same length >= 3; got {xa.shape} and {ya.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("knee: x and y must be finite")
    if log_x and (xa <= 0).any():
        raise ValueError("knee with log_x needs x > 0")
    u = np.log(xa) if log_x else xa
    if np.unique(u).size != u.size:
        raise ValueError("knee: x values must be distinct")
    if monotone is not None:
        check_choice("monotone", monotone, ("decreasing", "increasing"))
    order = np.argsort(u)
    u, v = u[order], ya[order]
    if monotone is not None:
        v = isotonic(v, increasing=monotone == "increasing")
    span_u = u[-1] - u[0]
    span_v = v.max() - v.min()
    un = (u - u[0]) / span_u
    vn = (v - v.min()) / span_v if span_v > 0 else np.zeros_like(v)
    du, dv = un[-1] - un[0], vn[-1] - vn[0]
    dist = np.abs(dv * (un - un[0]) - du * (vn - vn[0])) / math.hypot(du, dv)
    out, fit = np.empty_like(dist), np.empty_like(v)
    out[order], fit[order] = dist, v
    i = int(order[int(np.argmax(dist))])
    return {"index": i, "x": float(xa[i]), "y": float(ya[i]), "distance": out.tolist(), "fit": fit.tolist()}


def _curve_metric(rows: list[dict[str, Any]]) -> str:
    return "recon_rel_error" if all("recon_rel_error" in r for r in rows) else "loss"


def summarise_sweep(rows: list[dict[str, Any]], *, mode: str, log_x: bool = True) -> dict[str, Any]:
    """``{"mode", "metric", "rows", "knee"}``: the knee of the metric over the masks' densities
    (``{"error": reason}`` when there are fewer than 3 distinct densities)."""
    metric = _curve_metric(rows)
    out: dict[str, Any] = {"mode": mode, "metric": metric, "rows": rows}
    try:
        k = knee([r["density"] for r in rows], [r[metric] for r in rows], log_x=log_x, monotone="decreasing")
        out["knee"] = {"density": k["x"], metric: k["y"], "index": k["index"], "distance": k["distance"],
                       "fit": k["fit"], "method": "Kneedle on the non-increasing isotonic fit, log density"}
    except ValueError as e:
        out["knee"] = {"error": str(e)}
    return out


LOCALITY_COLUMNS = ("median_spread", "median_window_energy", "energy_radius90_median", "participation_ratio_mean",
                    "tile_purity_mean", "single_tile_fraction")


def format_sweep_table(sweep: dict[str, Any]) -> str:
    """Markdown table of a sweep (one row per density) and a line naming the knee."""
    rows = sweep["rows"]
    metric = sweep["metric"]
    cols = ["density", metric] + [c for c in ("loss",) if c != metric] + [c for c in LOCALITY_COLUMNS if c in rows[0]]
    knee_i = sweep.get("knee", {}).get("index")
    lines = [f"density sweep ({sweep['mode']})", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, r in enumerate(rows):
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols]
        if i == knee_i:
            cells[0] = f"**{cells[0]}** (knee)"
        lines.append("| " + " | ".join(cells) + " |")
    k = sweep.get("knee", {})
    lines.append("")
    lines.append(f"knee: density {k['density']:.4g} ({metric} {k[metric]:.4g})" if "density" in k
                 else f"knee: none ({k.get('error')})")
    return "\n".join(lines)


def plot_sweep(sweep: dict[str, Any], path: str | Path) -> None:
    """PNG: the metric, the median spread and tile purity (mosaics) or window energy against
    density (log axis), the knee marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from structlearn.io import atomic_write_bytes

    rows = sweep["rows"]
    d = np.array([r["density"] for r in rows])
    panels = [(sweep["metric"], "held-out " + sweep["metric"].replace("_", " "))]
    if "median_spread" in rows[0]:
        panels.append(("median_spread", "median spatial spread (pixels)"))
    if "tile_purity_mean" in rows[0]:
        panels.append(("tile_purity_mean", "mean tile purity"))
    elif "median_window_energy" in rows[0]:
        panels.append(("median_window_energy", "median 5x5 window energy"))
    else:
        panels.append(("participation_ratio_mean", "mean participation ratio"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), constrained_layout=True)
    k = sweep.get("knee", {})
    for j, (ax, (key, label)) in enumerate(zip(np.atleast_1d(axes), panels)):
        ax.plot(d, [r[key] for r in rows], "o-", color="C0", label="measured" if j == 0 else None)
        if j == 0 and "fit" in k:
            ax.plot(d, k["fit"], "-", color="C1", lw=1, label="monotone fit")
        if "density" in k:
            ax.axvline(k["density"], color="C3", ls="--", lw=1, label=f"knee d={k['density']:.3g}")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("density (share of weights kept)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"density sweep ({sweep['mode']})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


