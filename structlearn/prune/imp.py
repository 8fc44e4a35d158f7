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

from torch import Tensor

from structlearn.params import Interval, Options, OrNone, Param, check_range
from structlearn.prune.base import PRUNERS, Pruner
from structlearn.prune.magnitude import SCOPES, magnitude_mask


def imp_schedule(density: float, rounds: int) -> list[float]:
    """Target density after each round: ``[d ** ((r + 1) / R) for r in range(R)]``; the last is ``d``."""
    check_range("density", density, 0, 1, low_open=True)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} out of range; allowed: integers >= 1")
    return [density if r + 1 == rounds else density ** ((r + 1) / rounds) for r in range(rounds)]


@PRUNERS.register("imp")
class IterativeMagnitudePruner(Pruner):
    """``rounds`` magnitude prunes down to the final ``density`` (module docstring)."""

    name = "imp"
    example = {"density": 0.3, "rounds": 3}
    scope = Param("unit", Options(SCOPES), "unit: each unit keeps its own top share; global: one ranking")
    density = Param(None, OrNone(Interval(float, 0, 1, closed="right")), "final share of weights kept (required)")
    rounds = Param(5, Interval(int, 1, None), "pruning rounds R (1 = one-shot)")

    def _check_joint(self) -> None:
        if self.density is None:
            raise ValueError("pruner 'imp' needs a final density in (0, 1]; set prune.density")
        self.schedule = imp_schedule(self.density, self.rounds)

    def density_at(self, round: int) -> float:
        """Target density after round ``round`` (0-based)."""
        self.check_round(round)
        return self.schedule[round]

    def compute_mask(self, weight: Tensor, mask: Tensor, round: int = 0) -> Tensor:
        return magnitude_mask(weight, mask, scope=self.scope, density=self.density_at(round))
