"""Layer-wise trainer: data -> dense layer(s) -> objective -> pruning -> metrics, resumable.

For each layer ``l`` of ``cfg.layers`` (greedy layer-wise, Hinton et al. 2006 / Bengio et
al. 2007): train ``steps`` minibatch updates, then ``prune.rounds`` times: prune with the
layer's pruner (round ``r`` at step ``steps + r * finetune_steps``), optionally rewind the
kept weights to their state after ``prune.rewind_step`` steps (Frankle and Carbin 2019;
Frankle et al. 2020), fine-tune ``prune.finetune_steps`` with the mask fixed; evaluate on
held-out data; the next layer trains on this layer's codes after its nonlinearity, centred
and scaled to unit mean variance.

Resume: a checkpoint (atomic) every ``checkpoint_every`` steps holds the objective's state,
its optimizer state, the minibatch generator's state, the pruning rounds done, the rewind
state (tensors) and the finished layers. Events due at a step (rewind snapshot, pruning)
run right after the update that reaches it, before that step's checkpoint. The data is
rebuilt from the seed, so a resumed run ends bit-identical to an uninterrupted one on CPU.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

import structlearn.objectives  # noqa: F401  (registers every objective)
from structlearn.config import LayerConfig, RunConfig, dump_config
from structlearn.data.prepare import Prepared, prepare
from structlearn.io import atomic_torch_save, atomic_write_json, load_checkpoint
from structlearn.loggers import Logger
from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.structure.locality import locality_summary, tile_purity
from structlearn.viz.montage import filters_to_rgb, labels_to_rgb, save_png, upscale

CHECKPOINT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; allowed here: auto, cpu")
    return dev


def derive_seed(seed: int, *tags: Any) -> int:
    """A stable 63-bit seed for one component, from the run seed and a tag path."""
    h = hashlib.sha256(repr((seed,) + tags).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def build_objective(lcfg: LayerConfig, n_in: int, input_shape: tuple[int, ...], seed: int, li: int,
                    device: torch.device, dtype: torch.dtype) -> Objective:
    g = torch.Generator().manual_seed(derive_seed(seed, "layer", li))
    layer = DenseLayer(n_in, lcfg.n_units, input_shape, generator=g, dtype=dtype, device=device)
    factory = OBJECTIVES.get(lcfg.objective)
    try:
        return factory(layer, generator=g, **lcfg.params)
    except TypeError as e:
        import inspect

        allowed = [p for p in inspect.signature(factory).parameters if p not in ("self", "layer", "generator")]
        raise ValueError(f"layers.{li}.params for objective {lcfg.objective!r}: {e}; allowed: {', '.join(allowed)}") from e


def apply_nonlinearity(z: Tensor, lcfg: LayerConfig) -> Tensor:
    """Codes -> next layer's input: |z|, relu(z), z, or pooled energy sqrt(sum_group z^2)."""
    if lcfg.nonlinearity == "abs":
        return z.abs()
    if lcfg.nonlinearity == "relu":
        return z.clamp_min(0)
    if lcfg.nonlinearity == "pool_energy":
        return z.reshape(z.shape[0], -1, lcfg.pool_group).pow(2).sum(-1).sqrt()
    return z


@torch.no_grad()
def encode_all(obj: Objective, x: Tensor, device: torch.device, chunk: int = 4096) -> Tensor:
    """Encode ``x: (n, d)`` (on CPU) in chunks on ``device``; returns CPU codes."""
    return torch.cat([obj.encode(x[i:i + chunk].to(device)).cpu() for i in range(0, x.shape[0], chunk)])


