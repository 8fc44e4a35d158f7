"""Does the entropy-gain search recover a planted depth? (Karklin-Lewicki data, L = 1, 2, 3.)

Three steps, all on ``search_planted`` (:mod:`structlearn.data.hierarchical`, ICA layers on
log-magnitudes, the total-correlation measure):

1. **In principle**: the total correlation per unit of the true levels (``x``, ``s``, ``v``,
   ``y``) on held-out samples: what a perfect stack could remove at each layer.
2. **Noise and threshold**: on calibration seeds (not the evaluation seeds), a full 4-layer
   stack per depth; the gains of the layers past the planted depth are noise. The threshold
   is their mean + 3 standard deviations (written into the table; pass ``--threshold`` to
   use another).
3. **Search**: ``structlearn search`` (Optuna, stall pruner) per depth and evaluation seed;
   the chosen depth and the best trial's gain per layer.

    python experiments/planted_depth.py --out runs/planted_depth               # ~20 min, 1 core
    python experiments/planted_depth.py --depths 2 --seeds 0 --calibration-seeds 100 --quick

Writes ``planted_depth.json``, ``planted_depth.md`` and ``planted_depth.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch


def oracle(cfg, depth: int, seed: int) -> list[float]:
    """TC per unit of x and of each true level (held-out part), nats."""
    from structlearn.data.hierarchical import hierarchical
    from structlearn.info.total_correlation import total_correlation
    from structlearn.runtime import derive_seed

    d = cfg.run.data
    g = torch.Generator().manual_seed(derive_seed(seed, "data"))
    x, levels = hierarchical(d.n_train + d.n_test, depth, tuple(d.dims), tuple(d.modulation), g)
    out = []
    for z in [x] + levels:
        tc = total_correlation(z[d.n_train:])
        out.append(tc.total / tc.units)
    return out


def stack_gains(cfg, depth: int, seed: int) -> list[float]:
    """Gains of a full ``max_depth`` stack (no stall), nats per unit."""
    from structlearn.callbacks import OnCodes
    from structlearn.depth.gain import LayerEntropyRecorder
    from structlearn.depth.space import trial_config
    from structlearn.train import Trainer

    s = cfg.search
    params = {"depth": s.max_depth, **{f"width_{i + 1}": w[0] for i, w in enumerate(s.layer_widths_lists())}}
    run = trial_config(cfg, params)
    run = replace(run, seed=seed, data=replace(run.data, depth=depth))
    tr = Trainer(run)
    rec = LayerEntropyRecorder(tr.prepare().test, s.measure)
    tr.callbacks.append(OnCodes(rec))
    tr.run()
    return list(rec.profile().gains)


def main(argv: list[str] | None = None) -> int:
    from structlearn.configs import config_path
    from structlearn.depth.plots import _figure, _save
    from structlearn.depth.space import load_search_config
    from structlearn.depth.study import run_search
    from structlearn.io import atomic_write_json, atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/planted_depth")
    p.add_argument("--config", default="search_planted")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--calibration-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    p.add_argument("--threshold", type=float, help="skip nothing, but search with this threshold instead of the calibrated one")
    p.add_argument("--n-trials", type=int, help="trials per search (default: the config's)")
    p.add_argument("--quick", action="store_true", help="small data (n_train 4000, n_test 4000, 40 steps): a smoke run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(a.overrides)
    if a.quick:
        overrides += ["data.n_train=4000", "data.n_test=4000", "layers.0.steps=40", "layers.0.batch_size=4000"]
    cfg = load_search_config(config_path(a.config), overrides)
    t0 = time.time()

    principle = {L: oracle(cfg, L, a.calibration_seeds[0]) for L in a.depths}
    calib = {L: [stack_gains(cfg, L, s) for s in a.calibration_seeds] for L in a.depths}
    noise = [g for L in a.depths for gains in calib[L] for g in gains[L:]]
    signal = [g for L in a.depths for gains in calib[L] for g in gains[:L]]
    mu = sum(noise) / len(noise)
    sd = math.sqrt(sum((g - mu) ** 2 for g in noise) / max(len(noise) - 1, 1))
    calibrated = mu + 3 * sd
    threshold = calibrated if a.threshold is None else a.threshold
    print(f"noise gains past the planted depth: n={len(noise)}, mean {mu:+.4f}, sd {sd:.4f}, max |g| "
          f"{max(abs(g) for g in noise):.4f}; smallest planted-layer gain {min(signal):.4f}; threshold {threshold:.4f}",
          file=sys.stderr)

    searches = {}
    from structlearn.runtime import progress

    for L, s in progress([(L, s) for L in a.depths for s in a.seeds], desc="planted-depth searches", unit="search"):
        run_cfg = replace(cfg, run=replace(cfg.run, seed=s, data=replace(cfg.run.data, depth=L)),
                          search=replace(cfg.search, threshold=float(threshold)))
        summary = run_search(run_cfg, out / f"search-L{L}-seed{s}", n_trials=a.n_trials, log=lambda m: None)
        best = summary["best_trial"]
        searches[f"{L}/{s}"] = {"depth": L, "seed": s, "chosen": summary["chosen_depth"],
                                "gains": best["gains"] if best else None}
        print(f"L={L} seed={s}: chosen depth {summary['chosen_depth']}, gains "
              f"{[round(g, 4) for g in (best['gains'] if best else [])]}", file=sys.stderr)

    rows = ["| planted L | TC/unit of x | of s | of v | of y |", "|---:|---:|---:|---:|---:|"]
    for L in a.depths:
        rows.append(f"| {L} | " + " | ".join(f"{v:.4f}" for v in principle[L]) + " |" + " |" * (3 - L))
    rows += ["", f"Threshold: {threshold:.4f} nats/unit (noise past the planted depth on calibration seeds "
             f"{a.calibration_seeds}: mean {mu:+.4f}, sd {sd:.4f}, n = {len(noise)}; mean + 3 sd = {calibrated:.4f}; "
             f"smallest planted-layer gain {min(signal):.4f}).", "",
             "| planted L | seed | chosen depth | gain 1 | gain 2 | gain 3 | gain 4 |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in searches.values():
        g = list(r["gains"] or []) + [math.nan] * 4
        rows.append(f"| {r['depth']} | {r['seed']} | **{r['chosen']}** | " + " | ".join(
            "" if math.isnan(v) else f"{v:+.4f}" for v in g[:4]) + " |")
    hits = {L: sum(r["chosen"] == L for r in searches.values() if r["depth"] == L) for L in a.depths}
    rows += ["", "Recovered: " + ", ".join(f"L={L}: {hits[L]}/{len(a.seeds)}" for L in a.depths) +
             f" ({time.time() - t0:.0f} s)."]
    atomic_write_text(out / "planted_depth.md", "\n".join(rows) + "\n")
    atomic_write_json(out / "planted_depth.json", {
        "config": cfg.to_dict(), "principle_tc_per_unit": principle, "calibration_gains": calib,
        "noise": {"mean": mu, "sd": sd, "n": len(noise)}, "threshold": threshold, "calibrated_threshold": calibrated,
        "searches": searches, "recovered": hits, "seconds": time.time() - t0})

    plt, fig, axes = _figure(len(a.depths), 4.2)
    for ax, L in zip(axes, a.depths):
        for gains in calib[L]:
            ax.plot(range(1, len(gains) + 1), gains, color="0.7", lw=1, marker=".")
        for r in searches.values():
            if r["depth"] == L and r["gains"]:
                ax.plot(range(1, len(r["gains"]) + 1), r["gains"], color="tab:blue", lw=1.5, marker="o")
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.3f}")
        ax.axvline(L + 0.5, color="k", ls=":", lw=1, label=f"planted depth {L}")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xticks(range(1, cfg.search.max_depth + 1))
        ax.set_xlabel("layer")
        ax.set_ylabel("gain (nats per unit, symlog)")
        ax.set_title(f"planted L = {L}: {hits[L]}/{len(a.seeds)} recovered")
        ax.legend(fontsize=7)
    _save(plt, fig, out / "planted_depth.png")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
