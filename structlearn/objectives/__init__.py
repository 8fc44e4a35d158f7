"""Unsupervised objectives; importing this package registers every built-in one in
:data:`OBJECTIVES` (``OBJECTIVES.available()`` lists them)."""
from structlearn.objectives import (  # noqa: F401  (imported to register)
    beta_lasso,
    group_sparse,
    infomax,
    mcr2,
    rica,
    sparse_coding,
)
from structlearn.objectives.base import OBJECTIVES, Objective

__all__ = ["OBJECTIVES", "Objective"]