@torch.no_grad()
def evaluate(obj: Objective, x: Tensor, tile_map: Tensor | None, image_input: bool) -> dict[str, float]:
    """Held-out metrics of one layer on ``x: (n, d)`` (already on the layer's device).

    recon_rel_error = ||x - x_hat||^2 / ||x||^2 ; active_codes = mean number of non-zero
    codes per sample (|z| > 1e-8) ; code_kurtosis = E z^4 / (E z^2)^2 pooled over all codes
    (3 for a Gaussian; Olshausen and Field report about 20 after training).
    """
    z = obj.encode(x)
    out: dict[str, float] = {"loss": float(obj.loss(x))}
    xhat = obj.decode(z)
    if xhat is not None:
        out["recon_rel_error"] = float(((x - xhat) ** 2).sum() / (x * x).sum())
    m2 = (z * z).mean()
    out["code_kurtosis"] = float((z ** 4).mean() / (m2 * m2)) if m2 > 0 else float("nan")
    out["active_codes"] = float((z.abs() > 1e-8).float().sum(1).mean())
    W = obj.layer.effective_weight().detach()
    shape = obj.layer.input_shape if image_input else (1, W.shape[1])
    out.update(locality_summary(W.reshape(W.shape[0], *shape), tile_map if image_input else None))
    return out


@dataclass
class RunState:
    layer: int = 0  # layer being trained
    step: int = 0  # step within that layer
    done: list[dict] = field(default_factory=list)  # finished layers: objective state dicts
    results: list[dict] = field(default_factory=list)  # finished layers: metrics
    before_prune: dict[str, float] | None = None  # metrics of the current layer at pruning time
    complete: bool = False
    rounds_done: int = 0  # pruning rounds of the current layer already applied
    trajectory: list[dict] = field(default_factory=list)  # held-out metrics before each pruning round
    rewind: dict | None = None  # {"objective": state tensors, "optimizer": state} at prune.rewind_step


