"""The density-sweep workflow: prune a trained dense layer to a series of densities, fine-tune
each point, and measure error and locality (curves and knee: :mod:`structlearn.prune.sweep`).

- ``oneshot``: every point starts again from the dense layer and is pruned to ``d_i``;
- ``imp``: iterative magnitude pruning, each point pruned from the previous one (Frankle and
  Carbin 2019; Pellegrini and Biroli 2022).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from structlearn.io import atomic_write_json, atomic_write_text
from structlearn.metrics import evaluate
from structlearn.objectives.base import Objective
from structlearn.params import check_choice, check_range, declared_params
from structlearn.prune.base import PRUNERS
from structlearn.prune.sweep import DEFAULT_DENSITIES, format_sweep_table, plot_sweep, summarise_sweep
from structlearn.runs.run import Run
from structlearn.runtime import derive_seed, progress, resolve_device, resolve_dtype
from structlearn.structure.receptive_fields import receptive_field_stats


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
    pruner: str = "magnitude",
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
        scope: pruning scope, ``"unit"`` or ``"global"`` (for pruners that have one).
        pruner: a registered pruner that declares ``density`` (``magnitude``, ``imp``, ...); each
            point is its round-0 mask at that density, from the current mask.
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
    check_choice("mode", mode, ("oneshot", "imp"))
    check_choice("scope", scope, ("unit", "global"))
    check_range("finetune_steps", finetune_steps, 0, None, integer=True)
    check_range("batch_size", batch_size, 1, None, integer=True)
    declared = declared_params(PRUNERS.get(pruner))
    if "density" not in declared:
        raise ValueError(f"pruner {pruner!r} has no density; allowed: a pruner that declares one "
                         f"({', '.join(n for n in PRUNERS.available() if 'density' in declared_params(PRUNERS.get(n)))})")
    common = {"scope": scope} if "scope" in declared else {}
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
        for d in progress(ds, desc=f"density sweep ({mode})", unit="density"):
            if mode == "oneshot" or not rows:
                obj.load_state_dict(start)
                obj.load_optimizer_state(_copy(start_opt))
            PRUNERS.create(pruner, density=d, rounds=1, **common)(layer, 0)
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

    return copy.deepcopy(state)


# ---------------------------------------------------------------------------- outputs

def run_sweep(
    run: Run,
    *,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    mode: str = "oneshot",
    scope: str | None = None,
    pruner: str | None = None,
    finetune_steps: int = 100,
    n_eval: int = 512,
    write: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Density sweep of layer 0 of a run folder, from its dense state ``layer0_dense.pt``
    (``mode`` oneshot or imp), or the IMP trajectory the run recorded (``mode="trajectory"``).
    Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into the run folder when ``write``."""
    check_choice("mode", mode, ("oneshot", "imp", "trajectory"))
    cfg = run.cfg
    lcfg = cfg.layers[0]
    if mode == "trajectory":
        traj = run.summary()["layers"][0].get("prune_trajectory")
        if not traj:
            raise ValueError(f"{str(run.path)!r} recorded no IMP trajectory (prune.rounds = 1); "
                             "allowed: a run with prune.method imp and rounds > 1, or mode oneshot/imp")
        out = summarise_sweep([{"density_target": r["density"], **r} for r in traj], mode="trajectory")
    else:
        run.layer(0, "dense")  # a clear error before the data is built
        obj = run.objective(0, device=resolve_device(cfg.device), dtype=resolve_dtype(cfg.dtype), state="dense")
        data, pr = run.data, lcfg.prune
        rows = density_sweep(
            obj, data.train, data.test[:n_eval], densities, mode=mode,
            scope=scope or (pr.scope if pr is not None else "unit"), finetune_steps=finetune_steps,
            pruner=pruner or (pr.method if pr is not None and "density" in declared_params(PRUNERS.get(pr.method))
                              else "magnitude"),
            batch_size=lcfg.batch_size, finetune_params=(pr.finetune_params if pr is not None else None),
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "sweep", mode)),
            tile_map=data.tile_map, image_input=True, on_point=on_point)
        out = summarise_sweep(rows, mode=mode)
        out["finetune_steps"] = finetune_steps
        out["n_eval"] = int(min(n_eval, data.test.shape[0]))
    if write:
        atomic_write_json(run.file("sweep.json"), out)
        atomic_write_text(run.file("sweep.md"), format_sweep_table(out) + "\n")
        plot_sweep(out, run.file("sweep.png"))
    return out
