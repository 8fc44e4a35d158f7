"""Train the discovered network on labelled tasks, against the nets it should beat (issue 13).

The first layer of a finished discovery run (``--run``, e.g. the folder ``make demo`` writes)
is exported as ``structlearn export`` does and trained, with a ReLU and a linear head, on
labelled tasks that ship with the stack. It is compared with the same net with the discovered
mask but fresh weights, the dense layer it came from, a dense layer pruned at random to the
same fan-in per unit, and a hand-designed CNN (5 x 5 conv, ReLU, 2 x 2 pooling) with the same
parameter count (:mod:`structlearn.supervised.nets`). Every task is resized to the run's input
shape and whitened with the run's own ZCA (what the first layer was learned on).

Tasks: ``bundled`` (which bundled photograph a patch comes from; train patches from the top 3/4
of each image, test from the bottom 1/4), ``digits`` (scikit-learn, 8 x 8 upsampled), ``lfw``
(scikit-image's faces vs non-faces, 25 x 25), and ``cifar`` with ``--cifar FOLDER`` (python
batches, grayscale; in colour for a colour run, whose tasks are ``bundled`` (the four RGB
photographs) and ``cifar``). Each variant is trained from ``--seeds`` seeds (weights, batch
order and the random mask); the table gives the mean test accuracy with its 95% t-interval and the effective
parameter count. The information plane (:mod:`structlearn.info.plane`, pairwise-distance
estimator, noise 0.1 of the layer's variance) is recorded every epoch for seed 0 of the
discovered and the dense net on ``--plane-task``.

    python experiments/downstream.py --run runs/<the demo's run>          # 27.5 min (1 thread)
    python experiments/downstream.py --run RUN --quick                     # a smoke run, about 1 min

Writes ``downstream.json``, ``downstream.md`` (the table) and ``info_plane.png`` under ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

TASKS = ("bundled", "digits", "lfw", "cifar")
COLOUR_TASKS = ("bundled", "cifar")  # the tasks with RGB images, for a colour run


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for a single value)."""
    from scipy.stats import t

    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))


def load_task(name: str, shape: tuple[int, ...], whitener, cifar: str | None, quick: bool):
    """Task ``name`` at the run's input ``shape``: ``(H, W)``, or ``(3, H, W)`` for a colour run
    (then RGB: the bundled colour photographs, CIFAR-10 in colour; ``main`` refuses the grayscale
    digits and lfw for it, and ``prepare_task`` any grayscale images)."""
    from structlearn.data.labeled import bundled_identity, load_cifar10, load_digits, load_lfw_faces
    from structlearn.supervised import prepare_task

    colour = len(shape) == 3
    g = torch.Generator().manual_seed(0)  # the split is fixed; the seeds vary the training
    if name == "bundled":
        split = bundled_identity(patch=shape[-2:], n_train_per_class=60 if quick else 300,
                                 n_test_per_class=20 if quick else 100, generator=g, color=colour)
    elif name == "digits":
        split = load_digits(generator=g)
    elif name == "lfw":
        split = load_lfw_faces(generator=g)
    else:
        if cifar is None:
            raise ValueError("task 'cifar' needs --cifar FOLDER (the CIFAR-10 python batches)")
        split = load_cifar10(cifar, gray=not colour)
    return prepare_task(split, name, shape, whitener)


