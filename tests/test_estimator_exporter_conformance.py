"""The shipped conformance suites for estimators and exporters, over every registered one (plugins included)."""
import pytest

from structlearn.testing import estimators as suite


@pytest.mark.parametrize("name", suite.estimator_names())
def test_estimator(name):
    suite.check_estimator(name)


@pytest.mark.parametrize("name", suite.exporter_names())
def test_exporter(name):
    suite.check_exporter(name)


def test_the_estimator_suite_can_fail():
    from structlearn.info.estimators import ESTIMATORS

    @ESTIMATORS.register("order_dependent_for_test")
    class OrderDependent:
        kind, normalization = "entropy", "standardize"

        def __call__(self, z):
            return z[0].sum()  # depends on which sample comes first

    try:
        with pytest.raises(AssertionError):
            suite.check_estimator("order_dependent_for_test")
    finally:
        ESTIMATORS._items.pop("order_dependent_for_test")
