"""Trainer callbacks: everything a run produces besides the trained state.

A callback subclasses :class:`Callback` and overrides the events it needs; the trainer passes
itself first (``tr.cfg``, ``tr.data``, ``tr.state``, ``tr.global_step``, ``tr.emit``):

- ``on_run_start(tr, state)``: after the data is built and a checkpoint (if any) is loaded;
- ``on_step(tr, layer, global_step, metrics)``: after every update (tensors of the step);
- ``on_log(tr, step, metrics)``: every metrics dict (train/, eval/, prune/, pruned/, final/);
- ``on_images(tr, step, images, captions)``: uint8 images, emitted by :class:`FilterImages`
  and :class:`FilterTimeline`;
- ``on_table(tr, step, key, columns, rows)``: a table (cells may be uint8 images), emitted by
  :class:`UnitTables`;
- ``on_prune(tr, layer, round, objective, metrics)``: before the mask of ``round`` is applied,
  with the held-out metrics of the layer at that moment;
- ``on_layer_end(tr, layer, objective, codes, trained)``: after a layer; ``codes`` are its
  held-out codes after the nonlinearity when a callback sets ``needs_codes`` (or the layer is
  not the last), else ``None``; ``trained`` is false for layers finished before a resume;
- ``on_run_end(tr, summary)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from structlearn.build import layer_total, snapshot
from structlearn.config import RunConfig
from structlearn.data.prepare import Prepared
from structlearn.io import atomic_torch_save, atomic_write_json
from structlearn.loggers import Logger
from structlearn.structure.locality import tile_energy, tile_purity
from structlearn.viz.montage import filters_to_rgb, labels_to_rgb, save_png, upscale

SUMMARY_KEYS = ("tile_purity_mean", "tile_purity_median", "single_tile_fraction", "density", "recon_rel_error",
                "code_kurtosis", "active_codes", "participation_ratio_mean", "chance_purity", "tile_purity_shuffled_mean",
                "loss", "tile_purity_mean_before_prune", "single_tile_fraction_before_prune",
                "recon_rel_error_before_prune", "energy_radius90_median")


def make_summary(cfg: RunConfig, data: Prepared, results: list[dict], seconds: float, device: torch.device) -> dict[str, Any]:
    """``summary.json``: the first layer's headline metrics, then every layer's."""
    first = results[0]
    out: dict[str, Any] = {k: first[k] for k in SUMMARY_KEYS if k in first}
    out.update({"n_units": first["n_units"], "input_shape": list(data.input_shape), "objective": first["objective"],
                "seconds": seconds, "layers": results, "gaussian_clone": cfg.data.gaussian_clone, "device": str(device)})
    return out


class Callback:
    """No-op hooks (module docstring)."""

    needs_codes = False

    def on_run_start(self, tr: Any, state: Any) -> None: ...
    def on_step(self, tr: Any, layer: int, step: int, metrics: dict) -> None: ...
    def on_log(self, tr: Any, step: int, metrics: dict) -> None: ...
    def on_images(self, tr: Any, step: int, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None: ...
    def on_table(self, tr: Any, step: int, key: str, columns: Sequence[str], rows: list[list[Any]]) -> None: ...
    def on_prune(self, tr: Any, layer: int, round: int, objective: Any, metrics: dict) -> None: ...
    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None: ...
    def on_run_end(self, tr: Any, summary: dict) -> None: ...


class LogTo(Callback):
    """Sends metrics and images to loggers (JSONL, W&B, memory); on resume, drops JSONL lines
    past the checkpoint (``truncate_after``). A list passed in is shared, not copied."""

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = loggers if isinstance(loggers, list) else list(loggers)

    def on_run_start(self, tr: Any, state: Any) -> None:
        for lg in self.loggers:
            if hasattr(lg, "truncate_after"):
                lg.truncate_after(tr.global_step(state.layer, state.step))

    def on_log(self, tr: Any, step: int, metrics: dict) -> None:
        for lg in self.loggers:
            lg.log_metrics(step, metrics)

    def on_images(self, tr: Any, step: int, images: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> None:
        for lg in self.loggers:
            lg.log_images(step, images, captions)

    def on_table(self, tr: Any, step: int, key: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        for lg in self.loggers:
            lg.log_table(step, key, columns, rows)


class RunFiles(Callback):
    """The run folder's files: ``tile_map.png``, ``layer<i>_dense.pt`` (the layer at its first
    pruning, for density sweeps), ``layer<i>.pt`` (weight, mask, input shape), ``summary.json``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def on_run_start(self, tr: Any, state: Any) -> None:
        if tr.data.tile_map is not None:
            save_png(self.run_dir / "tile_map.png", upscale(labels_to_rgb(tr.data.tile_map.numpy()), 256))

    def on_prune(self, tr: Any, layer: int, round: int, objective: Any, metrics: dict) -> None:
        if round == 0:
            atomic_torch_save(self.run_dir / f"layer{layer}_dense.pt", {
                **snapshot(objective), "step": tr.state.step, "input_shape": list(objective.layer.input_shape)})

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        lay = objective.layer
        atomic_torch_save(self.run_dir / f"layer{layer}.pt", {"weight": lay.weight.detach().cpu(), "mask": lay.mask.cpu(),
                                                             "input_shape": list(lay.input_shape)})

    def on_run_end(self, tr: Any, summary: dict) -> None:
        atomic_write_json(self.run_dir / "summary.json", summary)


