"""The processes of one run as a 2-D device mesh ``("dp", "atoms")`` (torch.distributed).

``torchrun --nproc_per_node N -m structlearn discover ...`` starts ``N`` processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous in their environment;
:func:`init_mesh` joins them (gloo on CPU, NCCL on CUDA; one device per process,
``cuda:LOCAL_RANK``) and lays the ranks out as ``dp`` data-parallel replicas of ``atoms``
atom shards, rank ``= dp_rank * atoms + atom_rank``: the ranks of one replica hold disjoint
atoms of the same layer (their group all-reduces FISTA's reconstruction), the ranks with the
same atom block in different replicas see different parts of each batch (their group averages
the batch-mean statistics). Multi-node runs are torchrun's own rendezvous
(``--nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:PORT``); the run folder
must then be on a file system every node sees. With ``WORLD_SIZE`` unset or 1 there is no mesh
and nothing here runs: a single process takes today's path, bit for bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from structlearn.runtime import resolve_device

if TYPE_CHECKING:
    from structlearn.config import ParallelConfig


def launched_world() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WORLD_SIZE={raw!r}; allowed: a positive integer (set by torchrun)")
    return int(raw)


@dataclass
class Mesh:
    """This process's place in the run: its rank, the mesh shape, its device and groups."""

    rank: int
    size: int
    dp: int
    atoms: int
    device: torch.device
    device_mesh: Any  # torch.distributed.device_mesh.DeviceMesh, dims ("dp", "atoms")

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes the run folder, W&B and the read-out."""
        return self.rank == 0

    @property
    def dp_rank(self) -> int:
        return self.rank // self.atoms

    @property
    def atom_rank(self) -> int:
        return self.rank % self.atoms

    @property
    def dp_group(self) -> Any:
        return self.device_mesh.get_group("dp")

    @property
    def atom_group(self) -> Any:
        return self.device_mesh.get_group("atoms")

    def agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (an all-reduce of one number), so all
        ranks stop at the same step boundary however the signal reached them."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        box = [obj if self.writer else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def mesh_shape(pc: ParallelConfig, size: int) -> tuple[int, int]:
    """``(dp, atoms)`` for ``size`` processes; ``atoms = 0`` means ``size / dp``."""
    atoms = pc.atoms or size // pc.dp
    if pc.dp * atoms != size:
        raise ValueError(f"parallel.dp={pc.dp} x parallel.atoms={pc.atoms or atoms} = {pc.dp * atoms} processes, but "
                         f"{size} were started; allowed: dp x atoms = {size} (atoms 0: {size} / dp)")
    return pc.dp, atoms


def init_mesh(pc: ParallelConfig, device: str) -> Mesh | None:
    """Join the processes torchrun started (``None`` for one process): the process group
    (``pc.backend``; ``timeout_s`` bounds every collective, so a dead or hung rank ends the run
    with an error instead of a hang) and the ``("dp", "atoms")`` device mesh."""
    size = launched_world()
    if size == 1:
        return None
    dp, atoms = mesh_shape(pc, size)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    backend = pc.backend if pc.backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"parallel.backend='nccl' needs CUDA devices but device={device!r} resolves to CPU; "
                         "allowed: backend gloo (or auto) on CPU")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=pc.timeout_s))
    from torch.distributed.device_mesh import init_device_mesh

    dm = init_device_mesh(dev.type, (dp, atoms), mesh_dim_names=("dp", "atoms"))
    return Mesh(dist.get_rank(), size, dp, atoms, dev, dm)


def gather_rows(local: Tensor, k: int, group: Any) -> Tensor:
    """The ``(k, ...)`` tensor whose row blocks (:func:`~structlearn.parallel.sharded.shard_bounds`)
    the ranks of ``group`` hold: one all-gather of blocks padded to ``ceil(k / size)`` rows."""
    size = dist.get_world_size(group)
    c = -(-k // size)
    pad = torch.zeros((c, *local.shape[1:]), dtype=local.dtype, device=local.device)
    pad[: local.shape[0]] = local
    out = torch.empty((size * c, *local.shape[1:]), dtype=local.dtype, device=local.device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the new name from torch 2.13
    if local.dtype == torch.bool:  # gloo moves no bools: as bytes
        gather(out.view(torch.uint8), pad.view(torch.uint8), group=group)
    else:
        gather(out, pad, group=group)
    return out[:k]

