"""Density sweep: the objective and the locality of a trained layer as functions of density,
and the knee of that curve (the density to choose).

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
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from structlearn.objectives.base import Objective, check_choice, check_range
from structlearn.prune.magnitude import magnitude_mask
from structlearn.structure.receptive_fields import receptive_field_stats

__all__ = ["DEFAULT_DENSITIES", "density_sweep", "format_sweep_table", "isotonic", "knee", "plot_sweep", "run_sweep",
           "summarise_sweep"]

DEFAULT_DENSITIES = (1.0, 0.6, 0.4, 0.25, 0.16, 0.1, 0.063, 0.04, 0.025, 0.016, 0.01)


def isotonic(y: Sequence[float], *, increasing: bool = True) -> np.ndarray:
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


@torch.no_grad()
def _locality(obj: Objective, image_input: bool) -> dict[str, float]:
    """Medians over non-empty units of spread and best 5x5-window energy (image layers)."""
    if not image_input:
        return {}
    f = obj.layer.filters()
    h, w = f.shape[1:]
    st = receptive_field_stats(f, k=min(5, h, w))
    keep = ~st["empty"]
    if not bool(keep.any()):
        return {"median_spread": float("nan"), "median_window_energy": float("nan")}
    return {"median_spread": float(st["spread"][keep].median()),
            "median_window_energy": float(st["window_energy"][keep].median())}


def density_sweep(
    obj: Objective,
    x_train: Tensor,
    x_eval: Tensor,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    *,
    mode: str = "oneshot",
    scope: str = "unit",
    finetune_steps: int = 100,
    batch_size: int = 256,
    finetune_params: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    tile_map: Tensor | None = None,
    image_input: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Prune, fine-tune and evaluate ``obj`` (a trained, dense objective) at each density.

    Args:
        obj: the trained objective; its state at the call is the start of every ``oneshot`` point
            and of the ``imp`` path, and is restored at the end.
        x_train: ``(n, n_in)`` training inputs for fine-tuning (any device; batches move to the
            layer's device).
        x_eval: ``(m, n_in)`` held-out inputs for the metrics.
        densities: targets in (0, 1], visited from the largest down.
        mode: ``"oneshot"`` or ``"imp"`` (module docstring).
        scope: magnitude-pruning scope, ``"unit"`` or ``"global"``.
        finetune_steps: fine-tuning steps per point, ``>= 0``.
        finetune_params: objective hyperparameters during fine-tuning (e.g. ``{"lam": 0.3}``).
        generator: minibatch generator (CPU); the same one continues across points.
        tile_map, image_input: as in :func:`structlearn.train.evaluate`.
        on_point: called with each row as it is done (progress).

    Returns:
        one row per density: ``density_target``, ``density`` (the mask's), the held-out metrics of
        :func:`structlearn.train.evaluate` (``recon_rel_error``, ``loss``, participation ratio,
        tile purity, ...) and ``median_spread``, ``median_window_energy``.
    """
    from structlearn.train import evaluate

    check_choice("mode", mode, ("oneshot", "imp"))
    check_choice("scope", scope, ("unit", "global"))
    check_range("finetune_steps", finetune_steps, 0, None)
    check_range("batch_size", batch_size, 1, None)
    ds = sorted((float(d) for d in densities), reverse=True)
    if not ds:
        raise ValueError("densities is empty; allowed: values in (0, 1]")
    for d in ds:
        check_range("density", d, 0, 1, low_open=True)
    if finetune_params:
        obj.validate_params(**finetune_params)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    layer = obj.layer
    dev, dt = layer.weight.device, layer.weight.dtype
    start = {k: v.detach().clone() for k, v in obj.state_dict().items()}
    start_opt = _copy(obj.optimizer_state())
    start_params = {k: getattr(obj, k) for k in (finetune_params or {})}
    x_eval = x_eval.to(dev, dt)
    rows: list[dict[str, Any]] = []
    try:
        for d in ds:
            if mode == "oneshot" or not rows:
                obj.load_state_dict(start)
                obj.load_optimizer_state(_copy(start_opt))
            layer.set_mask_(magnitude_mask(layer.weight, layer.mask, scope=scope, density=d))
            if finetune_params:
                obj.set_params(**finetune_params)
            for _ in range(int(finetune_steps)):
                idx = torch.randint(x_train.shape[0], (batch_size,), generator=g)
                obj.train_step(x_train[idx].to(dev, dt))
            row = {"density_target": d, **evaluate(obj, x_eval, tile_map, image_input), **_locality(obj, image_input)}
            rows.append(row)
            if on_point is not None:
                on_point(row)
    finally:
        obj.load_state_dict(start)
        obj.load_optimizer_state(_copy(start_opt))
        if start_params:
            obj.set_params(**start_params)
    return rows