class FilterImages(Callback):
    """Montages of the first layer's filters before pruning and at the end: all units (grouped
    by dominant tile, then purity) and a zoomed sample of up to 12 units per tile; PNGs into
    ``run_dir`` (when given) and ``on_images`` for the loggers."""

    def __init__(self, run_dir: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def on_prune(self, tr: Any, layer: int, round: int, objective: Any, metrics: dict) -> None:
        if layer == 0 and round == 0:
            self.draw(tr, objective, "before_prune", tr.global_step(layer, tr.state.step), log=True)

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        if layer == 0:
            pruned = tr.cfg.layers[0].prune is not None
            self.draw(tr, objective, "after_prune" if pruned else "final", tr.global_step(0, layer_total(tr.cfg.layers[0])),
                      log=trained)

    def draw(self, tr: Any, objective: Any, tag: str, step: int, log: bool) -> None:
        W = objective.layer.filters().cpu()
        order, tile = None, None
        if tr.data.tile_map is not None:
            tile = tuple(tr.cfg.data.tile)
            dom = tile_energy(W, tr.data.tile_map).argmax(1).numpy()
            pur = tile_purity(W, tr.data.tile_map).nan_to_num(0).numpy()
            order = np.lexsort((-pur, dom))  # by dominant tile, then purity
            sample = np.concatenate([order[dom[order] == t][:12] for t in range(int(dom.max()) + 1)])
        else:
            sample = np.arange(min(144, W.shape[0]))
        images = {f"filters_{tag}": filters_to_rgb(W.numpy(), order, tile=tile),
                  f"filters_{tag}_sample": filters_to_rgb(W.numpy(), sample, tile=tile)}
        if self.run_dir is not None:
            save_png(self.run_dir / f"filters_{tag}.png", upscale(images[f"filters_{tag}"], 1600))
            save_png(self.run_dir / f"filters_{tag}_sample.png", upscale(images[f"filters_{tag}_sample"], 900))
        if log:
            what = {"before_prune": "before pruning", "after_prune": "after pruning", "final": "final"}[tag]
            caption = f"layer 0, {what}, step {step}: " + _describe(W, tr.data.tile_map)
            tr.emit("on_images", step, images, {k: caption for k in images})


def _describe(W: torch.Tensor, tile_map: torch.Tensor | None) -> str:
    """``density d, tile purity p`` of filters ``(n, [C,] H, W)`` (purity for mosaics only)."""
    flat = W.reshape(W.shape[0], -1)
    out = f"density {float((flat != 0).double().mean()):.3f}"
    if tile_map is not None and W.ndim in (3, 4) and tuple(W.shape[-2:]) == tuple(tile_map.shape):
        alive = (flat != 0).any(1)
        if alive.any():
            pur, chance = float(tile_purity(W[alive], tile_map).mean()), 1 / (int(tile_map.max()) + 1)
            out += f", tile purity {pur:.3f} (chance {chance:.3f})"
    return out


def _image_layer(tr: Any, layer: int) -> bool:
    """Layer ``layer`` reads images (the first layer of image data: ``(H, W)`` or colour
    ``(C, H, W)``), not codes or vectors."""
    shape = tr.data.input_shape
    return layer == 0 and (len(shape) == 3 or (len(shape) == 2 and shape[0] > 1))


def _wants(loggers: Sequence[Logger], what: str) -> bool:
    return any(getattr(lg, what, False) for lg in loggers)


class FilterTimeline(Callback):
    """Every layer's filters every ``every`` steps (and before each pruning round, and at the
    layer's end) as one image per layer under one key, ``filters/layer<i>``, so that W&B's
    image slider shows localisation forming. One fixed colour scale per layer
    (:func:`~structlearn.viz.montage.fixed_scale` of its first montage); units stay in place
    (index order); captions name the step, the phase, the density and, on mosaics, the tile
    purity. Emitted only when a logger takes images (``wants_images``)."""

    def __init__(self, every: int, loggers: Sequence[Logger]) -> None:
        if every < 1:
            raise ValueError(f"every={every!r} out of range; allowed: >= 1")
        self.every, self.loggers = every, loggers
        self.scales: dict[int, float] = {}
        self.drawn = -1  # the global step of the last montage (one image per key and step)

    def on_step(self, tr: Any, layer: int, step: int, metrics: dict) -> None:
        s = tr.state.step
        first = layer not in self.scales  # the layer's first update: the slider starts near the initialisation
        if (first or s % self.every == 0) and s < layer_total(tr.cfg.layers[layer]) and step != self.drawn:
            self.draw(tr, layer, tr.live, step, "pruned" if tr.state.rounds_done else "dense")

    def on_prune(self, tr: Any, layer: int, round: int, objective: Any, metrics: dict) -> None:
        self.draw(tr, layer, objective, tr.global_step(layer, tr.state.step), f"before pruning round {round}")

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        if trained:
            self.draw(tr, layer, objective, tr.global_step(layer, layer_total(tr.cfg.layers[layer])), "end of layer")

    def draw(self, tr: Any, layer: int, objective: Any, step: int, phase: str) -> None:
        from structlearn.viz.montage import fixed_scale, weights_to_rgb

        if not _wants(self.loggers, "wants_images"):
            return
        self.drawn = step
        W = objective.layer.filters().detach().cpu().float()
        rows = W.reshape(W.shape[0], -1).numpy()
        if layer not in self.scales:
            self.scales[layer] = fixed_scale(rows)
        sc = self.scales[layer]
        image = _image_layer(tr, layer)
        if image:
            tile = tuple(tr.cfg.data.tile) if tr.data.tile_map is not None else None
            img = upscale(filters_to_rgb(W.numpy(), tile=tile, scale=sc), 640)
        else:
            img = upscale(weights_to_rgb(rows, scale=sc), 512)
        caption = (f"layer {layer}, step {step} ({phase}): "
                   + _describe(W if image else W.reshape(W.shape[0], -1), tr.data.tile_map if image else None)
                   + f"; colour scale |w|/||w|| = {sc:.3f}")
        tr.emit("on_images", step, {f"filters/layer{layer}": img}, {f"filters/layer{layer}": caption})


class UnitTables(Callback):
    """A per-unit table of an image layer (:mod:`structlearn.structure.units`: the filter, its
    dominant tile, tile purity, participation ratio, 90%-energy radius, Gabor fit and R^2,
    shared-kernel id, density) before each pruning round (so after the previous round's
    fine-tuning) and at the layer's end, as ``units/layer<i>``. Computed only when a logger
    takes tables (``wants_tables``): the Gabor fit and the conv read-out cost seconds."""

    def __init__(self, loggers: Sequence[Logger], gabor_steps: int = 100) -> None:
        self.loggers, self.gabor_steps = loggers, gabor_steps

    def on_prune(self, tr: Any, layer: int, round: int, objective: Any, metrics: dict) -> None:
        self.table(tr, layer, objective, tr.global_step(layer, tr.state.step))

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        if trained:
            self.table(tr, layer, objective, tr.global_step(layer, layer_total(tr.cfg.layers[layer])))

    def table(self, tr: Any, layer: int, objective: Any, step: int) -> None:
        from structlearn.structure.units import COLUMNS, unit_numbers

        if not (_image_layer(tr, layer) and _wants(self.loggers, "wants_tables")):
            return
        W = objective.layer.filters().detach().cpu().float()
        cols = unit_numbers(W, tr.data.tile_map, gabor_steps=self.gabor_steps)
        tile = tuple(tr.cfg.data.tile) if tr.data.tile_map is not None else None
        rows = []
        for i in range(W.shape[0]):
            cells = [upscale(filters_to_rgb(W[i:i + 1].numpy(), tile=tile), 64)]
            cells += [_cell(cols[c][i]) for c in COLUMNS]
            rows.append(cells)
        tr.emit("on_table", step, f"units/layer{layer}", ("filter",) + COLUMNS, rows)


def _cell(v: Any) -> Any:
    """A JSON-ready table cell: ints stay ints, NaN becomes None."""
    if isinstance(v, (np.integer, int)):
        return int(v)
    v = float(v)
    return None if v != v else v


class ProgressBar(Callback):
    """A tqdm bar per layer, with the step's loss."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.layer = -1

    def on_step(self, tr: Any, layer: int, step: int, metrics: dict) -> None:
        from tqdm import tqdm

        if layer != self.layer:
            self.close()
            lcfg = tr.cfg.layers[layer]
            self.bar = tqdm(total=layer_total(lcfg), initial=tr.state.step - 1, desc=f"layer {layer} ({lcfg.objective})",
                            mininterval=2.0)
            self.layer = layer
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{float(metrics['loss']):.4g}", refresh=False)

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.layer = -1


class OnCodes(Callback):
    """Calls ``fn(layer, objective, codes)`` with each layer's held-out codes (e.g. the entropy
    recorder of the depth search; raising ``optuna.TrialPruned`` there stops the stack)."""

    needs_codes = True

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_layer_end(self, tr: Any, layer: int, objective: Any, codes: Any, trained: bool) -> None:
        self.fn(layer, objective, codes)


class OnStep(Callback):
    """Calls ``fn(global_step)`` after every update (tests stop runs at chosen steps this way)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_step(self, tr: Any, layer: int, step: int, metrics: dict) -> None:
        self.fn(step)


def standard_callbacks(run_dir: str | Path | None, loggers: Sequence[Logger] = (), progress: bool = False,
                       images_every: int = 100) -> list[Callback]:
    """What ``structlearn discover`` attaches: loggers, run-folder files, filter montages (PNGs,
    and every ``images_every`` steps for loggers that take images), per-unit tables, progress.
    ``loggers`` is shared (a W&B logger appended later receives everything from then on)."""
    shared = loggers if isinstance(loggers, list) else list(loggers)
    cbs: list[Callback] = [LogTo(shared)]
    if run_dir is not None:
        cbs.append(RunFiles(run_dir))
    cbs += [FilterImages(run_dir), FilterTimeline(images_every, shared), UnitTables(shared)]
    if progress:
        cbs.append(ProgressBar())
    return cbs
