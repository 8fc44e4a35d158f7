"""Entropy per layer and entropy gain per layer of fixed layer-wise stacks (the curves behind
the default gain threshold of `structlearn search`).

For each data kind (mosaics of independent tiles, plain natural patches), each width and each
seed, a stack of ``--depth`` sparse-coding layers is trained with the trainer and the coding
rate of every layer's standardised, unit-norm held-out codes is measured
(structlearn.depth.gain, d_ref = input dimension, eps^2 = 0.5). The seed-to-seed spread of H_0
and of the gains is the estimator noise a threshold must clear.

    .venv/bin/python experiments/entropy_per_layer.py --out runs/entropy_per_layer

Writes entropy_per_layer.json, entropy_per_layer.md (tables) and entropy_per_layer.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def stack_config(kind: str, width: int, depth: int, lam: float, steps: int, seed: int, n_train: int, n_test: int):
    from structlearn.depth.space import search_config_from_dict

    layer = {"n_units": width, "objective": "sparse_coding", "params": {"lam": lam, "n_iter": 30, "eval_iter": 100},
             "steps": steps, "batch_size": 128,
             "prune": {"threshold": 0.1, "finetune_steps": steps // 4, "finetune_params": {"lam": 0.3 * lam}}}
    data = {"kind": kind, "grid": [3, 3], "tile": [4, 4], "patch": [12, 12], "n_train": n_train, "n_test": n_test,
            "zca_floor": 0.1}
    return search_config_from_dict({"name": "stack", "seed": seed, "threads": 1, "wandb": "disabled", "data": data,
                                    "layers": [layer] * depth, "eval_every": 10**6, "checkpoint_every": 10**6}).run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/entropy_per_layer")
    p.add_argument("--kinds", nargs="+", default=["mosaic", "patches"])
    p.add_argument("--widths", nargs="+", type=int, default=[144, 288, 432])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--threshold", type=float, default=0.05, help="drawn on the gain plot (search default)")
    p.add_argument("--replot", action="store_true", help="redraw the PNG from --out/entropy_per_layer.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from structlearn.callbacks import OnCodes
    from structlearn.depth.gain import EntropyProfile, LayerEntropyRecorder
    from structlearn.depth.plots import plot_profiles
    from structlearn.io import atomic_write_json, atomic_write_text
    from structlearn.train import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        runs = json.loads((out / "entropy_per_layer.json").read_text())["runs"]
        keys = list(dict.fromkeys((r["kind"], r["width"]) for r in runs))
        profs = []
        for kind, width in keys:
            sel = [r for r in runs if (r["kind"], r["width"]) == (kind, width)]
            profs.append(EntropyProfile(tuple(np.mean([r["entropies"] for r in sel], 0).tolist()), tuple(sel[0]["dims"]),
                                        sel[0]["measure"], sel[0]["eps2"], sel[0]["d_ref"]))
        plot_profiles(profs, [f"{k}, width {w}" for k, w in keys], out / "entropy_per_layer.png", threshold=args.threshold)
        return 0
    results, profiles, labels, md = [], [], [], []
    from structlearn.runtime import progress

    for kind in args.kinds:
        for width in args.widths:
            per_seed = []
            for seed in progress(args.seeds, desc=f"{kind} width {width}", unit="seed"):
                t0 = time.time()
                cfg = stack_config(kind, width, args.depth, args.lam, args.steps, seed, args.n_train, args.n_test)
                data = Trainer(cfg).prepare()
                rec = LayerEntropyRecorder(data.test)
                Trainer(cfg, callbacks=[OnCodes(rec)], data=data).run()
                prof = rec.profile()
                per_seed.append(prof)
                results.append({"kind": kind, "width": width, "seed": seed, "seconds": time.time() - t0, **prof.to_dict()})
                print(f"{kind} width {width} seed {seed}: H = {[round(h, 2) for h in prof.entropies]}, "
                      f"gain/H0 = {[round(g, 4) for g in prof.relative_gains]} ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
            mean = EntropyProfile(tuple(np.mean([q.entropies for q in per_seed], 0).tolist()), per_seed[0].dims,
                                  per_seed[0].measure, per_seed[0].eps2, per_seed[0].d_ref)
            profiles.append(mean)
            labels.append(f"{kind}, width {width}")
            md.append(f"### {kind}, width {width} (mean over seeds {args.seeds})\n\n{mean.table()}")
    h0 = np.array([r["entropies"][0] for r in results])
    rel = np.array([r["relative_gains"] for r in results])  # (runs, depth)
    by_seed = {}
    for r in results:
        by_seed.setdefault((r["kind"], r["width"]), []).append(r["relative_gains"])
    spread = float(np.max([np.ptp(np.array(v), 0).max() for v in by_seed.values()])) if len(args.seeds) > 1 else None
    summary = {"runs": results, "args": vars(args), "seed_spread_max_relative_gain": spread,
               "H0_by_kind": {k: [float(x) for x in h0[[r["kind"] == k for r in results]]] for k in args.kinds},
               "layer1_relative_gain_range": [float(rel[:, 0].min()), float(rel[:, 0].max())],
               "deeper_relative_gain_range": [float(rel[:, 1:].min()), float(rel[:, 1:].max())] if rel.shape[1] > 1 else None}
    atomic_write_json(out / "entropy_per_layer.json", summary)
    atomic_write_text(out / "entropy_per_layer.md", "\n".join(md))
    plot_profiles(profiles, labels, out / "entropy_per_layer.png", threshold=args.threshold)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
