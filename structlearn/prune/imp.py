"""Iterative magnitude pruning (IMP): prune a little, fine-tune, repeat.

Frankle and Carbin (ICLR 2019, "The lottery ticket hypothesis") prune a fixed share ``p`` of
the remaining weights per round and retrain in between (optionally rewinding the kept weights
to their values at an early step: Frankle, Dziugaite, Roy and Carbin, ICML 2020); Pellegrini
and Biroli (ICML 2022) found that IMP on a fully connected network makes local receptive
fields emerge. Here round ``r = 0 .. R-1`` keeps the target density

    d_r = d ** ((r + 1) / R)         (geometric: each round keeps d ** (1/R) of what is left)

so round ``R - 1`` lands on the final density ``d`` exactly. Each round is a magnitude prune
(:func:`structlearn.prune.magnitude.magnitude_mask`, per unit or global) of the weights the
previous rounds kept. Fine-tuning and rewinding are the trainer's (``prune.finetune_steps``,
``prune.rewind_step``).
"""
from __future__ import annotations

import torch

from structlearn.objectives.base import check_range
from structlearn.prune.magnitude import PRUNERS, magnitude_mask


def imp_schedule(density: float, rounds: int) -> list[float]:
    """Target density after each round: ``[d ** ((r + 1) / R) for r in range(R)]``; the last is ``d``."""
    check_range("density", density, 0, 1, low_open=True)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} out of range; allowed: integers >= 1")
    return [density if r + 1 == rounds else density ** ((r + 1) / rounds) for r in range(rounds)]


@PRUNERS.register("imp")
class IterativeMagnitudePruner:
    """``rounds`` magnitude prunes down to the final ``density`` (module docstring).

    Args:
        scope: ``"unit"`` (each unit keeps its own top share) or ``"global"`` (one ranking).
        threshold: must be ``None``: IMP needs a target density.
        density: final share of weights kept, in (0, 1].
        rounds: pruning rounds ``R >= 1`` (``R = 1`` is one-shot magnitude pruning).
    """

    def __init__(self, scope: str = "unit", threshold: float | None = None, density: float | None = None,
                 rounds: int = 5) -> None:
        if threshold is not None or density is None:
            raise ValueError("pruner 'imp' needs a final density in (0, 1] and no threshold; "
                             "set prune.density and prune.threshold: null")
        magnitude_mask(torch.ones(1, 2), scope=scope, density=density)  # validates scope and density
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"prune.rounds={rounds!r} out of range; allowed: integers >= 1")
        self.scope, self.density, self.rounds = scope, float(density), rounds
        self.schedule = imp_schedule(self.density, rounds)

    def density_at(self, round: int) -> float:
        """Target density after round ``round`` (0-based)."""
        if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round < self.rounds:
            raise ValueError(f"round={round!r} out of range; allowed: integers in [0, {self.rounds - 1}]")
        return self.schedule[round]

    def __call__(self, layer, round: int = 0) -> None:
        layer.set_mask_(magnitude_mask(layer.weight, layer.mask, scope=self.scope, density=self.density_at(round)))
