"""Held-out metrics of one trained layer."""
from __future__ import annotations

import torch
from torch import Tensor

from structlearn.objectives.base import Objective
from structlearn.structure.locality import locality_summary


@torch.no_grad()
def evaluate(obj: Objective, x: Tensor, tile_map: Tensor | None, image_input: bool) -> dict[str, float]:
    """Held-out metrics of one layer on ``x: (n, d)`` (already on the layer's device).

    recon_rel_error = ||x - x_hat||^2 / ||x||^2 ; active_codes = mean number of non-zero
    codes per sample (|z| > 1e-8) ; code_kurtosis = E z^4 / (E z^2)^2 pooled over all codes
    (3 for a Gaussian; Olshausen and Field report about 20 after training).
    """
    z = obj.encode(x)
    out: dict[str, float] = {"loss": float(obj.loss(x))}
    xhat = obj.decode(z)
    if xhat is not None:
        out["recon_rel_error"] = float(((x - xhat) ** 2).sum() / (x * x).sum())
    m2 = (z * z).mean()
    out["code_kurtosis"] = float((z ** 4).mean() / (m2 * m2)) if m2 > 0 else float("nan")
    out["active_codes"] = float((z.abs() > 1e-8).float().sum(1).mean())
    W = obj.layer.effective_weight().detach()
    shape = obj.layer.input_shape if image_input else (1, W.shape[1])
    out.update(locality_summary(W.reshape(W.shape[0], *shape), tile_map if image_input else None))
    return out
