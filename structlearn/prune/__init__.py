"""Pruners (registry "pruner"): each sets a :class:`~structlearn.models.dense.DenseLayer`'s mask.

Protocol (what the trainer calls), for a pruner built as
``PRUNERS.create(name, scope=..., threshold=..., density=..., rounds=..., **params)``:

- ``rounds``: how many pruning events the layer gets (1 = one-shot). The trainer prunes after
  the layer's ``steps`` training steps and again after each ``finetune_steps`` of fine-tuning,
  ``rounds`` times in all, then fine-tunes once more.
- ``__call__(layer, round=0)``: prune round ``round`` (0-based), in place, through
  ``layer.set_mask_``; masks only shrink (the new mask is intersected with the old one).
- ``after_step(layer)`` (optional): called after every fine-tuning step (beta-LASSO's
  continuous shrink-and-threshold).

Built in: ``magnitude`` (one-shot, global or per unit, threshold or exact target density),
``imp`` (iterative magnitude pruning, geometric density schedule; Frankle and Carbin 2019;
Pellegrini and Biroli 2022), ``beta_lasso`` (Neyshabur 2020 thresholding).
"""
from structlearn.prune.magnitude import PRUNERS, MagnitudePruner, magnitude_mask
from structlearn.prune import beta_lasso, imp  # noqa: F401  (imported to register)
from structlearn.prune.imp import IterativeMagnitudePruner, imp_schedule
from structlearn.prune.beta_lasso import BetaLassoPruner

__all__ = ["PRUNERS", "BetaLassoPruner", "IterativeMagnitudePruner", "MagnitudePruner", "imp_schedule",
           "magnitude_mask"]
