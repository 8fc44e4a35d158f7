"""4. MCR^2 loss and gradient versus the reference formulation.

Baseline: the published code's formulation (Yu et al. 2020, ryanchankh/mcr2 ``loss.py``,
empirical losses), written here with the same math: ``W = Z^T`` (d, m), a dense membership
tensor ``Pi`` (k, m, m) with ``Pi_j = diag(1[y == j])``, and per class

    R   = 1/2 logdet(I_d + d/(m eps^2) W W^T)
    R_c = sum_j tr(Pi_j)/(2m) logdet(I_d + d/(tr(Pi_j) eps^2) W Pi_j W^T),   loss = R_c - R

so each class costs a dense ``(d, m) @ (m, m)`` product. ``Pi`` is built once outside the
timed call (in the reference it is rebuilt every batch), which favours the baseline.
Ours: :func:`structlearn.functional.rate.coding_rate` and ``partition_coding_rate`` with
integer labels (class blocks, log-determinants on the smaller side, Cholesky).
Both include ``F.normalize`` of the features and the backward pass to the features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from structlearn.bench import Benchmark, Context, Result, Target
from structlearn.functional.rate import coding_rate, partition_coding_rate

EPS2 = 0.5


def reference_loss(Z: torch.Tensor, Pi: torch.Tensor, eps2: float = EPS2) -> torch.Tensor:
    """The reference formulation (see the module docstring); ``Z: (m, d)``, ``Pi: (k, m, m)``."""
    W = Z.T  # (d, m)
    p, m = W.shape
    eye = torch.eye(p, device=Z.device, dtype=Z.dtype)
    R = torch.logdet(eye + p / (m * eps2) * W @ W.T) / 2
    Rc = 0.0
    for j in range(Pi.shape[0]):
        tr = torch.trace(Pi[j]) + 1e-8
        Rc = Rc + torch.logdet(eye + p / (tr * eps2) * W @ Pi[j] @ W.T) * tr / m
    return Rc / 2 - R


def our_loss(Z: torch.Tensor, labels: torch.Tensor, k: int, eps2: float = EPS2) -> torch.Tensor:
    return partition_coding_rate(Z, labels, eps2, n_classes=k) - coding_rate(Z, eps2)


def _problem(ctx: Context, m: int, d: int, k: int, dtype: torch.dtype):
    g = ctx.generator(f"mcr2/{m}/{d}/{k}")
    labels = torch.randint(k, (m,), generator=g)
    means = torch.randn(k, d, generator=g, dtype=dtype)
    X = means[labels] + 0.7 * torch.randn(m, d, generator=g, dtype=dtype)  # (m, d) clustered features
    Pi = torch.zeros(k, m, m, dtype=dtype)
    idx = torch.arange(m)
    Pi[labels, idx, idx] = 1.0
    dev = ctx.device
    return X.to(dev), labels.to(dev), Pi.to(dev)


def _value_and_grad(loss_fn, X: torch.Tensor):
    Xg = X.detach().clone().requires_grad_(True)
    loss = loss_fn(F.normalize(Xg, dim=1))
    loss.backward()
    return loss.detach(), Xg.grad


def run(ctx: Context) -> list[Result]:
    shapes = ctx.pick([(1000, 128, 10), (4096, 512, 10)], [(1000, 128, 10), (2048, 256, 10)], [(60, 8, 3), (90, 20, 4)])
    rows = []
    for m, d, k in shapes:
        X, labels, pi_masks = _problem(ctx, m, d, k, torch.float32)
        ours = lambda: _value_and_grad(lambda Z: our_loss(Z, labels, k), X)  # noqa: E731
        base = lambda P=pi_masks: _value_and_grad(lambda Z: reference_loss(Z, P), X)  # noqa: E731
        t_o, t_b = ctx.time_pair(ours, base)
        (lo, go), (lb, gb) = t_o.last, t_b.last
        quality = {"loss_rel_diff_f32": float((lo - lb).abs() / lb.abs()),
                   "grad_rel_diff_f32": float((go - gb).norm() / gb.norm()), "loss": float(lo)}
        if m * m * k <= 2e7:  # float64 check (the float32 gap is rounding, not a different formula)
            X64, Pi64 = X.double(), pi_masks.double()
            (lo64, go64), (lb64, gb64) = (_value_and_grad(lambda Z: our_loss(Z, labels, k), X64),
                                          _value_and_grad(lambda Z: reference_loss(Z, Pi64), X64))
            quality["loss_rel_diff_f64"] = float((lo64 - lb64).abs() / lb64.abs())
            quality["grad_rel_diff_f64"] = float((go64 - gb64).norm() / gb64.norm())
            del Pi64
        rows.append(Result("mcr2", f"m={m} d={d} k={k}", "rate.py (labels, smaller side, Cholesky) + backward",
                           "reference dense Pi (k,m,m) + backward", t_o, t_b, target=Target("speedup", ">=", 10),
                           quality=quality, notes="float32 timed; float64 check where Pi fits"))
        del pi_masks, base  # free the (k, m, m) masks before the next size
    return rows


BENCHMARK = Benchmark("mcr2", 4, run, "MCR^2 loss+gradient vs the reference dense-Pi formulation")
