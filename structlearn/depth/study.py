"""Depth by Optuna: each trial trains a layer-wise stack and reports its entropy gain per layer.

A trial draws an architecture (:func:`structlearn.depth.space.suggest`: depth, and per layer
a width and a sparsity), trains it layer by layer with :class:`structlearn.train.Trainer`,
and after layer ``l`` measures the entropy ``H_l`` of its held-out codes
(:mod:`structlearn.depth.gain`; ``H_0`` = the whitened input) and calls
``trial.report(gain_l, step=l)`` with ``gain_l = (H_l - H_{l-1}) / H_0`` (or in nats when
``search.relative`` is false). The first trial of a study is enqueued at ``max_depth``, so
every study sees the whole gain profile once, whatever the sampler draws. The ``"stall"``
pruner stops the stack as soon as a layer's gain is below ``search.threshold``; ``"median"``
is Optuna's MedianPruner on the same values.

A trial's *useful depth* is the number of leading layers whose gain reaches the threshold
(:func:`structlearn.depth.gain.choose_depth`) and its *useful entropy* ``U = H_0 + sum of those
gains`` (nats): the entropy the stack reaches before it stalls. A complete trial returns
``U`` (maximised); a pruned trial keeps ``U`` in its user attributes (Optuna stores its last
reported gain as its value). The best trial is the one with the largest ``U`` among complete
and pruned trials, and the chosen depth is its useful depth.

Reproducibility: before each ``ask`` the sampler is a fresh ``TPESampler`` seeded with
``derive_seed(seed, "sampler", n_finished, n_running)`` (trials finished so far, trials
running in live workers). With one worker the architecture of every trial is then a
function of the seed and the finished history, so the same command with the same seed gives
the same trials, also when a killed study is resumed (the killed trial is re-run with its
own parameters first). With several workers no two asks share a seed (within one finished
count every ask adds a running trial), and the sequence depends on timing.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from structlearn.build import check_layers
from structlearn.callbacks import OnCodes
from structlearn.config import RunConfig, to_dict
from structlearn.data.prepare import Prepared
from structlearn.depth.gain import LayerEntropyRecorder, choose_depth
from structlearn.depth.space import SearchConfig, corner_params, suggest, trial_config
from structlearn.depth.storage import (
    WORKER_ATTR,
    Heartbeat,
    WorkerIdentity,
    fail_stale_trials,
    make_storage,
    study_lock,
)
from structlearn.io import atomic_write_json, atomic_write_text, read_json
from structlearn.runtime import derive_seed, progress
from structlearn.train import Trainer

FINISHED = ("COMPLETE", "PRUNED")


# ----------------------------------------------------------------------------- optuna pieces
def make_pruner(cfg: SearchConfig):
    import optuna

    space = cfg.search
    if space.pruner == "stall":
        return StallPruner(space.threshold)
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, space.n_startup_trials // 2), n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _stall_pruner_class():
    import optuna

    class StallPruner(optuna.pruners.BasePruner):
        """Prune as soon as the last reported gain is below ``threshold`` (NaN included)."""

        def __init__(self, threshold: float) -> None:
            self.threshold = float(threshold)

        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None:
                return False
            return not trial.intermediate_values[step] >= self.threshold

    return StallPruner


def StallPruner(threshold: float):  # noqa: N802  (a factory so optuna is imported late)
    return _stall_pruner_class()(threshold)


def make_sampler(cfg: SearchConfig, n_finished: int, n_running: int = 0):
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=derive_seed(cfg.run.seed, "sampler", n_finished, n_running) % 2**32,
                                          n_startup_trials=cfg.search.n_startup_trials, multivariate=True,
                                          group=True, constant_liar=True)


def open_study(cfg: SearchConfig, run_dir: Path, storage_spec: str | None, study_name: str, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_spec, run_dir)
    kw = dict(study_name=study_name, storage=storage, sampler=make_sampler(cfg, 0), pruner=make_pruner(cfg))
    if create:
        return optuna.create_study(direction="maximize", load_if_exists=True, **kw)
    return optuna.load_study(**kw)


# ----------------------------------------------------------------------------- one trial
class DataCache:
    """Prepared data per (data config, seed), so the trials of one process share it."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def data(self, run_cfg: RunConfig) -> Prepared:
        key = repr((to_dict(run_cfg.data), run_cfg.seed))
        if key not in self._data:
            self._data[key] = Trainer(run_cfg).prepare()
        return self._data[key]


