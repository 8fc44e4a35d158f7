"""Training one layer across processes with torch.distributed (issue 11, first part).

:mod:`structlearn.parallel.sharded`: the dictionary's atoms sharded across ranks, FISTA with one
all-reduce of the reconstruction per iteration, local gradient dictionary updates.
"""
from structlearn.parallel.sharded import ShardedSparseCoding, shard_bounds, shard_layer, sharded_fista, world

__all__ = ["ShardedSparseCoding", "shard_bounds", "shard_layer", "sharded_fista", "world"]