class Trainer:
    """Runs a :class:`RunConfig`; writes into ``run_dir`` when given (else memory only)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path | None = None, loggers: list[Logger] | None = None,
                 progress: bool = False, on_step: Callable[[int], None] | None = None,
                 on_layer: Callable[[int, Objective, Tensor], None] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.loggers = list(loggers or [])
        self.progress = progress
        self.on_step = on_step  # test hook: called with the global step after each update
        # called after layer li is trained as on_layer(li, objective, codes) with the layer's
        # held-out codes after its nonlinearity, (n_test, n_out) on CPU (e.g. to measure the
        # entropy gain per layer; raising optuna.TrialPruned there stops the stack)
        self.on_layer = on_layer
        self.device = resolve_device(cfg.device)
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.objectives: list[Objective] = []
        self.data: Prepared | None = None

    # ---------------------------------------------------------------- persistence
    def _ckpt_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoint.pt"

    def _save(self, st: RunState, obj: Objective | None, g: torch.Generator | None) -> None:
        path = self._ckpt_path()
        if path is None:
            return
        atomic_torch_save(path, {
            "version": CHECKPOINT_VERSION, "config": dump_config(self.cfg),
            "layer": st.layer, "step": st.step, "done": st.done, "results": st.results,
            "before_prune": st.before_prune, "complete": st.complete,
            "objective": None if obj is None else {k: v.cpu() for k, v in obj.state_dict().items()},
            "optimizer": None if obj is None else obj.optimizer_state(),
            "rng": None if g is None else g.get_state(),
            "rounds_done": st.rounds_done, "trajectory": st.trajectory, "rewind": st.rewind,
        })

    def _load(self) -> dict | None:
        path = self._ckpt_path()
        if path is None or not path.exists():
            return None
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {str(path)!r} has version {ck.get('version') if isinstance(ck, dict) else '?'}; "
                             f"allowed: {CHECKPOINT_VERSION}")
        if ck["config"] != dump_config(self.cfg):
            raise ValueError(f"checkpoint {str(path)!r} was written by a different config; resume with the run's own config.yaml")
        return ck

    # ---------------------------------------------------------------- outputs
    def _log(self, step: int, metrics: dict[str, float]) -> None:
        for lg in self.loggers:
            lg.log_metrics(step, metrics)

    def _save_filters(self, obj: Objective, li: int, tag: str, step: int) -> None:
        """Montage of all units (grouped by dominant tile, then purity) and a zoomed sample of
        up to 12 units per tile, for the run folder and W&B."""
        if li != 0 or self.data is None:
            return
        W = obj.layer.filters().cpu()
        order, sample, tile = None, None, None
        if self.data.tile_map is not None:
            from structlearn.structure.locality import tile_energy

            tile = tuple(self.cfg.data.tile)
            dom = tile_energy(W, self.data.tile_map).argmax(1).numpy()
            pur = tile_purity(W, self.data.tile_map).nan_to_num(0).numpy()
            order = np.lexsort((-pur, dom))  # by dominant tile, then purity
            sample = np.concatenate([order[dom[order] == t][:12] for t in range(int(dom.max()) + 1)])
        else:
            sample = np.arange(min(144, W.shape[0]))
        images = {f"filters_{tag}": filters_to_rgb(W.numpy(), order, tile=tile),
                  f"filters_{tag}_sample": filters_to_rgb(W.numpy(), sample, tile=tile)}
        if self.run_dir is not None:
            save_png(self.run_dir / f"filters_{tag}.png", upscale(images[f"filters_{tag}"], 1600))
            save_png(self.run_dir / f"filters_{tag}_sample.png", upscale(images[f"filters_{tag}_sample"], 900))
        for lg in self.loggers:
            lg.log_images(step, images)

    # ---------------------------------------------------------------- main loop
    def prepare(self) -> Prepared:
        """Build the data and check every layer's objective and hyperparameters, before any
        file is written: bad input fails here and leaves nothing half-written."""
        if self.data is None:
            self.data = prepare(self.cfg.data, derive_seed(self.cfg.seed, "data"))
            n_in, shape = self.data.train.shape[1], self.data.input_shape
            for li, lcfg in enumerate(self.cfg.layers):
                obj = build_objective(lcfg, n_in, shape, self.cfg.seed, li, torch.device("cpu"), self.dtype)
                if lcfg.prune is not None:
                    lcfg.prune.build()
                    if lcfg.prune.finetune_params:
                        obj.validate_params(**lcfg.prune.finetune_params)
                n_in = lcfg.n_units // (lcfg.pool_group if lcfg.nonlinearity == "pool_energy" else 1)
                shape = (n_in,)
        return self.data

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        t0 = time.time()
        data = self.prepare()
        ck = self._load()
        st = RunState()
        if ck is not None:
            st = RunState(ck["layer"], ck["step"], ck["done"], ck["results"], ck["before_prune"], ck["complete"],
                          ck.get("rounds_done", int(ck["before_prune"] is not None)), ck.get("trajectory", []),
                          ck.get("rewind"))
            for lg in self.loggers:
                if hasattr(lg, "truncate_after"):
                    lg.truncate_after(self._global_step(st.layer, st.step))
        if self.run_dir is not None and data.tile_map is not None:
            save_png(self.run_dir / "tile_map.png", upscale(labels_to_rgb(data.tile_map.numpy()), 256))
        x_train, x_test = data.train, data.test
        shape: tuple[int, ...] = data.input_shape
        for li, lcfg in enumerate(cfg.layers):
            obj = build_objective(lcfg, x_train.shape[1], shape, cfg.seed, li, self.device, self.dtype)
            if li < st.layer or st.complete:
                obj.load_state_dict(st.done[li])
            else:
                self._train_layer(li, lcfg, obj, x_train, x_test.to(self.device, self.dtype), st,
                                  ck if (ck is not None and ck["layer"] == li and ck["objective"] is not None) else None)
            self.objectives.append(obj)
            last = li + 1 == len(cfg.layers)
            if not last or self.on_layer is not None:  # codes -> nonlinearity
                x_test = apply_nonlinearity(encode_all(obj, x_test.to(self.dtype), self.device), lcfg)
                if self.on_layer is not None:
                    self.on_layer(li, obj, x_test)
            if not last:  # next layer's inputs, scaled to unit mean variance
                x_train = apply_nonlinearity(encode_all(obj, x_train.to(self.dtype), self.device), lcfg)
                mu, sd = x_train.mean(0), x_train.var(0).mean().sqrt().clamp_min(1e-12)
                x_train, x_test = ((x_train - mu) / sd).float(), ((x_test - mu) / sd).float()
                shape = (x_train.shape[1],)
        st.complete = True
        self._save(st, None, None)
        summary = self._summary(st, time.time() - t0)
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "summary.json", summary)
        return summary

    def _global_step(self, li: int, s: int) -> int:
        return sum(self._layer_total(lc) for lc in self.cfg.layers[:li]) + s

    @staticmethod
    def _layer_total(lcfg: LayerConfig) -> int:
        pr = lcfg.prune
        return lcfg.steps + (pr.rounds * pr.finetune_steps if pr is not None else 0)

    @staticmethod
    def _snapshot(obj: Objective) -> dict:
        """Copies (not views) of the objective's tensors and optimizer state, for rewinding."""
        return {"objective": {k: v.detach().to("cpu", copy=True) for k, v in obj.state_dict().items()},
                "optimizer": copy.deepcopy(obj.optimizer_state())}

    def _events(self, li: int, lcfg: LayerConfig, obj: Objective, pruner: Any, x_eval: Tensor,
                tile_map: Tensor | None, image_input: bool, st: RunState) -> None:
        """What is due at step ``st.step`` of layer ``li``: the rewind snapshot and pruning
        rounds. Idempotent (a resumed run calls it again at the checkpoint's step)."""
        pr = lcfg.prune
        if pr is None:
            return
        s = st.step
        if pr.rewind_step is not None and s == pr.rewind_step and st.rewind is None:
            st.rewind = self._snapshot(obj)
        while st.rounds_done < pruner.rounds and s == lcfg.steps + st.rounds_done * pr.finetune_steps:
            self._prune_round(li, lcfg, obj, pruner, x_eval, tile_map, image_input, st)

    def _prune_round(self, li: int, lcfg: LayerConfig, obj: Objective, pruner: Any, x_eval: Tensor,
                     tile_map: Tensor | None, image_input: bool, st: RunState) -> None:
        """Round ``st.rounds_done``: evaluate, prune, rewind (kept support only), set the
        fine-tuning hyperparameters, log the pruned layer's metrics."""
        pr, r, s = lcfg.prune, st.rounds_done, st.step
        gs = self._global_step(li, s)
        metrics = evaluate(obj, x_eval, tile_map, image_input)
        if r == 0:
            st.before_prune = metrics
            self._save_filters(obj, li, "before_prune" if li == 0 else f"layer{li}_before_prune", gs)
            if self.run_dir is not None:  # the dense layer, for density sweeps (structlearn sweep)
                atomic_torch_save(self.run_dir / f"layer{li}_dense.pt", {
                    **self._snapshot(obj), "step": s, "input_shape": list(obj.layer.input_shape)})
        st.trajectory.append({"round": r, "step": s, **metrics})
        pruner(obj.layer, r)
        if pr.rewind_step is not None:
            if st.rewind is None:
                raise ValueError(f"layers.{li}.prune.rewind_step={pr.rewind_step}: no state was recorded at that step")
            mask = obj.layer.mask.clone()
            obj.load_state_dict({k: v.to(self.device) for k, v in st.rewind["objective"].items()})
            obj.load_optimizer_state(copy.deepcopy(st.rewind["optimizer"]))
            obj.layer.set_mask_(mask)  # the early weights on the kept support
        if pr.finetune_params:
            obj.set_params(**pr.finetune_params)
        st.rounds_done = r + 1
        self._log(gs, {"layer": li, "prune/round": r, "prune/density": obj.layer.density(),
                       **{f"pruned/{k}": v for k, v in evaluate(obj, x_eval, tile_map, image_input).items()}})

    def _train_layer(self, li: int, lcfg: LayerConfig, obj: Objective, x_train: Tensor, x_test: Tensor,
                     st: RunState, ck: dict | None) -> None:
        cfg = self.cfg
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, "batches", li))
        if ck is not None:
            obj.load_state_dict({k: v.to(self.device) for k, v in ck["objective"].items()})
            obj.load_optimizer_state(ck["optimizer"] or {})
            g.set_state(ck["rng"])
        else:
            st.layer, st.step, st.before_prune = li, 0, None
            st.rounds_done, st.trajectory, st.rewind = 0, [], None
        pr = lcfg.prune
        pruner = pr.build() if pr is not None else None
        after_step = getattr(pruner, "after_step", None)
        if pr is not None and st.rounds_done > 0 and pr.finetune_params:
            obj.set_params(**pr.finetune_params)  # hyperparameters are not in the state dict
        total = self._layer_total(lcfg)
        image_input = li == 0
        tile_map = self.data.tile_map if image_input else None
        x_eval = x_test[: min(512, x_test.shape[0])]
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=st.step, desc=f"layer {li} ({lcfg.objective})", mininterval=2.0)
        try:
            self._events(li, lcfg, obj, pruner, x_eval, tile_map, image_input, st)
            while st.step < total:
                idx = torch.randint(x_train.shape[0], (lcfg.batch_size,), generator=g)
                out = obj.train_step(x_train[idx].to(self.device, self.dtype))
                if after_step is not None and st.rounds_done > 0:
                    after_step(obj.layer)
                st.step += 1
                self._events(li, lcfg, obj, pruner, x_eval, tile_map, image_input, st)
                gs = self._global_step(li, st.step)
                if st.step % 10 == 0 or st.step == total:
                    self._log(gs, {"layer": li, **{f"train/{k}": float(v) for k, v in out.items()}})
                if st.step % cfg.eval_every == 0 and st.step < total:
                    self._log(gs, {"layer": li, **{f"eval/{k}": v for k, v in evaluate(obj, x_eval, tile_map, image_input).items()}})
                if st.step % cfg.checkpoint_every == 0 and st.step < total:
                    self._save(st, obj, g)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(out['loss']):.4g}", refresh=False)
                if self.on_step is not None:
                    self.on_step(gs)
        except KeyboardInterrupt:
            self._save(st, obj, g)
            raise
        finally:
            if bar is not None:
                bar.close()
        final = evaluate(obj, x_test, tile_map, image_input)
        self._log(self._global_step(li, total), {"layer": li, **{f"final/{k}": v for k, v in final.items()}})
        self._save_filters(obj, li, "after_prune" if (li == 0 and lcfg.prune is not None) else ("final" if li == 0 else f"layer{li}"), self._global_step(li, total))
        if self.run_dir is not None:
            atomic_torch_save(self.run_dir / f"layer{li}.pt", {"weight": obj.layer.weight.detach().cpu(),
                                                               "mask": obj.layer.mask.cpu(),
                                                               "input_shape": list(obj.layer.input_shape)})
        st.done.append({k: v.cpu() for k, v in obj.state_dict().items()})
        trajectory = st.trajectory + [{"round": st.rounds_done, "step": total, **final}] if pr is not None else []
        st.results.append({"layer": li, "objective": lcfg.objective, "n_units": lcfg.n_units, **final,
                           **({f"{k}_before_prune": v for k, v in st.before_prune.items()} if st.before_prune else {}),
                           **({"prune_trajectory": trajectory} if pr is not None and pr.rounds > 1 else {})})
        st.layer, st.step, st.before_prune = li + 1, 0, None
        st.rounds_done, st.trajectory, st.rewind = 0, [], None
        self._save(st, None, None)

    def _summary(self, st: RunState, seconds: float) -> dict[str, Any]:
        first = st.results[0]
        keys = ("tile_purity_mean", "tile_purity_median", "single_tile_fraction", "density", "recon_rel_error",
                "code_kurtosis", "active_codes", "participation_ratio_mean", "chance_purity", "tile_purity_shuffled_mean", "loss",
                "tile_purity_mean_before_prune", "single_tile_fraction_before_prune", "recon_rel_error_before_prune")
        out: dict[str, Any] = {k: first[k] for k in keys if k in first}
        out.update({"n_units": first["n_units"], "input_shape": list(self.data.input_shape),
                    "objective": first["objective"], "seconds": seconds, "layers": st.results,
                    "gaussian_clone": self.cfg.data.gaussian_clone, "device": str(self.device)})
        return out
