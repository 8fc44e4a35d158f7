"""``structlearn randnet``: do random networks whose outputs carry more entropy classify better?

Samples random-weight dense networks (depth, width, density, local or global connectivity),
measures the coding rate of their outputs and the accuracy of a ridge probe on a labelled
task (default: which bundled image a 16x16 patch comes from), and reports the Spearman
correlation with a bootstrap 95 % interval. Writes ``random_nets.json`` and
``random_nets.png`` into ``<out>/<time>-<name>/``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "random-weight networks: Spearman correlation of output entropy with linear-probe accuracy"
DEFAULT_CONFIG = "random_nets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.commands import add_config_arguments

    add_config_arguments(p, DEFAULT_CONFIG, "random-net study config", "n_nets=200 or source=/data/cifar-10-batches-py")
    p.add_argument("--quiet", action="store_true", help="no line per network")


def load_randnet_config(path: str | Path | None, overrides: list[str]):
    from structlearn.config import apply_overrides, from_dict, read_yaml_mapping, to_dict
    from structlearn.depth.random_nets import RandNetConfig

    d = to_dict(RandNetConfig())
    if path is not None:
        user = read_yaml_mapping(path)
        unknown = sorted(set(user) - set(d))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {', '.join(d)}")
        d.update(user)
    cfg = from_dict(RandNetConfig, apply_overrides(d, list(overrides)))
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    import yaml

    from structlearn.commands import set_threads
    from structlearn.config import to_dict
    from structlearn.configs import config_path
    from structlearn.depth.random_nets import plot_random_nets, run_random_net_study
    from structlearn.io import atomic_write_json, atomic_write_text
    from structlearn.runs.run import new_run_dir

    cfg = load_randnet_config(config_path(args.config or DEFAULT_CONFIG), args.overrides)
    set_threads(cfg.threads)
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    result = run_random_net_study(cfg, log=log)
    run_dir = new_run_dir(args.out, cfg.name)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    atomic_write_json(run_dir / "random_nets.json", {**result, "config": to_dict(cfg)})
    plot_random_nets(result, run_dir / "random_nets.png")
    show = {k: result[k] for k in ("spearman_rho", "ci95", "n_nets", "chance_accuracy", "input_probe_accuracy",
                                   "spearman_within_width")}
    print(json.dumps(show, indent=2))
    print(f"wrote {run_dir}/random_nets.json and random_nets.png", file=sys.stderr)
    return 0
