"""The shipped pruner conformance suite (structlearn.testing.pruners) over every registered pruner."""
import pytest
import torch

from structlearn.testing import pruners as conformance


@pytest.mark.parametrize("check", list(conformance.CHECKS))
@pytest.mark.parametrize("name", conformance.names())
def test_conformance(name, check):
    conformance.CHECKS[check](name)


def test_the_suite_can_fail():
    """A pruner that regrows weights fails the mask check."""
    from structlearn.prune.base import PRUNERS, Pruner

    @PRUNERS.register("regrow_for_test")
    class Regrow(Pruner):
        name = "regrow_for_test"

        def compute_mask(self, weight, mask, round=0):
            return torch.ones_like(mask)

    try:
        with pytest.raises(AssertionError, match="only remove"):
            conformance.check_masks("regrow_for_test")
    finally:
        PRUNERS._items.pop("regrow_for_test")
