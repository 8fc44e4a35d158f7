"""Layer-wise trainer: data -> dense layer(s) -> objective -> pruning, resumable; outputs are callbacks.

For each layer ``l`` (greedy layer-wise, Hinton et al. 2006; Bengio et al. 2007): ``steps``
updates, then ``prune.rounds`` times: prune (round ``r`` at step ``steps + r * finetune_steps``),
optionally rewind the kept weights to their state after ``prune.rewind_step`` steps (Frankle
et al. 2020), fine-tune ``finetune_steps`` with the mask fixed. The next layer trains on this
layer's codes after its nonlinearity, centred and scaled to unit mean variance, or (its
``pca_input``) projected on their ``n_units`` leading principal components and whitened.

Events (:class:`structlearn.callbacks.Callback`): ``on_run_start``, ``on_step``, ``on_log``
(every metrics dict), ``on_prune`` (before the mask changes), ``on_layer_end`` (with the
held-out codes when a callback sets ``needs_codes``; also for layers finished before a resume),
``on_run_end``.

Resume: a checkpoint (atomic) every ``checkpoint_every`` steps holds the objective's state, its
optimizer state, the minibatch generator's state, the pruning rounds done and the rewind
state. The data is rebuilt from the seed, so a resumed run ends bit-identical on CPU.
Interruptions: ``stop`` (anything with ``is_set()``, e.g. the flag that the CLI's signal
handlers set) is polled at every step boundary; when set, the trainer writes a checkpoint
there and raises :class:`Interrupted` (a ``KeyboardInterrupt``). A raw ``KeyboardInterrupt``
inside a step writes nothing: the step is half done, so only the last boundary checkpoint is
consistent, and resuming from it is exact.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from torch import Tensor

from structlearn.build import (
    PCAWhitening,
    apply_nonlinearity,
    build_objective,
    check_layers,
    check_memory,
    encode_all,
    layer_total,
    snapshot,
)
from structlearn.callbacks import Callback, make_summary
from structlearn.config import LayerConfig, RunConfig, to_dict
from structlearn.data.prepare import Prepared, prepare
from structlearn.io import atomic_torch_save, load_checkpoint
from structlearn.metrics import evaluate
from structlearn.objectives.base import Objective
from structlearn.parallel.checkpoint import (
    SHARDED,
    latest_sharded,
    load_sharded,
    read_sharded_meta,
    remove_sharded,
    save_sharded,
)
from structlearn.parallel.engine import LayerEngine
from structlearn.parallel.mesh import Mesh
from structlearn.runtime import derive_seed, resolve_device, resolve_dtype

CHECKPOINT_VERSION = 1
RESUME_FREE = ("wandb", "parallel")  # config fields a resumed run may change (not part of the experiment)


class Interrupted(KeyboardInterrupt):
    """Raised at a step boundary after ``stop`` was set; the checkpoint is written."""


def experiment_config(cfg: RunConfig) -> str:
    """The config as resume compares it: the fields in :data:`RESUME_FREE` at their defaults,
    ``parallel`` and a false ``data.color`` left out (so checkpoints written before they existed
    still match)."""
    d = to_dict(replace(cfg, **{k: getattr(RunConfig(), k) for k in RESUME_FREE}))
    d.pop("parallel")
    if not d["data"]["color"]:
        d["data"].pop("color")
    return yaml.safe_dump(d, sort_keys=False)


@dataclass
class RunState:
    layer: int = 0  # layer being trained
    step: int = 0  # step within that layer
    done: list[dict] = field(default_factory=list)  # finished layers: objective state dicts
    results: list[dict] = field(default_factory=list)  # finished layers: metrics
    before_prune: dict[str, float] | None = None  # metrics of the current layer at its first pruning
    complete: bool = False
    rounds_done: int = 0  # pruning rounds of the current layer already applied
    trajectory: list[dict] = field(default_factory=list)  # held-out metrics before each pruning round
    rewind: dict | None = None  # {"objective": state tensors, "optimizer": state} at prune.rewind_step


def checkpoint_meta(cfg: RunConfig, st: RunState, optimizer: dict | None, g: torch.Generator | None) -> dict:
    """Everything a checkpoint holds besides the objective's state."""
    return {"version": CHECKPOINT_VERSION, "config": experiment_config(cfg), **vars(st), "optimizer": optimizer,
            "rng": None if g is None else g.get_state()}


