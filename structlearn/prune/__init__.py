"""Pruners (registry "pruner", :mod:`structlearn.prune.base`): each computes a
:class:`~structlearn.models.dense.DenseLayer`'s mask with ``compute_mask(weight, mask, round)``.

Built in: ``magnitude`` (one-shot, global or per unit, threshold or exact target density),
``imp`` (iterative magnitude pruning, geometric density schedule; Frankle and Carbin 2019;
Pellegrini and Biroli 2022), ``beta_lasso`` (Neyshabur 2020 thresholding). Density-sweep
curves and their knee: :mod:`structlearn.prune.sweep`.
"""
from structlearn.prune.base import PRUNERS, Pruner
from structlearn.prune.beta_lasso import BetaLassoPruner
from structlearn.prune.imp import IterativeMagnitudePruner, imp_schedule
from structlearn.prune.magnitude import MagnitudePruner, magnitude_mask

__all__ = ["PRUNERS", "BetaLassoPruner", "IterativeMagnitudePruner", "MagnitudePruner", "Pruner", "imp_schedule",
           "magnitude_mask"]