def main(argv: list[str] | None = None) -> int:
    from structlearn.export.model import DiscoveredNet
    from structlearn.io import atomic_write_json, atomic_write_text
    from structlearn.runs import Run
    from structlearn.runs.export import spec_from_run
    from structlearn.supervised import VARIANTS, FirstLayer, effective_params, fit, variant_spec

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a finished discovery run folder")
    p.add_argument("--out", help="output folder (default: RUN/downstream)")
    p.add_argument("--tasks", help=f"comma-separated, from {', '.join(TASKS)} (default: bundled,digits,lfw; "
                                   f"a colour run: bundled)")
    p.add_argument("--cifar", help="folder of the CIFAR-10 python batches (task 'cifar')")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--plane-task", default="bundled", help="the task whose information plane is recorded")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs, small bundled task: a smoke run")
    a = p.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()] if a.tasks is not None else None
    if tasks is not None and (not tasks or set(tasks) - set(TASKS)):
        p.error(f"--tasks {a.tasks!r}; allowed: a comma-separated list from {', '.join(TASKS)}")
    if a.seeds < 1 or a.epochs < 1:
        p.error(f"--seeds {a.seeds}, --epochs {a.epochs}; allowed: integers >= 1")
    if a.quick:
        a.seeds, a.epochs = min(a.seeds, 2), min(a.epochs, 3)
    torch.set_num_threads(a.threads)
    run = Run(a.run)
    out = Path(a.out) if a.out else run.file("downstream")
    t0 = time.time()
    spec, kernels = spec_from_run(run)
    layer = FirstLayer(spec, kernels, run.layer(0)["mask"])
    colour = len(layer.input_shape) == 3
    if tasks is None:
        tasks = ["bundled"] if colour else ["bundled", "digits", "lfw"]
    elif colour and set(tasks) - set(COLOUR_TASKS):
        p.error(f"--tasks {a.tasks!r}: the run is colour {layer.input_shape}; allowed: a comma-separated list from "
                f"{', '.join(COLOUR_TASKS)} (digits and lfw are grayscale)")
    whitener = run.data.whitener
    print(f"{run.name}: first layer {spec['stages'][0]['type']} of {layer.n_units} units on {layer.input_shape} inputs, "
          f"density {float((layer.mask != 0).float().mean()):.4f}", file=sys.stderr)
    results: dict[str, Any] = {"run": str(run.path), "config": vars(a), "variants": list(VARIANTS), "tasks": {}}
    for task_name in tasks:
        task = load_task(task_name, layer.input_shape, whitener, a.cifar, a.quick)
        base_spec, base_k = variant_spec("discovered", layer, task.classes, torch.Generator().manual_seed(0))
        target = effective_params(DiscoveredNet(base_spec, base_k, num_classes=task.classes))
        rows: dict[str, Any] = {}
        for variant in VARIANTS:
            accs, params, planes = [], [], {}
            for seed in range(a.seeds):
                vs, vk = variant_spec(variant, layer, task.classes, torch.Generator().manual_seed(seed),
                                      target_params=target)
                plane = 1 if (task_name == a.plane_task and seed == 0 and variant in ("discovered", "dense")) else 0
                r = fit(lambda: DiscoveredNet(vs, vk, num_classes=task.classes), task, epochs=a.epochs, lr=a.lr,
                        batch_size=a.batch_size, seed=seed, plane_every=plane)
                accs.append(r.test_acc)
                params.append(r.params)
                if plane:
                    planes = {"plane": r.plane}
            mean, half = ci95(accs)
            rows[variant] = {"test_acc": accs, "mean": mean, "ci95": half, "params": int(np.median(params)), **planes}
            print(f"{task_name:8s} {variant:16s} acc {mean:.3f} +- {half:.3f}  params {rows[variant]['params']}"
                  f"  ({time.time() - t0:.0f} s)", file=sys.stderr)
        results["tasks"][task_name] = {"n_train": int(task.x_train.shape[0]), "n_test": int(task.x_test.shape[0]),
                                       "classes": task.classes, "rows": rows}
    results["seconds"] = time.time() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "downstream.json", results)
    atomic_write_text(out / "downstream.md", table(results))
    if a.plane_task in results["tasks"]:
        plot_plane(results["tasks"][a.plane_task]["rows"], out / "info_plane.png", a.plane_task)
    print(table(results))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def table(results: dict[str, Any]) -> str:
    lines = ["| task (train/test) | " + " | ".join(results["variants"]) + " |",
             "|---|" + "---|" * len(results["variants"])]
    for name, t in results["tasks"].items():
        cells = [f"{t['rows'][v]['mean']:.3f} +- {t['rows'][v]['ci95']:.3f} ({t['rows'][v]['params']:,} p)"
                 for v in results["variants"]]
        lines.append(f"| {name} ({t['n_train']}/{t['n_test']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_plane(rows: dict[str, Any], path: Path, task: str) -> None:
    """I(X;T) against I(T;Y), one panel per net, one line per layer, colour = epoch."""
    from structlearn.depth.plots import _figure, _save

    nets = [v for v in ("discovered", "dense") if "plane" in rows.get(v, {})]
    plt, fig, axes = _figure(len(nets), 5.2)
    for ax, net in zip(axes, nets):
        pts = rows[net]["plane"]
        last = max(p["epoch"] for p in pts)
        for layer, marker in (("hidden", "o"), ("output", "s")):
            q = [p for p in pts if p["layer"] == layer]
            x, y = [p["I_XT"] for p in q], [p["I_TY"] for p in q]
            ax.plot(x, y, "-", color="0.7", lw=0.8, zorder=1)
            sc = ax.scatter(x, y, c=[p["epoch"] for p in q], cmap="viridis", vmin=0, vmax=last, marker=marker,
                            s=22, label=layer, zorder=2)
        ax.set_xlabel("I(X;T) [nats]")
        ax.set_ylabel("I(T;Y) [nats]")
        ax.set_title(f"{net} net, {task} task")
        ax.legend(loc="lower right", fontsize=8)
        fig.colorbar(sc, ax=ax, label="epoch")
    every = [p for net in nets for p in rows[net]["plane"]]
    for ax in axes:  # one scale for both nets
        for key, setlim in (("I_XT", ax.set_xlim), ("I_TY", ax.set_ylim)):
            lo, hi = min(p[key] for p in every), max(p[key] for p in every)
            setlim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    fig.suptitle("information plane: pairwise-distance (KDE) bounds, noise = 0.1 of each layer's variance", fontsize=9)
    _save(plt, fig, path)


if __name__ == "__main__":
    sys.exit(main())
