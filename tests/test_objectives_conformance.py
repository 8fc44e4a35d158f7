"""The shipped conformance suite (structlearn.testing.objectives) over every registered
objective, plugins included: finite metrics, dtype and device kept, statistics/update split,
seeded runs identical, pruned weights exactly zero, resume identical, declared parameters."""
import pytest
import torch

from structlearn.testing import objectives as conformance

NAMES = conformance.names()


@pytest.mark.parametrize("check", [c for c in conformance.CHECKS if c != "steps"])
@pytest.mark.parametrize("name", NAMES)
def test_conformance(name, check):
    conformance.CHECKS[check](name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps(name, dtype):
    conformance.check_steps(name, dtype)


def test_the_suite_can_fail():
    """An objective that breaks the protocol (its statistics are not shard means although it
    says so; it ignores the mask) fails the suite's checks."""
    from structlearn.objectives.base import OBJECTIVES
    from structlearn.objectives.sparse_coding import SparseCoding

    class Broken(SparseCoding):
        name = "broken_for_test"

        def statistics(self, x):
            s = super().statistics(x)
            s["zz"] = s["zz"] * x.shape[0]  # a sum, not a mean
            return s

        def update(self, stats):
            out = super().update(stats)
            self.layer.weight.data.add_(1e-3)  # touches pruned weights
            return out

    OBJECTIVES.register("broken_for_test")(Broken)
    try:
        with pytest.raises(AssertionError):
            conformance.check_split("broken_for_test")
        with pytest.raises(AssertionError):
            conformance.check_mask("broken_for_test")
    finally:
        OBJECTIVES._items.pop("broken_for_test")