def save_checkpoint(path: Path, cfg: RunConfig, st: RunState, obj: Objective | None, g: torch.Generator | None) -> None:
    """Atomically: the run state, the objective's state and optimizer state, the batch generator's
    state (a sharded checkpoint of an earlier multi-process session is then removed)."""
    meta = checkpoint_meta(cfg, st, None if obj is None else obj.optimizer_state(), g)
    atomic_torch_save(path, {**meta, "objective": None if obj is None else {k: v.cpu() for k, v in obj.state_dict().items()}})
    remove_sharded(path.parent)


def _position(ck: dict) -> tuple:
    return bool(ck.get("complete")), int(ck.get("layer", 0)), int(ck.get("step", 0))


def read_checkpoint(path: Path, cfg: RunConfig) -> dict | None:
    """The run's checkpoint (None when there is none): ``path`` (one process) or the sharded
    one beside it (:mod:`structlearn.parallel.checkpoint`), whichever is further on; refused
    when it is corrupt, of another version, or written by another experiment."""
    found = []
    if path.exists():
        found.append((load_checkpoint(path), repr(str(path))))
    folder = latest_sharded(path.parent)
    if folder is not None:
        found.append((read_sharded_meta(folder), repr(str(folder))))
    if not found:
        return None
    for ck, where in found:
        if not isinstance(ck, dict) or ck.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {where} has version {ck.get('version') if isinstance(ck, dict) else '?'}; "
                             f"allowed: {CHECKPOINT_VERSION}")
        if ck["config"] != experiment_config(cfg):
            raise ValueError(f"checkpoint {where} was written by a different config; resume with the run's own config.yaml")
    return max(found, key=lambda f: _position(f[0]))[0]


def _prune_due(lcfg: LayerConfig, pruner: Any, st: RunState) -> bool:
    """A pruning round is due at step ``st.step``."""
    pr = lcfg.prune
    return (pr is not None and st.rounds_done < pruner.rounds
            and st.step == lcfg.steps + st.rounds_done * pr.finetune_steps)


