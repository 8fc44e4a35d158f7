"""The export workflow: a run's architecture spec, built from the read-out the run wrote.

The first layer becomes a conv stage (plus an energy-pooling stage when unit groups share a
kernel) when :mod:`structlearn.runs.readout` found shared kernels, else a dense stage; later
layers are dense stages; nonlinearities between layers become activation stages. The spec is
taken from ``structure.json`` and ``structure_kernels.pt`` (:func:`ensure_structure`, with the
same options as ``structlearn report``), never recomputed with other settings.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from structlearn.export.spec import conv_stage, make_spec, pool_stage
from structlearn.runs.readout import ensure_structure
from structlearn.runs.run import Run


def spec_from_run(run: Run, conv_kwargs: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Tensor]]:
    """``(spec, kernels)``; ``kernels`` holds one ``(C, k, k)`` tensor per conv stage."""
    cfg = run.cfg
    for li in range(len(cfg.layers)):
        run.layer(li)  # a clear error for an unfinished run
    input_shape = run.input_shape(0)
    if len(input_shape) != 2:
        raise ValueError(f"the run's inputs have shape {input_shape}; an architecture spec needs (H, W) images")
    structure = ensure_structure(run, conv_kwargs)
    saved = run.kernels()
    stages: list[dict[str, Any]] = []
    kernels: list[Tensor] = []
    for li, lcfg in enumerate(cfg.layers):
        entry = structure["layers"][li]
        conv = entry.get("conv")
        ev = {"density": entry["density"], "layer": li, "objective": lcfg.objective}
        if li == 0 and isinstance(conv, dict) and "error" not in conv and li in saved:
            stages.append(conv_stage(conv, {**ev, "equivalence_error": conv.get("equivalence_error")}))
            kernels.append(saved[li])
            if conv.get("pooling"):
                stages.append(pool_stage(conv["pooling"]))
        else:
            if isinstance(conv, dict) and "error" in conv:
                ev["no_conv_reason"] = conv["error"]
            stages.append({"type": "dense", "out_features": int(entry["n_units"]), "evidence": ev})
        if li + 1 < len(cfg.layers):
            if lcfg.nonlinearity == "pool_energy":
                stages.append({"type": "activation", "fn": "group_l2", "group": lcfg.pool_group})
            else:
                stages.append({"type": "activation", "fn": {"abs": "abs", "log_abs": "log_abs", "relu": "relu", "none": "identity"}[lcfg.nonlinearity]})
    return make_spec(input_shape, stages, {"run": run.name, "kind": cfg.data.kind,
                                           "conv_kwargs": structure.get("conv_kwargs", {})}), kernels
