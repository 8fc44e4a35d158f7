"""Does discovery help a NAS search? The same Optuna search, seeded and unseeded (issue 13).

The search space is the NAS plugin's generic CNN space (``structlearn_nas.CNN_SPACE``: one conv
layer's channels, kernel and stride, the activation, optional 2 x 2 energy pooling, then a linear
head): what a user searches when nothing was discovered. The seeded search enqueues the
discovered first layer of ``--run`` as its first trial (``structlearn_nas.cnn_params_from_discovery``:
kernel = the discovered kernels' size, stride and channels from where and how many units the
layer has); the unseeded one does not. Both use the same TPE sampler and seed per repeat and the
same trial budget; a trial trains its CNN (:func:`structlearn.supervised.fit`, the training seed
fixed per repeat, so an architecture scores the same in both arms) on the bundled-image identity
task at the run's input shape, whitened with the run's ZCA, and scores the accuracy on the
validation patches (cut from the bottom quarter of each photograph, disjoint from the training
rows). A colour run (``data.color``) searches RGB CNNs on RGB patches of the four colour
photographs. Repeated ``--repeats`` times with different seeds.

Reported: best validation accuracy against trial number (median and interquartile band over the
repeats), and per repeat the trials each search needs to reach the unseeded search's final best.
Studies persist in ``OUT/nas.db`` (SQLite, or ``--storage URL``): an interrupted run resumes
where it stopped. With ``--wandb offline|online`` each study is a W&B run (grouped by the
experiment, job type = arm) under ``OUT/wandb``.

    python experiments/nas_seeded.py --run runs/<the demo's run>            # 12.4 min (1 thread)
    python experiments/nas_seeded.py --run RUN --quick                       # 18 s

Writes ``nas_seeded.json``, ``nas_seeded.md`` and ``nas_curves.png`` under ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ARMS = ("unseeded", "seeded")


def trials_to_reach(curve: list[float], target: float) -> int | None:
    """1-based index of the first trial whose best-so-far reaches ``target`` (None: never)."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), None)


def best_so_far(values: list[float]) -> list[float]:
    return [float(v) for v in np.maximum.accumulate(np.asarray(values, dtype=float))]


def main(argv: list[str] | None = None) -> int:
    import optuna

    import structlearn_nas
    from structlearn.data.labeled import bundled_identity
    from structlearn.export.model import DiscoveredNet
    from structlearn.io import atomic_write_json, atomic_write_text
    from structlearn.runs import Run
    from structlearn.runs.export import spec_from_run
    from structlearn.supervised import fit, prepare_task

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a finished discovery run folder")
    p.add_argument("--out", help="output folder (default: RUN/nas_seeded)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--trials", type=int, default=20, help="trial budget of every search")
    p.add_argument("--startup", type=int, default=5, help="TPE's random start-up trials")
    p.add_argument("--epochs", type=int, default=6, help="training epochs per trial")
    p.add_argument("--per-class", type=int, default=200, help="training patches per photograph (validation: a third)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/nas.db)")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"], default="disabled")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="2 repeats of 6 trials, 2 epochs, 60 patches per class")
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.trials, a.startup, a.epochs, a.per_class = min(a.repeats, 2), min(a.trials, 6), 3, 2, 60
    for key in ("repeats", "trials", "epochs", "per_class"):
        if getattr(a, key) < 1:
            p.error(f"--{key.replace('_', '-')} {getattr(a, key)}; allowed: integers >= 1")
    torch.set_num_threads(a.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = Run(a.run)
    out = Path(a.out) if a.out else run.file("nas_seeded")
    out.mkdir(parents=True, exist_ok=True)
    storage = a.storage or f"sqlite:///{out / 'nas.db'}"
    t0 = time.time()
    spec, kernels = spec_from_run(run)
    colour = spec["input"]["channels"] == 3
    hw = tuple(spec["input"]["shape"])
    shape = (3, *hw) if colour else hw  # a colour run's task: RGB patches of the colour photographs
    seed_point = structlearn_nas.cnn_params_from_discovery(spec, kernels)
    split = bundled_identity(patch=hw, n_train_per_class=a.per_class, n_test_per_class=max(1, a.per_class // 3),
                             generator=torch.Generator().manual_seed(0), color=colour)
    task = prepare_task(split, "bundled", shape, run.data.whitener)
    print(f"{run.name}: discovered first layer as a CNN point {seed_point}; task {task.x_train.shape[0]} train / "
          f"{task.x_test.shape[0]} validation patches, {task.classes} classes", file=sys.stderr)
    cache: dict[tuple, float] = {}  # (repeat, architecture) -> validation accuracy: the same in both arms

    def score(params: dict[str, Any], repeat: int) -> float:
        key = (repeat, *sorted(params.items()))
        if key not in cache:
            s = structlearn_nas.cnn_spec(params, shape)
            cache[key] = fit(lambda: DiscoveredNet(s, None, num_classes=task.classes), task, epochs=a.epochs,
                             seed=repeat).test_acc
        return cache[key]

    group = f"nas_seeded-{out.name}"
    curves: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    studies = []
    for repeat in range(a.repeats):
        for arm in ARMS:
            name = f"{arm}-r{repeat}"
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                        sampler=optuna.samplers.TPESampler(seed=repeat, n_startup_trials=a.startup))
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if arm == "seeded" and not study.trials:
                study.enqueue_trial(seed_point, user_attrs={"seeded_from": run.name})

            def objective(trial: Any, repeat: int = repeat) -> float:
                params = {k: trial.suggest_categorical(k, v) for k, v in structlearn_nas.CNN_SPACE.items()}
                return score(params, repeat)

            if len(done) < a.trials:  # resume: only the trials still missing
                study.optimize(objective, n_trials=a.trials - len(done))
            done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number)
            curve = best_so_far([float(t.value) for t in done[:a.trials]])
            curves[arm].append(curve)
            studies.append({"name": name, "arm": arm, "repeat": repeat, "values": [t.value for t in done[:a.trials]],
                            "params": [t.params for t in done[:a.trials]], "best": curve[-1]})
            log_wandb(a.wandb, out, group, name, arm, studies[-1], curve)
            print(f"repeat {repeat} {arm:8s}: best {curve[-1]:.3f} (trial 1: {curve[0]:.3f})  ({time.time() - t0:.0f} s)",
                  file=sys.stderr)
    result = summarize(curves, a.trials)
    result.update({"run": str(run.path), "seed_point": seed_point, "space": structlearn_nas.CNN_SPACE, "config": vars(a),
                   "task": {"train": int(task.x_train.shape[0]), "validation": int(task.x_test.shape[0]),
                            "classes": task.classes},
                   "studies": studies, "storage": storage, "seconds": time.time() - t0})
    atomic_write_json(out / "nas_seeded.json", result)
    atomic_write_text(out / "nas_seeded.md", report(result))
    plot_curves(curves, out / "nas_curves.png")
    print(report(result))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def summarize(curves: dict[str, list[list[float]]], trials: int) -> dict[str, Any]:
    """Median and interquartile band of best-so-far per trial, and trials to reach the unseeded final best."""
    out: dict[str, Any] = {"curves": {}, "reach": []}
    for arm, cs in curves.items():
        c = np.asarray(cs)
        out["curves"][arm] = {"median": np.median(c, 0).tolist(), "q25": np.quantile(c, 0.25, 0).tolist(),
                              "q75": np.quantile(c, 0.75, 0).tolist()}
    for r, (u, s) in enumerate(zip(curves["unseeded"], curves["seeded"])):
        target = u[-1]
        out["reach"].append({"repeat": r, "target": target, "unseeded": trials_to_reach(u, target),
                             "seeded": trials_to_reach(s, target), "seeded_first_trial": s[0]})
    need = {arm: [x[arm] if x[arm] is not None else trials + 1 for x in out["reach"]] for arm in ARMS}
    out["median_trials_to_reach"] = {arm: float(np.median(v)) for arm, v in need.items()}
    out["seeded_at_most_half"] = [x["seeded"] is not None and 2 * x["seeded"] <= x["unseeded"] for x in out["reach"]]
    return out


