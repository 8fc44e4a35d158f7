"""One layer trained across processes with torch.distributed (issue 11).

- :mod:`structlearn.parallel.sharded`: the dictionary's atoms sharded across ranks, FISTA with
  one all-reduce of the reconstruction per iteration, local gradient dictionary updates;
- :mod:`structlearn.parallel.mesh`: the processes torchrun started, as a ``("dp", "atoms")``
  device mesh (gloo on CPU, NCCL on CUDA, a timeout on every collective);
- :mod:`structlearn.parallel.engine`: one layer's update step on the mesh (atom shards and
  data-parallel replicas through the objectives' batch-mean statistics) beside the full layer
  every rank keeps for evaluation, pruning and the next layer;
- :mod:`structlearn.parallel.checkpoint`: sharded checkpoints (torch.distributed.checkpoint)
  that resume on any number of processes.
"""
from structlearn.parallel.sharded import ShardedSparseCoding, shard_bounds, shard_layer, sharded_fista, world

__all__ = ["ShardedSparseCoding", "shard_bounds", "shard_layer", "sharded_fista", "world"]
