"""``structlearn redunet [CONFIG]``: construct a ReduNet (vector or translation-invariant) on data
that ships, and write its run folder (see :mod:`structlearn.runs.redunet`)."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "construct a ReduNet by rate reduction (vector, or translation-invariant by per-frequency convolutions)"
DEFAULT_CONFIG = "redunet_digits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.commands import add_config_arguments

    add_config_arguments(p, DEFAULT_CONFIG, "ReduNet config", "layers=5 or spatial_dims=0")


def run(args: argparse.Namespace) -> int:
    from structlearn.commands import set_threads
    from structlearn.configs import config_path
    from structlearn.runs.redunet import load_redunet_config, run_redunet

    cfg = load_redunet_config(config_path(args.config or DEFAULT_CONFIG), args.overrides)
    set_threads(cfg.threads)
    run_dir, result = run_redunet(cfg, args.out)
    show = {k: v for k, v in result.items() if "accuracy" in k}
    show["delta_R"] = [round(s["delta_R"], 3) for s in result["layers"]]
    print(json.dumps(show, indent=2))
    print(f"wrote {run_dir}", file=sys.stderr)
    return 0