def useful(entropies: list[float], cfg: SearchConfig) -> tuple[list[float], list[float], int, float]:
    """(gains in nats, scored gains, useful depth, useful entropy U) of one trial."""
    h = entropies
    gains = [h[i] - h[i - 1] for i in range(1, len(h))]
    h0 = abs(h[0])
    scored = [g / h0 if h0 > 0 else math.nan for g in gains] if cfg.search.relative else list(gains)
    depth = choose_depth(scored, cfg.search.threshold)
    return gains, scored, depth, h[0] + sum(gains[:depth])


def run_trial(trial, cfg: SearchConfig, cache: DataCache) -> float:
    """Train one trial's stack; report each layer's gain; return its useful entropy U."""
    import optuna

    t0 = time.time()
    params = suggest(trial, cfg.search)
    run_cfg = trial_config(cfg, params)
    data = cache.data(run_cfg)

    def on_gain(layer: int, gain: float, h: float) -> None:
        gains, scored, depth, u = useful(rec.entropies, cfg)
        for k, v in (("entropies", list(rec.entropies)), ("dims", list(rec.dims)), ("gains", gains),
                     ("scored_gains", scored), ("useful_depth", depth), ("useful_entropy", u),
                     ("seconds", time.time() - t0)):
            trial.set_user_attr(k, v)
        trial.report(scored[-1], step=layer)
        if trial.should_prune():
            raise optuna.TrialPruned(f"layer {layer} gained {scored[-1]:+.4f} < threshold {cfg.search.threshold}")

    rec = LayerEntropyRecorder(data.test, cfg.search.measure, eps2=cfg.search.eps2, on_gain=on_gain)
    trial.set_user_attr("entropies", list(rec.entropies))
    trial.set_user_attr("dims", list(rec.dims))
    Trainer(run_cfg, callbacks=[OnCodes(rec)], data=data).run()
    return useful(rec.entropies, cfg)[3]


# ----------------------------------------------------------------------------- workers
START_TIMEOUT_S = 120.0  # how long spawned workers wait for each other before the first trial

def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run_worker(run_dir: str | Path, storage_spec: str | None, study_name: str, n_trials: int,
               wandb_mode: str = "disabled", index: int = 0, log: Callable[[str], None] | None = None,
               cache: DataCache | None = None, start: Any = None) -> int:
    """Run trials of the study in ``run_dir`` until ``n_trials`` have finished (or are running
    in live workers). Returns the number of trials this worker finished. ``start``: a barrier
    (``multiprocessing`` context's ``Barrier``) the spawned workers of one ``run_search`` meet at
    once their study is open, so that a worker slow to import does not find every trial taken
    (a worker that never arrives breaks it after ``START_TIMEOUT_S`` and the others go on)."""
    import optuna
    from optuna.trial import TrialState

    run_dir = Path(run_dir)
    cfg = read_search_dir(run_dir)
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    study = open_study(cfg, run_dir, storage_spec, study_name)
    me = WorkerIdentity()
    cache = cache or DataCache()
    wb = TrialRuns(run_dir, cfg, wandb_mode, study_name, log) if wandb_mode != "disabled" else None
    if start is not None:
        try:
            start.wait(timeout=START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            log(f"worker {index}: not every worker started within {START_TIMEOUT_S} s; going on")
    old = signal.signal(signal.SIGTERM, _sigterm) if _main_thread() else None
    done = 0
    bar = progress(desc=f"search {study_name} (worker {index})", total=n_trials, unit="trial")
    try:
        while True:
            with study_lock(run_dir):
                for n in fail_stale_trials(study, me, cfg.search.grace_s):
                    log(f"trial {n}: its worker is gone; marked FAIL and enqueued again")
                states = [t.state for t in study.get_trials(deepcopy=False)]
                if not states:  # the deepest stack first: the stall pruner stops it where the gain vanishes
                    study.enqueue_trial({"depth": cfg.search.max_depth}, user_attrs={"first_at_max_depth": True})
                    states = [TrialState.WAITING]
                finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
                if finished + states.count(TrialState.RUNNING) >= n_trials:
                    break
                study.sampler = make_sampler(cfg, finished, states.count(TrialState.RUNNING))
                trial = study.ask()
                study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, me.as_attr())
            try:
                with Heartbeat(study._storage, trial._trial_id, cfg.search.heartbeat_s):
                    value = run_trial(trial, cfg, cache)
                frozen = study.tell(trial, value)
            except optuna.TrialPruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
                log(f"trial {trial.number}: interrupted; enqueued again for the next run")
                raise
            except Exception as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                study.tell(trial, state=TrialState.FAIL)
                raise
            done += 1
            bar.update()
            ua = frozen.user_attrs
            log(f"trial {frozen.number} {frozen.state.name.lower()}: depth {frozen.params.get('depth')}, "
                f"useful depth {ua.get('useful_depth')}, U = {ua.get('useful_entropy', float('nan')):.2f} nats, "
                f"gains {[round(g, 4) for g in ua.get('scored_gains', [])]} ({ua.get('seconds', 0):.1f} s)")
            if wb is not None:
                wb(study, frozen)
    finally:
        bar.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return done


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _worker_entry(run_dir: str, storage_spec: str | None, study_name: str, n_trials: int, wandb_mode: str,
                  index: int, threads: int = 0, start: Any = None) -> None:
    """Process entry point of a spawned search worker (so it sets its own torch threads)."""
    if threads:
        torch.set_num_threads(threads)
    try:
        run_worker(run_dir, storage_spec, study_name, n_trials, wandb_mode, index, start=start)
    except KeyboardInterrupt:
        sys.exit(130)


