"""From config sections to components: a layer's objective, and what feeds the next layer."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from structlearn.config import LayerConfig, RunConfig
from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.runtime import derive_seed


def build_objective(lcfg: LayerConfig, n_in: int, input_shape: tuple[int, ...], seed: int, li: int,
                    device: torch.device, dtype: torch.dtype) -> Objective:
    """Layer ``li``'s dense layer and objective, seeded by ``derive_seed(seed, "layer", li)``."""
    g = torch.Generator().manual_seed(derive_seed(seed, "layer", li))
    layer = DenseLayer(n_in, lcfg.n_units, input_shape, generator=g, dtype=dtype, device=device)
    factory = OBJECTIVES.get(lcfg.objective)
    try:
        return factory(layer, generator=g, **lcfg.params)
    except ValueError as e:
        raise ValueError(f"layers.{li}.params: {e}") from None


def check_layers(cfg: RunConfig, n_in: int, input_shape: tuple[int, ...], dtype: torch.dtype,
                 also: Callable[[int, LayerConfig, Objective], None] | None = None) -> None:
    """Build every layer's objective (on CPU, unused) and check its fine-tuning parameters
    (and ``also(li, lcfg, objective)``, e.g. whether it splits over the processes): a bad
    objective name or hyperparameter fails here, before any work or file."""
    shape: tuple[int, ...] = input_shape
    for li, lcfg in enumerate(cfg.layers):
        obj = build_objective(lcfg, n_in, shape, cfg.seed, li, torch.device("cpu"), dtype)
        if also is not None:
            also(li, lcfg, obj)
        if lcfg.prune is not None and lcfg.prune.finetune_params:
            try:
                obj.validate_params(**lcfg.prune.finetune_params)
            except ValueError as e:
                raise ValueError(f"layers.{li}.prune.finetune_params: {e}") from None
        shape = next_input_shape(lcfg)
        n_in = shape[0]
        nxt = cfg.layers[li + 1] if li + 1 < len(cfg.layers) else None
        if nxt is not None and nxt.pca_input:
            if nxt.n_units > n_in:
                raise ValueError(f"layers.{li + 1}.pca_input keeps n_units={nxt.n_units} principal components of "
                                 f"{n_in} inputs; allowed: n_units <= {n_in}")
            shape, n_in = (nxt.n_units,), nxt.n_units


GiB = 2**30