def report(res: dict[str, Any]) -> str:
    lines = [f"seed point (the discovered layer in the CNN space): {res['seed_point']}", "",
             "| repeat | unseeded final best | trials to reach it: unseeded | seeded | seeded trial 1 |", "|---|---|---|---|---|"]
    for x in res["reach"]:
        s = x["seeded"] if x["seeded"] is not None else f"> {res['config']['trials']}"
        lines.append(f"| {x['repeat']} | {x['target']:.3f} | {x['unseeded']} | {s} | {x['seeded_first_trial']:.3f} |")
    m = res["median_trials_to_reach"]
    lines += ["", f"median trials to reach: unseeded {m['unseeded']:g}, seeded {m['seeded']:g} "
              f"(a seeded miss counts as budget + 1); seeded in at most half the trials in "
              f"{sum(res['seeded_at_most_half'])} of {len(res['reach'])} repeats"]
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, list[list[float]]], path: Path) -> None:
    from structlearn.depth.plots import _figure, _save

    plt, fig, (ax,) = _figure(1, 6.0)
    for arm, colour in zip(ARMS, ("tab:gray", "tab:blue")):
        c = np.asarray(curves[arm])
        x = np.arange(1, c.shape[1] + 1)
        ax.plot(x, np.median(c, 0), color=colour, lw=2, label=f"{arm} (median of {c.shape[0]})")
        ax.fill_between(x, np.quantile(c, 0.25, 0), np.quantile(c, 0.75, 0), color=colour, alpha=0.25, lw=0)
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("NAS over a generic CNN space: seeded with the discovered layer or not", fontsize=10)
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def log_wandb(mode: str, out: Path, group: str, name: str, arm: str, study: dict[str, Any], curve: list[float]) -> None:
    """One W&B run per study: per trial its accuracy and the best so far; one line if W&B fails."""
    if mode == "disabled":
        return
    from structlearn.loggers import WandbLogger, artifact_name, one_line

    try:
        wb = WandbLogger(out, mode, name, {"arm": arm, "repeat": study["repeat"]}, f"{artifact_name(group)[:40]}-{name}",
                         {"group": group, "job_type": arm, "tags": ["nas_seeded"]})
        try:
            for i, (v, b, params) in enumerate(zip(study["values"], curve, study["params"])):
                wb.log_metrics(i + 1, {"trial/val_acc": v, "trial/best_so_far": b,
                                       **{f"trial/{k}": float(x) for k, x in params.items() if not isinstance(x, str)}})
            wb.log_summary({"best": curve[-1], "trials": len(curve)})
        finally:
            wb.finish()
    except Exception as e:
        print(f"W&B logging of {name} failed ({one_line(e)}); the study is in the Optuna storage", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