class TrialRuns:
    """One W&B run per finished trial (what optuna-integration's ``WeightsAndBiasesCallback``
    does with ``as_multirun``; that callback is deprecated since optuna-integration 4.9):
    the run's config holds every sampled parameter, the trial's state and the search config; its
    history has one row per layer (entropy, gain, scored gain, width); its summary holds the
    objective (``useful_entropy``) and the useful depth. Runs are grouped by ``wandb.group``
    (default: the study's name) with job type ``search-trial`` and the study's name as a tag,
    under ``run_dir/wandb`` (offline by default). If W&B fails (say, online with no network),
    one line says so and the search goes on without it: every trial is in the study's storage."""

    def __init__(self, run_dir: Path, cfg: SearchConfig, mode: str, study_name: str, log: Callable[[str], None]) -> None:
        from structlearn.runs.wandb_run import identity

        w = cfg.run.wandb
        self.run_dir, self.mode, self.log, self.study_name = run_dir, mode, log, study_name
        self.identity = {**identity(cfg.run, "search-trial"), "group": w.group or study_name, "tags": [*w.tags, study_name]}
        self.search = cfg.to_dict()
        self.failed = False

    def __call__(self, study: Any, trial: Any) -> None:
        from structlearn.loggers import WandbLogger, artifact_name, one_line

        if self.failed:
            return
        ua = trial.user_attrs
        config = {**trial.params, "trial_number": trial.number, "trial_state": trial.state.name.lower(), "search": self.search}
        try:
            wb = WandbLogger(self.run_dir, self.mode, f"trial-{trial.number}", config,
                             f"{artifact_name(self.study_name)[:40]}-t{trial.number}", self.identity)
            try:
                h, g, sg, dims = ua.get("entropies", []), ua.get("gains", []), ua.get("scored_gains", []), ua.get("dims", [])
                for layer in range(len(h)):
                    row = {"trial/entropy": h[layer], "trial/width": dims[layer] if layer < len(dims) else None}
                    if layer >= 1 and layer - 1 < len(g):
                        row.update({"trial/gain": g[layer - 1], "trial/scored_gain": sg[layer - 1]})
                    wb.log_metrics(layer, {k: v for k, v in row.items() if v is not None})
                wb.log_summary({"useful_entropy": ua.get("useful_entropy"), "useful_depth": ua.get("useful_depth"),
                                "value": trial.value, "state": trial.state.name.lower()})
            finally:
                wb.finish()
        except Exception as e:
            self.failed = True
            self.log(f"W&B ({self.mode}) could not log trial {trial.number}: {one_line(e)}; the search goes on without W&B "
                     f"(every trial is in the study's storage)")