def available_memory(device: torch.device) -> tuple[int, str]:
    """``(bytes, what)``: free device memory on CUDA, else the kernel's ``MemAvailable``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device}"
    meminfo = Path("/proc/meminfo")
    lines = meminfo.read_text().splitlines() if meminfo.is_file() else []  # Linux; elsewhere sysconf
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024, "available RAM (MemAvailable)"
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "available RAM"


def estimate_memory(cfg: RunConfig, dtype_bytes: int = 4) -> dict[str, int]:
    """A lower bound, in bytes, of what a run holds at once: the data (raw, whitened train and
    test, float32) and, for the largest layer, its weight, mask and optimizer or dictionary
    statistics plus one batch of codes and one evaluation of the held-out set. It is meant to
    refuse what cannot fit (10^7 units need petabytes) before anything is built, not to budget."""
    d = math.prod(cfg.data.input_shape)
    n = cfg.data.n_train + cfg.data.n_test
    out = {f"data ({n} samples x {d} inputs)": 3 * n * d * 4}
    worst = 0
    n_in = d
    for li, lcfg in enumerate(cfg.layers):
        k = lcfg.n_units
        n_in = k if lcfg.pca_input and li > 0 else n_in
        layer = k * n_in * (2 * dtype_bytes + 1)  # weight, its update, mask
        if lcfg.objective in ("sparse_coding", "group_sparse_coding"):
            layer += (k * k + k * n_in) * dtype_bytes  # A and B
        else:
            layer += 2 * k * n_in * dtype_bytes  # Adam moments / natural-gradient buffers
        layer += (lcfg.batch_size + min(cfg.data.n_test, 4096)) * (k + n_in) * dtype_bytes
        worst = max(worst, layer)
        n_in = next_input_shape(lcfg)[0]
    out["largest layer"] = worst
    return out


def check_memory(cfg: RunConfig, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a run whose :func:`estimate_memory` exceeds the available memory, naming both."""
    parts = estimate_memory(cfg, torch.finfo(dtype).bits // 8)
    need = sum(parts.values())
    have, what = available_memory(device)
    if need > have:
        detail = ", ".join(f"{k} {v / GiB:.3g} GiB" for k, v in parts.items())
        raise ValueError(f"the run needs at least {need / GiB:.3g} GiB ({detail}); {what}: {have / GiB:.3g} GiB; "
                         "allowed: fewer units, smaller inputs or fewer samples")


class PCAWhitening:
    """Projection on the ``k`` leading principal components of ``x: (n, d)``, whitened:
    ``(x - mu) V_k diag(lambda_k)^{-1/2}`` (fitted in float64; PCA dimension reduction before
    ICA, Hyvarinen, Karhunen and Oja 2001, ch. 6). Components with ``lambda <= 1e-12
    lambda_max`` are refused: the layer would whiten rounding noise."""

    def __init__(self, x: Tensor, k: int) -> None:
        x = x.double()
        self.mu = x.mean(0)
        e, V = torch.linalg.eigh(torch.atleast_2d(torch.cov((x - self.mu).T, correction=0)))
        e, V = e.flip(0)[:k], V.flip(1)[:, :k]
        if not bool(e[-1] > 1e-12 * e[0]):
            raise ValueError(f"pca_input: the inputs span fewer than n_units={k} dimensions; allowed: fewer units")
        self.P = V * e.rsqrt()  # (d, k)

    def __call__(self, x: Tensor) -> Tensor:
        return ((x.double() - self.mu) @ self.P).float()


def next_input_shape(lcfg: LayerConfig) -> tuple[int]:
    """Width of the next layer's input: units, or groups for ``pool_energy``."""
    return (lcfg.n_units // (lcfg.pool_group if lcfg.nonlinearity == "pool_energy" else 1),)


LOG_FLOOR = 1e-6  # log_abs: log(|z| + LOG_FLOOR); inputs of every layer have unit mean variance


def log_abs(z: Tensor) -> Tensor:
    """Log-magnitudes ``log(|z| + 1e-6)``: variance dependence becomes linear (Karklin and Lewicki 2009)."""
    return torch.log(z.abs() + LOG_FLOOR)


def apply_nonlinearity(z: Tensor, lcfg: LayerConfig) -> Tensor:
    """Codes -> next layer's input: |z|, :func:`log_abs`, relu(z), z, or pooled energy
    sqrt(sum_group z^2)."""
    if lcfg.nonlinearity == "abs":
        return z.abs()
    if lcfg.nonlinearity == "log_abs":
        return log_abs(z)
    if lcfg.nonlinearity == "relu":
        return z.clamp_min(0)
    if lcfg.nonlinearity == "pool_energy":
        return z.reshape(z.shape[0], -1, lcfg.pool_group).pow(2).sum(-1).sqrt()
    return z


@torch.no_grad()
def encode_all(obj: Objective, x: Tensor, device: torch.device, chunk: int = 4096) -> Tensor:
    """Encode ``x: (n, d)`` (on CPU) in chunks on ``device``; returns CPU codes."""
    return torch.cat([obj.encode(x[i:i + chunk].to(device)).cpu() for i in range(0, x.shape[0], chunk)])


def unit_groups(obj: Objective, lcfg: LayerConfig) -> Tensor | None:
    """Unit groups for the pooling read-out: the objective's ``groups`` (group sparse coding) or
    the pooled-energy nonlinearity's consecutive groups; ``None`` when units are not grouped."""
    n_units = obj.layer.n_units
    g = getattr(obj, "groups", None)
    if isinstance(g, Tensor) and g.shape == (n_units,):
        return g.cpu().long()
    if lcfg.nonlinearity == "pool_energy" and lcfg.pool_group > 1:
        return torch.arange(n_units) // lcfg.pool_group
    return None


def layer_total(lcfg: LayerConfig) -> int:
    """Steps of one layer: training, then ``rounds`` fine-tuning phases."""
    return lcfg.steps + (lcfg.prune.rounds * lcfg.prune.finetune_steps if lcfg.prune is not None else 0)


def snapshot(obj: Objective) -> dict:
    """Copies (not views) of the objective's tensors and optimizer state (rewinding, dense dumps)."""
    return {"objective": {k: v.detach().to("cpu", copy=True) for k, v in obj.state_dict().items()},
            "optimizer": copy.deepcopy(obj.optimizer_state())}