def _copy(state: Any) -> Any:
    import copy

    return copy.deepcopy(state)


# ---------------------------------------------------------------------------- outputs

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


LOCALITY_COLUMNS = ("median_spread", "median_window_energy", "participation_ratio_mean", "tile_purity_mean",
                    "single_tile_fraction")


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


def run_sweep(
    run_dir: str | Path,
    *,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    mode: str = "oneshot",
    scope: str | None = None,
    finetune_steps: int = 100,
    n_eval: int = 512,
    write: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Density sweep of layer 0 of a run folder, from its dense state ``layer0_dense.pt``
    (``mode`` oneshot or imp), or the IMP trajectory the run recorded (``mode="trajectory"``).
    Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into the run folder when ``write``."""
    from structlearn.data.prepare import prepare
    from structlearn.io import atomic_write_json, atomic_write_text, load_checkpoint, read_json
    from structlearn.rundir import read_run_config
    from structlearn.train import build_objective, derive_seed, resolve_device

    check_choice("mode", mode, ("oneshot", "imp", "trajectory"))
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    lcfg = cfg.layers[0]
    if mode == "trajectory":
        summary = read_json(run_dir / "summary.json")
        traj = summary["layers"][0].get("prune_trajectory")
        if not traj:
            raise ValueError(f"{str(run_dir)!r} recorded no IMP trajectory (prune.rounds = 1); "
                             "allowed: a run with prune.method imp and rounds > 1, or mode oneshot/imp")
        out = summarise_sweep([{"density_target": r["density"], **r} for r in traj], mode="trajectory")
    else:
        path = run_dir / "layer0_dense.pt"
        if not path.is_file():
            raise ValueError(f"{str(path)!r} does not exist: the run has no dense layer 0 state (it was not "
                             "pruned, or has not reached pruning)")
        dense = load_checkpoint(path)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        data = prepare(cfg.data, derive_seed(cfg.seed, "data"))
        obj = build_objective(lcfg, data.train.shape[1], data.input_shape, cfg.seed, 0, device, dtype)
        try:
            obj.load_state_dict({k: v.to(device) for k, v in dense["objective"].items()})
        except RuntimeError as e:
            raise ValueError(f"{str(path)!r} does not fit objective {lcfg.objective!r} of this version "
                             f"(written by another version of structlearn?): {e}") from e
        obj.load_optimizer_state(dense["optimizer"] or {})
        pr = lcfg.prune
        rows = density_sweep(
            obj, data.train, data.test[:n_eval], densities, mode=mode,
            scope=scope or (pr.scope if pr is not None else "unit"), finetune_steps=finetune_steps,
            batch_size=lcfg.batch_size, finetune_params=(pr.finetune_params if pr is not None else None),
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "sweep", mode)),
            tile_map=data.tile_map, image_input=True, on_point=on_point)
        out = summarise_sweep(rows, mode=mode)
        out["finetune_steps"] = finetune_steps
        out["n_eval"] = int(min(n_eval, data.test.shape[0]))
    if write:
        atomic_write_json(run_dir / "sweep.json", out)
        atomic_write_text(run_dir / "sweep.md", format_sweep_table(out) + "\n")
        plot_sweep(out, run_dir / "sweep.png")
    return out