# ----------------------------------------------------------------------------- the search
def read_search_dir(run_dir: Path) -> SearchConfig:
    from structlearn.depth.space import load_search_config

    path = Path(run_dir) / "search.yaml"
    if not path.is_file():
        raise ValueError(f"{str(run_dir)!r} is not a search folder: search.yaml is missing")
    return load_search_config(path)


def validate_search(cfg: SearchConfig) -> DataCache:
    """Fail before any file is written: the data, the objective and its hyperparameters at
    every corner of the space. Returns the cache holding the prepared data."""
    cache = DataCache()
    first, *rest = corner_params(cfg.search)
    if cfg.search.measure == "total_correlation":  # the split-half estimator needs m > 2 d on every layer
        widest = max([math.prod(cfg.run.data.input_shape)]
                     + [max(w) for w in cfg.search.layer_widths_lists()])
        if cfg.run.data.n_test <= 2 * widest:
            raise ValueError(f"search.measure 'total_correlation' needs data.n_test > 2 x the widest layer ({widest}); "
                             f"got data.n_test={cfg.run.data.n_test}; allowed: more held-out samples, narrower layers, "
                             f"or search.measure coding_rate")
    data = cache.data(trial_config(cfg, first))  # prepare() checks this corner's layers
    for p in rest:
        check_layers(trial_config(cfg, p), data.train.shape[1], data.input_shape, torch.float32)
    return cache


