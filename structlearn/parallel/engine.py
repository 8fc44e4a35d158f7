"""One layer trained on a :class:`~structlearn.parallel.mesh.Mesh`: the update step, spread
over the processes, and the full layer that every rank keeps for everything else.

Every rank holds the layer's full objective (``full``; the trainer's evaluations, pruning,
montages and the next layer's inputs read it, identically on every rank) and trains a local
one (``local``):

- **atom shards** (``atoms > 1``, sparse coding): ``local`` is a
  :class:`~structlearn.parallel.sharded.ShardedSparseCoding` on this rank's block of atoms;
  its FISTA all-reduces the ``(n, d)`` reconstruction once per iteration and its gradient
  dictionary step is local. :meth:`LayerEngine.pull` all-gathers the blocks into ``full``
  before anything reads it; :meth:`LayerEngine.push` re-slices ``full`` after pruning, a
  rewind or new hyperparameters changed it (no communication: every rank changed its copy
  the same way).
- **data parallel** (``dp > 1``): each replica takes its ``n / dp`` rows of the global batch;
  the statistics the objective names in ``mean_statistics()`` (batch means) are averaged over
  the replicas in one all-reduce, the batch-local ``_`` tensors (sparse coding's residual rows
  for re-seeding dead atoms) are all-gathered and ``n`` becomes the global batch size, so
  ``update`` sees the global batch's statistics and every replica takes the same step:
  the same result as one process on the global batch, to rounding. Sparse coding's
  evaluations split their rows over the replicas the same way (:meth:`sharded_inference`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from structlearn.objectives.base import Objective
from structlearn.objectives.sparse_coding import SparseCoding
from structlearn.parallel.mesh import Mesh, gather_rows
from structlearn.parallel.sharded import ShardedSparseCoding, shard_bounds, shard_layer, splits


class LayerEngine:
    """Train ``full`` (layer ``where``, batches of ``batch_size``) on ``mesh`` (module docstring)."""

    def __init__(self, mesh: Mesh, full: Objective, batch_size: int, where: str = "layers.0") -> None:
        self.check(mesh, full, batch_size, where)
        self.mesh, self.full = mesh, full
        self.local: Objective = full
        self.by_reduction = mesh.dp > 1 and getattr(full, "splits_batch", None) is not None
        if self.by_reduction:  # MCR^2: the objective sums its Gram matrices over the replicas itself
            group = mesh.dp_group

            def reduce(t: Tensor) -> Tensor:
                dist.all_reduce(t, group=group)
                return t

            full.__dict__.update(reducer=reduce, replica=(mesh.dp_rank, mesh.dp))
        self.push()

    @staticmethod
    def check(mesh: Mesh, full: Objective, batch_size: int, where: str = "layers.0") -> None:
        """Refuse, naming the allowed settings, a layer that cannot train on ``mesh``."""
        name, k = full.name, full.layer.n_units
        if mesh.atoms > 1:
            if type(full) is not SparseCoding:
                raise ValueError(f"{where}: parallel.atoms={mesh.atoms} shards the atoms of sparse_coding only; allowed "
                                 f"for objective {name!r}: parallel.atoms=1 with parallel.dp={mesh.size} (data parallel)")
            if full.dict_update == "bcd":
                raise ValueError(f"{where}: parallel.atoms={mesh.atoms} needs a gradient dictionary update (block "
                                 "coordinate descent reads every atom); allowed: params.dict_update usage, adam or sgd")
            if full.init == "data":
                raise ValueError(f"{where}: params.init='data' is not sharded; allowed with parallel.atoms > 1: init 'random'")
            shard_bounds(k, mesh.atoms - 1, mesh.atoms)  # refuses a split that leaves a rank without atoms
        if mesh.dp > 1:
            splits = getattr(full, "splits_batch", None)  # MCR^2: reduces its Gram matrices itself
            if splits is not None and not splits():
                raise ValueError(f"{where}: data-parallel {name} takes params.partition 'augment' with optimizer "
                                 "'adam'; allowed otherwise: parallel.dp=1")
            if splits is None and not full.mean_statistics():
                raise ValueError(f"{where}: objective {name!r} with these parameters has no batch-mean statistics "
                                 f"(its update is not separable over samples); allowed: parallel.dp=1")
            if batch_size % mesh.dp:
                raise ValueError(f"{where}.batch_size={batch_size} does not split over parallel.dp={mesh.dp} replicas; "
                                 f"allowed: a multiple of {mesh.dp}")

    @property
    def sharded(self) -> bool:
        return self.mesh.atoms > 1

    def rows(self) -> tuple[int, int]:
        """This rank's atoms ``[start, stop)`` of the full layer."""
        return shard_bounds(self.full.layer.n_units, self.mesh.atom_rank, self.mesh.atoms)

    # ------------------------------------------------------------------ full <-> local
    @torch.no_grad()
    def push(self) -> None:
        """``local`` from ``full``: this rank's rows of every per-atom tensor, the rest copied,
        and ``full``'s hyperparameters."""
        if not self.sharded:
            return
        full = self.full
        local = ShardedSparseCoding(shard_layer(full.layer, self.mesh.atom_group), group=self.mesh.atom_group,
                                    n_units_total=full.layer.n_units, **full.get_params())
        start, stop = self.rows()
        mine = full.state_dict()
        for key, t in local.state_dict().items():
            src = mine[key]
            t.copy_(src[start:stop] if t.shape != src.shape else src)
        self.local = local

    @torch.no_grad()
    def pull(self) -> None:
        """``full`` from the shards: per-atom tensors all-gathered over the atom group."""
        if not self.sharded:
            return
        k = self.full.layer.n_units
        mine = self.full.state_dict()
        for key, t in self.local.state_dict().items():
            dst = mine[key]
            dst.copy_(gather_rows(t.contiguous(), k, self.mesh.atom_group) if t.shape != dst.shape else t)

    # ------------------------------------------------------------------ the step
    def step(self, x: Tensor) -> dict[str, Tensor]:
        """One update on the global batch ``x: (n, d)`` (the same on every rank)."""
        dp = self.mesh.dp
        if self.by_reduction:  # the global batch: the objective keeps its replica's rows
            return self.local.update(self.local.statistics(x))
        if dp > 1:
            m = x.shape[0] // dp
            x = x[self.mesh.dp_rank * m: (self.mesh.dp_rank + 1) * m]
        stats = self.local.statistics(x)
        if dp > 1:
            self.reduce(stats)
        return self.local.update(stats)

    def reduce(self, stats: dict[str, Any]) -> None:
        """Replica means of the batch-mean statistics (one all-reduce of their concatenation),
        the ``_`` tensors gathered in replica order, ``n`` times ``dp`` (module docstring)."""
        group, dp = self.mesh.dp_group, self.mesh.dp
        keys = [k for k in self.local.mean_statistics() if isinstance(stats.get(k), Tensor)]
        if keys:
            flat = torch.cat([stats[k].reshape(-1) for k in keys])
            dist.all_reduce(flat, group=group)
            flat.div_(dp)
            i = 0
            for k in keys:
                t = stats[k]
                stats[k] = flat[i: i + t.numel()].view_as(t)
                i += t.numel()
        for k, v in list(stats.items()):
            if k.startswith("_") and isinstance(v, Tensor):
                parts = [torch.empty_like(v) for _ in range(dp)]
                dist.all_gather(parts, v.contiguous(), group=group)
                stats[k] = torch.cat(parts)
        if "n" in stats:
            stats["n"] = stats["n"] * dp

    @contextmanager
    def sharded_inference(self) -> Iterator[None]:
        """Inside: ``full``'s FISTA is split over the ranks, so an evaluation costs ``1 / N`` of it
        on every rank instead of all of it. Atom shards: each rank its atoms' codes, then one
        all-gather of the ``(n, k)`` codes; the local training state (the power iteration's) is
        left as it was. Data-parallel sparse coding: each replica codes its block of the rows
        (:func:`shard_bounds`; FISTA's rows are independent), then one all-gather of the rows.
        Every rank must enter it at the same point (the trainer's evaluations)."""
        full = self.full
        if self.sharded:
            local, k, group = self.local, full.layer.n_units, self.mesh.atom_group
            assert isinstance(local, ShardedSparseCoding)

            def infer(x: Tensor, n_iter: int) -> Tensor:
                kept = {n: b.clone() for n, b in local.named_buffers() if n.startswith("power_")}
                try:
                    z = local.infer(x, n_iter)  # (n, k_r)
                finally:
                    for n, b in kept.items():
                        local.get_buffer(n).copy_(b)
                return gather_rows(z.T.contiguous(), k, group).T
        elif self.mesh.dp > 1 and isinstance(full, SparseCoding):
            whole, dp, rank, group = full.infer, self.mesh.dp, self.mesh.dp_rank, self.mesh.dp_group

            def infer(x: Tensor, n_iter: int) -> Tensor:
                n = x.shape[0]
                if not splits(n, dp):  # too few rows for every replica: each codes them all
                    return whole(x, n_iter)
                start, stop = shard_bounds(n, rank, dp)
                return gather_rows(whole(x[start:stop], n_iter), n, group)
        else:
            yield
            return
        full.__dict__["infer"] = infer
        try:
            yield
        finally:
            del full.__dict__["infer"]

    # ------------------------------------------------------------------ checkpoints
    def sharded_state(self) -> dict[str, Any]:
        """``local``'s state for :func:`torch.distributed.checkpoint.save`: per-atom tensors as
        DTensors (``Shard(0)`` over "atoms", replicated over "dp", at their offsets in the full
        layer), the rest as plain tensors (written once)."""
        from torch.distributed.tensor import DTensor, Replicate, Shard

        mine = self.full.state_dict()
        out: dict[str, Any] = {}
        for key, t in self.local.state_dict().items():
            full = mine[key]
            out[key] = t if t.shape == full.shape else DTensor.from_local(
                t, self.mesh.device_mesh, [Replicate(), Shard(0)], run_check=False, shape=full.shape, stride=full.stride())
        return out