class Trainer:
    """Runs a :class:`RunConfig`; ``checkpoint`` is the checkpoint path (None: memory only)."""

    def __init__(self, cfg: RunConfig, checkpoint: str | Path | None = None, callbacks: Sequence[Callback] = (),
                 data: Prepared | None = None, stop: Any = None, mesh: Mesh | None = None) -> None:
        self.cfg, self.callbacks, self.data, self.stop, self.mesh = cfg, list(callbacks), data, stop, mesh
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.device = mesh.device if mesh is not None else resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype)
        self.engine: LayerEngine | None = None  # the layer in training, on a mesh
        self.objectives: list[Objective] = []
        self._checked = False

    def emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def global_step(self, li: int, s: int) -> int:
        return sum(layer_total(lc) for lc in self.cfg.layers[:li]) + s

    def prepare(self) -> Prepared:
        """Build the data (unless given) and check every layer once, before any file is
        written: bad input fails here and leaves nothing half-written."""
        if not self._checked:
            check_memory(self.cfg, self.device, self.dtype)  # before any allocation
            if self.data is None:
                self.data = prepare(self.cfg.data, derive_seed(self.cfg.seed, "data"), self.device)
            mesh = self.mesh
            also = None if mesh is None else (lambda li, lc, obj: LayerEngine.check(mesh, obj, lc.batch_size, f"layers.{li}"))
            check_layers(self.cfg, self.data.train.shape[1], self.data.input_shape, self.dtype, also)
            self._checked = True
        assert self.data is not None
        return self.data

    def _save(self, st: RunState, obj: Objective | None = None, g: torch.Generator | None = None) -> None:
        if self.checkpoint is None:
            return
        if self.mesh is None:
            save_checkpoint(self.checkpoint, self.cfg, st, obj, g)
            return
        eng = self.engine if obj is not None else None  # collective: every rank writes its shard
        meta = checkpoint_meta(self.cfg, st, None if eng is None else eng.local.optimizer_state(), g)
        save_sharded(self.checkpoint.parent, meta, None if eng is None else eng.sharded_state(), self.mesh)

    def _restore(self, ck: dict, obj: Objective) -> None:
        """The objective's state from a checkpoint: a single-process one (every rank keeps its
        rows) or a sharded one (resharded by DCP to this run's processes, one included)."""
        eng = self.engine
        if ck["objective"] != SHARDED:
            obj.load_state_dict({k: v.to(self.device) for k, v in ck["objective"].items()})
            if eng is not None:
                eng.push()
        elif eng is not None and eng.sharded:
            state = eng.sharded_state()
            load_sharded(ck["sharded_folder"], state)
            with torch.no_grad():
                for key, t in eng.local.state_dict().items():
                    v = state[key]
                    t.copy_(v.to_local() if hasattr(v, "to_local") else v)
            eng.pull()
        else:
            state = obj.state_dict()  # shares the storage: loaded in place
            load_sharded(ck["sharded_folder"], state)
        (obj if eng is None else eng.local).load_optimizer_state(ck["optimizer"] or {})

    def _load(self) -> dict | None:
        return read_checkpoint(self.checkpoint, self.cfg) if self.checkpoint is not None else None

    def run(self) -> dict[str, Any]:
        t0, data, ck = time.time(), self.prepare(), self._load()
        st = RunState(**{k: ck[k] for k in RunState.__dataclass_fields__ if k in ck}) if ck is not None else RunState()
        self.state = st
        self.emit("on_run_start", st)
        x_train, x_test, shape = data.train, data.test, tuple[int, ...](data.input_shape)
        for li, lcfg in enumerate(self.cfg.layers):
            self._boundary()  # the previous layer's end is checkpointed
            obj = build_objective(lcfg, x_train.shape[1], shape, self.cfg.seed, li, self.device, self.dtype)
            if li < st.layer or st.complete:  # finished before a resume: its state and its fine-tuning hyperparameters
                obj.load_state_dict(st.done[li])
                if lcfg.prune is not None and lcfg.prune.finetune_params:
                    obj.set_params(**lcfg.prune.finetune_params)  # it encodes the next layer's inputs as it did
                trained = False
            else:
                trained = True
                resume = ck if ck is not None and ck["layer"] == li and ck["objective"] is not None else None
                self._train_layer(li, lcfg, obj, x_train, x_test.to(self.device, self.dtype), st, resume)
            self.objectives.append(obj)
            last = li + 1 == len(self.cfg.layers)
            codes = None
            if not last or any(cb.needs_codes for cb in self.callbacks):  # held-out codes -> nonlinearity
                codes = x_test = apply_nonlinearity(encode_all(obj, x_test.to(self.dtype), self.device), lcfg)
            self.emit("on_layer_end", li, obj, codes, trained)
            if not last:  # next layer's inputs: scaled to unit mean variance, or PCA-whitened
                x_train = apply_nonlinearity(encode_all(obj, x_train.to(self.dtype), self.device), lcfg)
                if self.cfg.layers[li + 1].pca_input:
                    pca = PCAWhitening(x_train, self.cfg.layers[li + 1].n_units)
                    x_train, x_test = pca(x_train), pca(x_test)
                else:
                    mu, sd = x_train.mean(0), x_train.var(0).mean().sqrt().clamp_min(1e-12)
                    x_train, x_test = ((x_train - mu) / sd).float(), ((x_test - mu) / sd).float()
                shape = (x_train.shape[1],)
        st.complete = True
        self._save(st)
        summary = make_summary(self.cfg, data, st.results, time.time() - t0, self.device)
        self.emit("on_run_end", summary)
        return summary

    def _prune_round(self, li: int, lcfg: LayerConfig, obj: Objective, pruner: Any, x_eval: Tensor, st: RunState) -> None:
        """Round ``st.rounds_done``: evaluate, prune, rewind (kept support only), fine-tuning params."""
        pr, r, image = lcfg.prune, st.rounds_done, li == 0
        assert pr is not None
        tile_map = self.prepare().tile_map if image else None
        metrics = self._evaluate(obj, x_eval, tile_map, image)
        if r == 0:
            st.before_prune = metrics
        st.trajectory.append({"round": r, "step": st.step, **metrics})
        self.emit("on_prune", li, r, obj, metrics)
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
        self.emit("on_log", self.global_step(li, st.step), {
            "layer": li, "prune/round": r, "prune/density": obj.layer.density(),
            **{f"pruned/{k}": v for k, v in self._evaluate(obj, x_eval, tile_map, image).items()}})

    def _evaluate(self, obj: Objective, x: Tensor, tile_map: Tensor | None, image: bool) -> dict[str, float]:
        """Held-out metrics of the layer in training; on a mesh its codes come from the sharded
        inference (every rank takes part, so this runs outside the callbacks)."""
        if self.engine is None:
            return evaluate(obj, x, tile_map, image)
        with self.engine.sharded_inference():
            return evaluate(obj, x, tile_map, image)

    def _boundary(self, st: RunState | None = None, obj: Objective | None = None, g: torch.Generator | None = None) -> None:
        """At a step boundary: when ``stop`` is set (on any rank), checkpoint here (if mid-layer) and raise."""
        stop = self.stop is not None and self.stop.is_set()
        if self.mesh is not None:
            stop = self.mesh.agree(stop)
        if stop:
            if st is not None:
                self._save(st, obj, g)
            raise Interrupted

    def _events(self, li: int, lcfg: LayerConfig, obj: Objective, pruner: Any, x_eval: Tensor, st: RunState) -> None:
        """What is due at step ``st.step``: the rewind snapshot and pruning rounds (idempotent)."""
        pr = lcfg.prune
        if pr is not None and pr.rewind_step == st.step and st.rewind is None:
            st.rewind = snapshot(obj)
        while _prune_due(lcfg, pruner, st):
            self._prune_round(li, lcfg, obj, pruner, x_eval, st)
            if self.engine is not None:
                self.engine.push()  # the new mask (and rewound weights, fine-tuning parameters) to the shards

    def _full_needed(self, lcfg: LayerConfig, pruner: Any, st: RunState, first: bool) -> bool:
        """On a mesh: whether anything reads the full layer after step ``st.step`` (an event,
        an evaluation, the filter montages, the layer's end), so the shards are gathered first.
        The same answer on every rank: the gather is collective."""
        pr, s = lcfg.prune, st.step
        every = (self.cfg.eval_every, self.cfg.wandb.log_images_every or self.cfg.eval_every)
        return (first or s == layer_total(lcfg) or any(s % e == 0 for e in every)
                or (pr is not None and pr.rewind_step == s) or _prune_due(lcfg, pruner, st))

    def _train_layer(self, li: int, lcfg: LayerConfig, obj: Objective, x_train: Tensor, x_test: Tensor,
                     st: RunState, ck: dict | None) -> None:
        g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "batches", li))
        self.live = obj  # the layer in training, for callbacks (filter montages over time)
        eng = self.engine = LayerEngine(self.mesh, obj, lcfg.batch_size, f"layers.{li}") if self.mesh is not None else None
        if ck is not None:
            self._restore(ck, obj)
            g.set_state(ck["rng"])
        else:
            st.layer, st.step, st.before_prune, st.rounds_done, st.trajectory, st.rewind = li, 0, None, 0, [], None
        pr = lcfg.prune
        pruner = pr.build() if pr is not None else None
        after_step = getattr(pruner, "after_step", None)
        if pr is not None and st.rounds_done > 0 and pr.finetune_params:
            obj.set_params(**pr.finetune_params)  # hyperparameters are not in the state dict
            if eng is not None:
                eng.push()
        total, tile_map = layer_total(lcfg), self.prepare().tile_map if li == 0 else None
        x_eval = x_test[: min(512, x_test.shape[0])]
        self._events(li, lcfg, obj, pruner, x_eval, st)
        first = True
        if self.device.type != "cpu":  # the training set moves to the device once, not a batch per step
            x_train = x_train.to(self.device, self.dtype)
        while st.step < total:
            idx = torch.randint(x_train.shape[0], (lcfg.batch_size,), generator=g)
            xb = x_train[idx.to(x_train.device)].to(self.device, self.dtype)
            out = obj.train_step(xb) if eng is None else eng.step(xb)
            if after_step is not None and st.rounds_done > 0:
                after_step(obj.layer if eng is None else eng.local.layer)
            st.step += 1
            if eng is not None and self._full_needed(lcfg, pruner, st, first):
                eng.pull()
            first = False
            self._events(li, lcfg, obj, pruner, x_eval, st)
            gs = self.global_step(li, st.step)
            if st.step % 10 == 0 or st.step == total:
                self.emit("on_log", gs, {"layer": li, **{f"train/{k}": float(v) for k, v in out.items()}})
            if st.step % self.cfg.eval_every == 0 and st.step < total:
                ev = self._evaluate(obj, x_eval, tile_map, li == 0)
                self.emit("on_log", gs, {"layer": li, **{f"eval/{k}": v for k, v in ev.items()}})
            if st.step % self.cfg.checkpoint_every == 0 and st.step < total:
                self._save(st, obj, g)
            self.emit("on_step", li, gs, out)
            self._boundary(st, obj, g)
        final = self._evaluate(obj, x_test, tile_map, li == 0)
        self.emit("on_log", self.global_step(li, total), {"layer": li, **{f"final/{k}": v for k, v in final.items()}})
        st.done.append({k: v.cpu() for k, v in obj.state_dict().items()})
        traj = st.trajectory + [{"round": st.rounds_done, "step": total, **final}]
        st.results.append({"layer": li, "objective": lcfg.objective, "n_units": lcfg.n_units, **final,
                           **({f"{k}_before_prune": v for k, v in st.before_prune.items()} if st.before_prune else {}),
                           **({"prune_trajectory": traj} if pruner is not None and pruner.rounds > 1 else {})})
        st.layer, st.step, st.before_prune, st.rounds_done, st.trajectory, st.rewind = li + 1, 0, None, 0, [], None
        self.engine = None
        self._save(st)
