"""Trainer callbacks: everything a run produces besides the trained state.

A callback subclasses :class:`Callback` and overrides the events it needs; the trainer passes
itself first (``tr.cfg``, ``tr.data``, ``tr.state``, ``tr.global_step``, ``tr.emit``):

- ``on_run_start(tr, state)``: after the data is built and a checkpoint (if any) is loaded;
- ``on_step(tr, layer, global_step, metrics)``: after every update (tensors of the step);
- ``on_log(tr, step, metrics)``: every metrics dict (train/, eval/, prune/, pruned/, final/);
- ``on_images(tr, step, images)``: uint8 images, emitted by :class:`FilterImages`;
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
                "recon_rel_error_before_prune")


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
    def on_images(self, tr: Any, step: int, images: dict[str, np.ndarray]) -> None: ...
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

    def on_images(self, tr: Any, step: int, images: dict[str, np.ndarray]) -> None:
        for lg in self.loggers:
            lg.log_images(step, images)


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
            tr.emit("on_images", step, images)


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


def standard_callbacks(run_dir: str | Path | None, loggers: Sequence[Logger] = (), progress: bool = False) -> list[Callback]:
    """What ``structlearn discover`` attaches: loggers, run-folder files, filter montages, progress."""
    cbs: list[Callback] = [LogTo(loggers if isinstance(loggers, list) else list(loggers))]
    if run_dir is not None:
        cbs.append(RunFiles(run_dir))
    cbs.append(FilterImages(run_dir))
    if progress:
        cbs.append(ProgressBar())
    return cbs
