"""Shared data and exact reference values for the benchmarks.

- :func:`whitened_patches`: the project's own pipeline (:func:`structlearn.data.prepare.prepare`)
  on the bundled images: ``p x p`` patches, per-patch mean removed, ZCA-whitened.
- :func:`lasso_eval`: the LASSO objective of a dictionary, codes re-inferred by one solver
  (float64 FISTA) for every dictionary, with the duality gap that certifies how exact the
  value is.
"""
from __future__ import annotations

import torch
from torch import Tensor

from structlearn.bench import Context
from structlearn.config import DataConfig
from structlearn.data.prepare import prepare
from structlearn.functional.sparse import fista, lasso_objective, lipschitz


def whitened_patches(ctx: Context, patch: int, n_train: int, n_test: int) -> tuple[Tensor, Tensor]:
    """``(train (n_train, patch^2), test (n_test, patch^2))`` float32 on CPU (cached per size)."""
    def make():
        cfg = DataConfig(kind="patches", patch=(patch, patch), n_train=n_train, n_test=n_test, whitening="zca")
        p = prepare(cfg, seed=ctx.seed)
        return p.train, p.test

    return ctx.cached(f"patches/{patch}/{n_train}/{n_test}", make)


def lasso_dual_gap(x: Tensor, D: Tensor, z: Tensor, lam: float) -> Tensor:
    """Per-sample duality gap of ``min_z 1/2||x - z D||^2 + lam ||z||_1``: (n,), >= 0.

    Dual point ``theta = r * min(1, lam / ||r D^T||_inf)`` with ``r = x - z D``; dual value
    ``1/2 ||x||^2 - 1/2 ||x - theta||^2``. The primal value is at most ``gap`` above the optimum.
    """
    r = x - z @ D  # (n, d)
    scale = torch.clamp(lam / (r @ D.T).abs().amax(1).clamp_min(1e-300), max=1.0)  # (n,)
    theta = r * scale[:, None]
    dual = 0.5 * (x * x).sum(1) - 0.5 * ((x - theta) ** 2).sum(1)
    return lasso_objective(x, D, z, lam) - dual


def lasso_eval(x: Tensor, D: Tensor, lam: float, n_iter: int = 300) -> dict[str, float]:
    """Mean LASSO objective of ``D`` on ``x`` with codes from float64 FISTA (``n_iter``),
    and the relative duality gap (mean gap / mean objective) of those codes."""
    x, D = x.double(), D.double()
    z = fista(x, D, lam, n_iter, L=lipschitz(D))
    obj = lasso_objective(x, D, z, lam).mean()
    gap = lasso_dual_gap(x, D, z, lam).mean()
    return {"objective": float(obj), "rel_gap": float(gap / obj), "active": float((z != 0).double().sum(1).mean())}


def learned_dictionary(ctx: Context, patch: int, n_atoms: int, lam: float, steps: int) -> Tensor:
    """A dictionary ``(n_atoms, patch^2)`` learned by :class:`SparseCoding` on whitened
    patches (float32, CPU; cached): realistic, coherent atoms for the inference benchmarks."""
    from structlearn.models.dense import DenseLayer
    from structlearn.objectives.sparse_coding import SparseCoding

    def make():
        train, _ = whitened_patches(ctx, patch, ctx.pick(50000, 10000, 600), ctx.pick(2000, 500, 100))
        g = ctx.generator("dictionary")
        layer = DenseLayer(patch * patch, n_atoms, (patch, patch), generator=g)
        obj = SparseCoding(layer, lam=lam, n_iter=30, beta=0.9, generator=g)
        batch = min(1024, train.shape[0])
        for s in range(steps):
            idx = torch.randint(train.shape[0], (batch,), generator=g)
            obj.train_step(train[idx])
        return layer.effective_weight().detach().clone()

    return ctx.cached(f"dictionary/{patch}/{n_atoms}/{lam}/{steps}", make)
