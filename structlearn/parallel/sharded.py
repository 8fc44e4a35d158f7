"""Sparse coding with the dictionary's atoms sharded across processes (torch.distributed).

Rank ``r`` of ``P`` holds a contiguous block of atoms ``D_r: (k_r, d)`` (its rows of the
layer) and their codes ``z_r: (n, k_r)``; every rank sees the same batch ``x: (n, d)``. Since
``z D = sum_r z_r D_r``, one FISTA iteration needs one all-reduce (sum) of the ``(n, d)``
partial reconstructions, and the rest is local:

    y_r <- soft( y_r - (1/L) (sum_s y_s D_s - x) D_r^T ,  lam / L ),  then the momentum step

(Beck and Teboulle 2009; the same iteration as :func:`structlearn.functional.sparse.fista`'s
path through ``D``). The constant ``L = ||D||_2^2`` is the top eigenvalue of
``D^T D = sum_r D_r^T D_r``: one all-reduce of a ``(d, d)`` Gram matrix (exact) or of a
``d``-vector per power or Lanczos step (``lipschitz: power``). The gradient dictionary updates are local to each shard
(``G_r = -z_r^T (x - z D) / n``), so :class:`ShardedSparseCoding` trains the same
dictionary as the unsharded :class:`~structlearn.objectives.sparse_coding.SparseCoding`
(tested to rounding in float64), with ``k / P`` atoms' memory and work per rank. Block
coordinate descent is not sharded: its ``A_J W`` reads every atom.

Without an initialised process group (or with one process) everything runs locally.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from structlearn.functional.sparse import Prox, rows_mm
from structlearn.models.dense import DenseLayer
from structlearn.objectives.sparse_coding import SparseCoding


def world(group: Any = None) -> tuple[int, int]:
    """``(rank, world size)`` in ``group``; ``(0, 1)`` without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def splits(k: int, size: int) -> bool:
    """Whether :func:`shard_bounds` gives each of ``size`` ranks at least one of ``k`` rows."""
    return k >= size and (size - 1) * -(-k // size) < k


def shard_bounds(k: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``: ``k`` atoms in ``size`` contiguous blocks of
    ``ceil(k / size)`` (the last may be shorter), ``torch.chunk``'s split and DTensor's
    ``Shard(0)`` layout, so a sharded checkpoint (:mod:`structlearn.parallel.checkpoint`)
    records each block at its true offset. Every rank must get at least one atom."""
    if not 0 <= rank < size or k < size:
        raise ValueError(f"rank {rank} of {size} for {k} atoms; allowed: 0 <= rank < size <= k")
    c = -(-k // size)
    if not splits(k, size):
        raise ValueError(f"{k} atoms in blocks of {c} leave rank {size - 1} of {size} without atoms; allowed: "
                         f"a number of atoms with (size - 1) * ceil(k / size) < k, e.g. a multiple of {size}")
    return min(rank * c, k), min((rank + 1) * c, k)


def all_reduce_(t: Tensor, group: Any = None) -> Tensor:
    """Sum ``t`` over the group in place (nothing to do on one process)."""
    if world(group)[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def shard_layer(layer: DenseLayer, group: Any = None) -> DenseLayer:
    """This rank's rows of ``layer`` (weights and mask) as a layer of its own."""
    rank, size = world(group)
    start, stop = shard_bounds(layer.n_units, rank, size)
    local = DenseLayer(layer.n_in, stop - start, layer.input_shape, device=layer.weight.device)
    with torch.no_grad():
        local.weight.data = layer.weight.detach()[start:stop].clone()
        local.set_mask_(layer.mask[start:stop].clone())
    return local


def sharded_fista(x: Tensor, D: Tensor, lam: float, n_iter: int, L: Tensor | float, group: Any = None,
                  prox: Prox | None = None, sparse: bool = False) -> Tensor:
    """This rank's codes ``z_r: (n, k_r)`` of ``min_z 1/2 ||x - z D||^2 + lam P(z)`` for the
    atoms ``D: (k_r, d)`` it holds; one all-reduce of ``(n, d)`` per iteration. ``sparse``: the
    partial reconstruction ``y_r D_r`` from ``y_r``'s non-zeros while they are few (CPU; as
    :func:`~structlearn.functional.sparse.fista`)."""
    step = 1.0 / float(L)
    thr = lam * step
    c = (x @ D.T).mul_(step)  # (n, k_r)
    z = torch.zeros_like(c)
    y = z.clone()
    t = 1.0
    for _ in range(n_iter):
        rec = all_reduce_(rows_mm(y, D, sparse), group)  # (n, d) = sum_s y_s D_s
        v = torch.addmm(c, rec, D.T, alpha=-step).add_(y)
        z_new = torch.nn.functional.softshrink(v, thr) if prox is None else prox(v, thr)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        y = torch.lerp(z, z_new, 1.0 + (t - 1.0) / t_new)
        z, t = z_new, t_new
    return z


class ShardedSparseCoding(SparseCoding):
    """:class:`SparseCoding` on this rank's atoms (``layer = shard_layer(full_layer)``), with a
    gradient dictionary update (``dict_update`` sgd, usage or adam); ``group`` is the
    process group of the atom shards (default: the whole world)."""

    def __init__(self, layer: DenseLayer, *, group: Any = None, n_units_total: int | None = None, **params: Any) -> None:
        if params.get("dict_update", "bcd") == "bcd":
            raise ValueError("a sharded layer needs a gradient dictionary update; allowed: dict_update sgd, usage, adam "
                             "(block coordinate descent reads every atom)")
        self.group = group
        self.rank, self.size = world(group)
        self.n_units_total = n_units_total if n_units_total is not None else layer.n_units * self.size
        super().__init__(layer, **params)

    # -- the global quantities, from local pieces
    def _gram_apply(self, D: Tensor, v: Tensor) -> Tensor:
        return all_reduce_(D.T @ (D @ v), self.group)

    def _exact_lipschitz(self, D: Tensor, keep_vector: bool = True) -> Tensor:
        gram = all_reduce_(D.T @ D, self.group)  # (d, d) = sum_r D_r^T D_r
        if not keep_vector:
            return torch.linalg.eigvalsh(gram)[-1]
        evals, evecs = torch.linalg.eigh(gram)
        self.power_vector.copy_(evecs[:, -1])
        return evals[-1]

    def infer(self, x: Tensor, n_iter: int) -> Tensor:
        D = self.layer.effective_weight().detach()
        return sharded_fista(x, D, self.lam, n_iter, self.lipschitz_constant(D), self.group, self.prox(),
                             self.fista_product == "sparse")

    def decode(self, z: Tensor) -> Tensor:
        return all_reduce_(z @ self.layer.effective_weight().detach(), self.group)

    def loss(self, x: Tensor) -> Tensor:
        z = self.encode(x)
        r = x - self.decode(z)
        return (0.5 * (r * r).sum(1) + self.lam * all_reduce_(self.penalty(z), self.group)).mean()

    @torch.no_grad()
    def statistics(self, x: Tensor) -> dict[str, Any]:
        D = self.layer.effective_weight()
        z = self.infer(x, self.n_iter)  # (n, k_r)
        n = x.shape[0]
        r = x - all_reduce_(z @ D, self.group)  # (n, d): the full residual on every rank
        penalty = all_reduce_(self.penalty(z), self.group)
        active = all_reduce_((z != 0).sum(1).to(x.dtype), self.group)
        out = {"n": n, "grad": z.T @ r / -n, "usage": (z * z).mean(0),
               "loss": 0.5 * (r * r).sum(1).mean() + self.lam * penalty.mean(),
               "recon_rel_error": (r * r).sum() / (x * x).sum(), "active_codes": active.mean()}
        if self.homeostasis > 0:
            out["fires"] = (z != 0).to(x.dtype).mean(0)
        return {**out, "_residual": r} if self.reseeds_next() else out

    def _atom_mean(self, t: Tensor) -> Tensor:
        return all_reduce_(t.sum(), self.group) / self.n_units_total

    def _global_usage(self) -> tuple[Tensor, slice]:
        """Every atom's usage (an all-gather of the shards'), so dead atoms and their residual
        rows are chosen as on one process; each rank re-seeds its own."""
        usage = self.atom_usage()
        start, stop = shard_bounds(self.n_units_total, self.rank, self.size)
        if self.size == 1:
            return usage, slice(start, stop)
        parts = [torch.empty(b - a, dtype=usage.dtype, device=usage.device)
                 for a, b in (shard_bounds(self.n_units_total, r, self.size) for r in range(self.size))]
        dist.all_gather(parts, usage.contiguous(), group=self.group)
        return torch.cat(parts), slice(start, stop)

    def _init_from_data_(self, x: Tensor) -> None:
        raise ValueError("init='data' is not sharded yet; allowed: init 'random' with a sharded layer")
