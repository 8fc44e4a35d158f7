"""The export workflow: a run's architecture spec, built from the read-out the run wrote.

The first layer becomes, with ``sharing="full"`` (the default), a shared_conv stage: every unit
as one of the read-out's shared kernels with its own gain and position (full coverage,
:mod:`structlearn.structure.sharing`); with ``sharing="strict"``, a conv stage of the exact
cosine read-out (plus an energy-pooling stage when unit groups share a kernel) when it found
one. A colour run (``data.color``, inputs ``(3, H, W)``) exports the same stages on RGB input: its
shared kernels ``(C, 3, k, k)`` are fitted to the whole colour fields, its strict conv stage
carries the colour kernels of the read-out. Otherwise, or for vector inputs, a dense stage; later
layers are dense stages; nonlinearities between layers become activation stages. The spec is
taken from ``structure.json`` and ``structure_kernels.pt`` (:func:`ensure_structure`, with the
same options as ``structlearn report``), never recomputed with other settings.
"""
from __future__ import annotations

import math
from typing import Any

from structlearn.export.spec import conv_stage, make_spec, pool_stage, shared_conv_stage
from structlearn.params import check_choice
from structlearn.runs.readout import ensure_structure
from structlearn.runs.run import Run


SHARING = ("full", "strict")


def spec_from_run(run: Run, conv_kwargs: dict[str, Any] | None = None, sharing: str = "full") -> tuple[dict[str, Any], list[Any]]:
    """``(spec, kernels)``; ``kernels`` holds one ``(C, k, k)`` tensor per conv stage and one
    dict (kernels and unit placements) per shared_conv stage, in order."""
    check_choice("sharing", sharing, SHARING)
    cfg = run.cfg
    for li in range(len(cfg.layers)):
        run.layer(li)  # a clear error for an unfinished run
    input_shape = run.input_shape(0)
    colour = len(input_shape) == 3
    if len(input_shape) != 2 and not colour:
        raise ValueError(f"the run's inputs have shape {input_shape}; an architecture spec needs (H, W) or (3, H, W) images")
    structure = ensure_structure(run, conv_kwargs)
    saved, shared = run.kernels(), run.shared()
    stages: list[dict[str, Any]] = []
    kernels: list[Any] = []
    flowing: int | None = math.prod(input_shape)  # features flowing into the next stage (None: unknown)
    for li, lcfg in enumerate(cfg.layers):
        entry = structure["layers"][li]
        conv = entry.get("conv")
        ev = {"density": entry["density"], "layer": li, "objective": lcfg.objective}
        sh = entry.get("sharing")
        if li == 0 and sharing == "full" and isinstance(sh, dict) and "error" not in sh and li in shared:
            strict = {k: conv.get(k) for k in ("channels", "coverage", "equivalence_error")} if isinstance(conv, dict) else {}
            stages.append(shared_conv_stage({**sh, "unit_channel": shared[li]["channel"].tolist()},
                                            {**ev, "exact_sharing": strict}))
            kernels.append({k: v.float() if v.is_floating_point() else v for k, v in shared[li].items()})  # float32, as the rest
            flowing = int(entry["n_units"])
        elif li == 0 and isinstance(conv, dict) and "error" not in conv and li in saved:
            stages.append(conv_stage(conv, {**ev, "equivalence_error": conv.get("equivalence_error")}))
            kernels.append(saved[li])
            if conv.get("pooling"):
                stages.append(pool_stage(conv["pooling"]))
            flowing = None  # a conv map, not the layer's units: later layers' weights do not apply
        else:
            if isinstance(conv, dict) and "error" in conv:
                ev["no_conv_reason"] = conv["error"]
            w = run.layer(li)
            n_in = int(w["weight"].shape[1])
            if n_in == flowing and not lcfg.pca_input:  # the discovered weights fit what flows in: with their mask
                stages.append({"type": "dense", "out_features": int(entry["n_units"]), "masked": True, "evidence": ev})
                kernels.append({"weight": w["weight"].float(), "mask": w["mask"].float()})
            else:  # e.g. pca_input: the layer read a PCA projection the spec does not carry
                ev["no_weights_reason"] = (f"the layer read {n_in} inputs but {flowing} flow in (pca_input or a "
                                           f"pooled previous layer): architecture only")
                stages.append({"type": "dense", "out_features": int(entry["n_units"]), "evidence": ev})
            flowing = int(entry["n_units"])
        if li + 1 < len(cfg.layers):
            if lcfg.nonlinearity == "pool_energy":
                stages.append({"type": "activation", "fn": "group_l2", "group": lcfg.pool_group})
                flowing = None if flowing is None else flowing // lcfg.pool_group
            else:
                stages.append({"type": "activation", "fn": {"abs": "abs", "log_abs": "log_abs", "relu": "relu", "none": "identity"}[lcfg.nonlinearity]})
    return make_spec(input_shape, stages, {"run": run.name, "kind": cfg.data.kind,
                                           "conv_kwargs": structure.get("conv_kwargs", {})}), kernels
