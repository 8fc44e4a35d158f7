"""Architecture spec of a finished run: the first layer's shared kernels become a conv stage
(plus pooling when unit groups share a kernel), later layers stay sparse dense stages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from structlearn.export.spec import conv_stage, make_spec, pool_stage


def spec_from_run(run_dir: str | Path, max_inputs: int = 2000) -> tuple[dict[str, Any], list[Tensor]]:
    """``(spec, kernels)`` for ``run_dir``; ``kernels`` holds one ``(C, k, k)`` tensor per conv stage."""
    from structlearn.data.prepare import prepare
    from structlearn.io import load_checkpoint
    from structlearn.rundir import read_run_config
    from structlearn.structure.conv import conv_from_filters, equivalence_error
    from structlearn.structure.readout import _groups_of
    from structlearn.train import build_objective, derive_seed

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    stages: list[dict[str, Any]] = []
    kernels: list[Tensor] = []
    data = None
    for li, lcfg in enumerate(cfg.layers):
        path = run_dir / f"layer{li}.pt"
        if not path.is_file():
            raise ValueError(f"{path} is missing: the run has not finished layer {li}; finish it with --resume first")
        st = load_checkpoint(path)
        W = (st["weight"] * st["mask"]).float()
        density = float((W != 0).double().mean())
        readout, reason = None, None
        if li == 0 and len(st["input_shape"]) == 2:
            shape = tuple(st["input_shape"])
            filters = W.reshape(W.shape[0], *shape)
            obj = build_objective(lcfg, W.shape[1], shape, cfg.seed, 0, torch.device("cpu"), torch.float32)
            try:
                readout = conv_from_filters(filters, groups=_groups_of(obj, lcfg, W.shape[0]))
            except ValueError as e:  # no weight sharing: the layer stays dense
                reason = str(e)
        if readout is not None:
            data = data or prepare(cfg.data, derive_seed(cfg.seed, "data"))
            x = data.test[:max_inputs].float().reshape(-1, *shape)
            err = float(equivalence_error(filters, readout, x))
            stages.append(conv_stage(readout.to_dict(), {"density": density, "equivalence_error": err,
                                                         "layer": li, "objective": lcfg.objective}))
            kernels.append(readout.kernels.detach().cpu())
            if readout.pooling is not None:
                stages.append(pool_stage(readout.pooling.to_dict()))
        else:
            ev = {"density": density, "layer": li, "objective": lcfg.objective}
            if reason is not None:
                ev["no_conv_reason"] = reason
            stages.append({"type": "dense", "out_features": int(W.shape[0]), "evidence": ev})
        fn = {"abs": "abs", "relu": "relu", "none": "identity"}.get(lcfg.nonlinearity)
        if fn is not None and li + 1 < len(cfg.layers):
            stages.append({"type": "activation", "fn": fn})
    input_shape = tuple(load_checkpoint(run_dir / "layer0.pt")["input_shape"])
    if len(input_shape) != 2:
        raise ValueError(f"the run's inputs have shape {input_shape}; an architecture spec needs (H, W) images")
    return make_spec(input_shape, stages, {"run": run_dir.name, "kind": cfg.data.kind}), kernels