def run_search(cfg: SearchConfig, run_dir: str | Path, storage_spec: str | None = None, study_name: str | None = None,
               n_trials: int | None = None, workers: int = 1, wandb_mode: str = "disabled",
               log: Callable[[str], None] | None = None, cache: DataCache | None = None) -> dict[str, Any]:
    """Create or resume the study in ``run_dir``, run ``workers`` processes until ``n_trials``
    trials have finished, then write ``search.json``, ``gain.md`` and the plots."""
    from structlearn.depth.storage import (
        has_credentials,
        is_single_process,
        resolve_storage,
        storage_url_for_display,
        without_password,
    )

    run_dir = Path(run_dir)
    storage_spec = resolve_storage(storage_spec)
    public = without_password(storage_spec)  # what is written to disk: never a password
    n_trials = cfg.search.n_trials if n_trials is None else int(n_trials)
    if n_trials < 1:
        raise ValueError(f"--n-trials={n_trials}; allowed: >= 1")
    if workers < 1:
        raise ValueError(f"--workers={workers}; allowed: >= 1")
    if workers > 1 and is_single_process(storage_spec):
        raise ValueError(f"--workers {workers} with SQLite: SQLite is for one process; "
                         f"use --storage journal (one machine) or a server URL (several machines)")
    study_name = study_name or run_dir.name
    state_path = run_dir / "search_state.json"
    resumed = state_path.exists()
    if state_path.exists():
        state = read_json(state_path)
        if without_password(state["storage"]) != public or state["study_name"] != study_name:
            raise ValueError(f"{str(run_dir)!r} holds study {state['study_name']!r} in storage "
                             f"{storage_url_for_display(state['storage'], run_dir)}; pass the same --storage/--study-name, "
                             f"or another --out")
    file_storage = storage_spec is None or "://" not in storage_spec or storage_spec.startswith("sqlite:")
    if not file_storage:  # a database server: connect before anything is written, so a failure leaves no folder
        open_study(cfg, run_dir, storage_spec, study_name, create=True)
    private = has_credentials(storage_spec)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    if private:
        run_dir.chmod(0o700)  # the folder names a database user: owner-only
    atomic_write_text(run_dir / "search.yaml", cfg.dump())
    atomic_write_json(state_path, {"storage": public, "study_name": study_name})
    if file_storage:
        open_study(cfg, run_dir, storage_spec, study_name, create=True)
    (log or (lambda s: print(s, file=sys.stderr, flush=True)))(
        f"{'resuming' if resumed else 'new'} search folder: {run_dir} (storage {storage_url_for_display(storage_spec, run_dir)})")
    if workers == 1:
        run_worker(run_dir, storage_spec, study_name, n_trials, wandb_mode, 0, log, cache)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        start = ctx.Barrier(workers)
        procs = [ctx.Process(target=_worker_entry, args=(str(run_dir), storage_spec, study_name, n_trials, wandb_mode, i,
                                                                  cfg.run.threads, start))
                 for i in range(workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                if p.is_alive():
                    p.terminate()  # SIGTERM: the worker fails and re-enqueues its running trial
            for p in procs:
                p.join()
            raise
        bad = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"search worker(s) {bad} exited with codes {[procs[i].exitcode for i in bad]}")
    study = open_study(cfg, run_dir, storage_spec, study_name)
    summary = summarize(study, cfg, n_trials)
    summary["storage"] = storage_url_for_display(storage_spec, run_dir)
    write_outputs(run_dir, summary)
    return summary


def trial_row(t) -> dict[str, Any]:
    ua = t.user_attrs
    w = t.system_attrs.get(WORKER_ATTR) or {}
    return {"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
            "depth": t.params.get("depth"), "entropies": ua.get("entropies"), "dims": ua.get("dims"),
            "gains": ua.get("gains"), "scored_gains": ua.get("scored_gains"),
            "useful_depth": ua.get("useful_depth"), "useful_entropy": ua.get("useful_entropy"),
            "seconds": ua.get("seconds"), "retry_of": ua.get("retry_of"), "worker_pid": w.get("pid"),
            "failed": t.system_attrs.get("structlearn_failed") or ua.get("error")}


def summarize(study, cfg: SearchConfig, n_trials: int) -> dict[str, Any]:
    """search.json content: chosen depth, the best trial's per-layer gains, all trials."""

    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    scored = [r for r in rows if r["state"] in FINISHED and r["useful_entropy"] is not None]
    best = max(scored, key=lambda r: (r["useful_entropy"], -r["number"])) if scored else None
    max_l = max([len(r["scored_gains"] or []) for r in scored] + [0])
    by_layer = []
    for li in range(max_l):
        v = np.array([r["scored_gains"][li] for r in scored if r["scored_gains"] and len(r["scored_gains"]) > li])
        by_layer.append({"layer": li + 1, "n": int(v.size), "median": float(np.median(v)),
                         "q25": float(np.quantile(v, 0.25)), "q75": float(np.quantile(v, 0.75))})
    s = cfg.search
    return {
        "study_name": study.study_name, "seed": cfg.run.seed, "n_trials_target": n_trials,
        "n_finished": len(scored), "states": {k: sum(r["state"] == k for r in rows)
                                              for k in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")},
        "measure": s.measure, "eps2": s.eps2, "threshold": s.threshold, "relative": s.relative, "pruner": s.pruner,
        "gain_unit": "share of H_0" if s.relative else ("nats" if s.measure == "coding_rate" else "nats per unit"),
        "chosen_depth": None if best is None else best["useful_depth"],
        "best_trial": best, "gain_by_layer": by_layer, "trials": rows, "config": cfg.to_dict(),
    }


def _measure_text(summary: dict[str, Any], d0: int) -> str:
    m = summary["measure"]
    if m == "coding_rate":
        return f"coding_rate (eps^2 = {summary['eps2']}, standardised unit-norm codes, d_ref = {d0})"
    if m == "total_correlation":
        return "total_correlation (entropy per unit of the per-unit Gaussianised codes, 1/2 log(2 pi e) - TC / units)"
    return f"{m} (per live dimension of the standardised codes)"


def write_outputs(run_dir: Path, summary: dict[str, Any]) -> None:
    from structlearn.depth.gain import EntropyProfile
    from structlearn.depth.plots import plot_gain_vs_depth, plot_trials

    atomic_write_json(run_dir / "search.json", summary)
    best = summary["best_trial"]
    if best is not None and best["entropies"]:
        prof = EntropyProfile(tuple(best["entropies"]), tuple(best["dims"]), summary["measure"], summary["eps2"],
                              best["dims"][0])
        text = (f"# Entropy per layer, best trial {best['number']} ({best['state'].lower()})\n\n"
                f"Measure: {_measure_text(summary, best['dims'][0])}; threshold {summary['threshold']} ({summary['gain_unit']}); "
                f"chosen depth: **{summary['chosen_depth']}**.\n\n" + prof.table())
        atomic_write_text(run_dir / "gain.md", text)
    plot_gain_vs_depth(summary, run_dir / "gain_vs_depth.png")
    plot_trials(summary, run_dir / "trials.png")
    from structlearn.runs.html import write_report

    write_report(run_dir)
