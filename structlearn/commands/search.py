"""``structlearn search``: choose the depth (and per-layer width and sparsity) with Optuna.

The run folder is ``<out>/search-<name>-<fingerprint>``, the fingerprint hashing the
resolved config (everything but ``search.n_trials``), so running the same command again
resumes the same study: finished trials are kept, trials a killed run left RUNNING are
failed and re-run with their own parameters, and only the missing trials are run.
``--resume RUN_DIR`` does the same from the folder's own ``search.yaml``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "choose the depth of a layer-wise stack by the entropy gain per layer (Optuna study)"
DEFAULT_CONFIG = "search_planted"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.commands import add_config_arguments

    add_config_arguments(p, DEFAULT_CONFIG, "search config (a discover config plus a search: block)",
                         "search.max_depth=3 or data.n_train=5000")
    p.add_argument("--storage", help="sqlite (default: study.db in the run folder), journal[:PATH] "
                                     "(several workers on one machine), or a SQLAlchemy URL, e.g. postgresql://...")
    p.add_argument("--study-name", help="Optuna study name (default: the run folder's name)")
    p.add_argument("--n-trials", type=int, help="finished trials the study aims for (default: search.n_trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (needs journal or a server)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume the study of an existing search folder")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"],
                   help="one W&B run per trial, grouped by study (default: the config's wandb.mode)")


def run(args: argparse.Namespace) -> int:
    from structlearn.commands import set_threads
    from structlearn.configs import config_path
    from structlearn.depth.space import load_search_config
    from structlearn.depth.study import read_search_dir, run_search, validate_search
    from structlearn.io import read_json
    from structlearn.runs.run import safe_name

    storage, study_name = args.storage, args.study_name
    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume takes the folder's own search.yaml; do not pass a config or --set with it")
        run_dir = Path(args.resume)
        cfg = read_search_dir(run_dir)
        state = read_json(run_dir / "search_state.json") if (run_dir / "search_state.json").exists() else {}
        storage = storage if storage is not None else state.get("storage")
        study_name = study_name or state.get("study_name")
    else:
        cfg = load_search_config(config_path(args.config or DEFAULT_CONFIG), args.overrides)
        run_dir = Path(args.out) / f"search-{safe_name(cfg.run.name)}-{cfg.fingerprint()}"
        if (run_dir / "search_state.json").exists():
            state = read_json(run_dir / "search_state.json")
            storage = storage if storage is not None else state.get("storage")
    set_threads(cfg.run.threads)
    cache = validate_search(cfg)  # bad data, objective or range: fails here, before any file is written
    try:
        summary = run_search(cfg, run_dir, storage, study_name, args.n_trials, args.workers,
                             args.wandb or cfg.run.wandb.mode, cache=cache)
    except KeyboardInterrupt:
        print(f"interrupted; finished trials are kept and the running one is enqueued again. Resume with the same "
              f"command or: structlearn search --resume {run_dir}", file=sys.stderr)
        return 130
    best = summary["best_trial"]
    print(f"chosen depth: {summary['chosen_depth']} (threshold {summary['threshold']} {summary['gain_unit']}; "
          f"{summary['n_finished']} finished trials: {summary['states']})")
    if best is not None:
        print(f"best trial {best['number']} ({best['state'].lower()}): {best['params']}")
        print("gains per layer: " + ", ".join(f"{g:+.4f}" for g in best["scored_gains"] or []))
    print(f"wrote {run_dir}/search.json, gain.md, gain_vs_depth.png, trials.png", file=sys.stderr)
    return 0
