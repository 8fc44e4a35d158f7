"""NAS search spaces centred on a discovered structlearn architecture spec.

The discovered spec says *which* operations the data asked for (convolutions of a certain
support and stride, energy pooling); a NAS search then only tunes their sizes. The space
for a conv stage with C channels, k x k kernels and stride s is

    channels in {C/2, C, 2C},  kernel in {k-2, k, k+2} (odd, >= 1),  stride in {s, s+1}
    (clipped at 1), and each pool stage may be kept or dropped.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

__all__ = ["search_space", "suggest_spec", "register"]


def _choices(v: int, deltas: tuple[int, ...], low: int = 1) -> list[int]:
    return sorted({max(low, v + d) for d in deltas})


def search_space(spec: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready search space: ``{"stages": [{"index": i, "param": [choices...]}, ...]}``."""
    from structlearn.export import validate_spec

    validate_spec(spec)
    out = []
    for i, st in enumerate(spec["stages"]):
        if st["type"] == "conv2d":
            c, k, s = st["out_channels"], st["kernel_size"][0], st["stride"][0]
            out.append({"index": i, "type": "conv2d",
                        "out_channels": sorted({max(1, c // 2), c, 2 * c}),
                        "kernel_size": [x for x in _choices(k, (-2, 0, 2)) if x % 2 == k % 2],
                        "stride": _choices(s, (0, 1))})
        elif st["type"] == "pool":
            out.append({"index": i, "type": "pool", "keep": [True, False]})
    return {"format": "structlearn.nas_space", "version": 1, "base": spec, "stages": out}


def suggest_spec(trial, spec: dict[str, Any]) -> dict[str, Any]:
    """A concrete spec sampled by an Optuna ``trial`` from :func:`search_space` (validated)."""
    from structlearn.export import validate_spec

    space = search_space(spec)
    new = copy.deepcopy(spec)
    drop = set()
    for st in space["stages"]:
        i = st["index"]
        if st["type"] == "conv2d":
            c = trial.suggest_categorical(f"s{i}_channels", st["out_channels"])
            k = trial.suggest_categorical(f"s{i}_kernel", st["kernel_size"])
            s = trial.suggest_categorical(f"s{i}_stride", st["stride"])
            new["stages"][i].update(out_channels=c, kernel_size=[k, k], stride=[s, s])
            pad = new["stages"][i]["padding"][0]
            new["stages"][i]["padding"] = [min(pad, k // 2)] * 2
        elif not trial.suggest_categorical(f"s{i}_keep", st["keep"]):
            drop.add(i)
    new["stages"] = [st for i, st in enumerate(new["stages"]) if i not in drop]
    new["source"] = dict(new.get("source", {}), nas_trial=trial.number)
    validate_spec(new)
    return new


def register() -> None:
    """Entry point: adds the ``optuna_space`` exporter to structlearn's EXPORTERS."""
    from structlearn.export import EXPORTERS
    from structlearn.io import atomic_write_json

    if "optuna_space" in EXPORTERS:
        return

    @EXPORTERS.register("optuna_space")
    def _factory():
        def write(spec: dict[str, Any], path: Path) -> None:
            atomic_write_json(path, search_space(spec))

        return write
