"""Objectives register themselves in :data:`OBJECTIVES` on import."""
from structlearn.objectives import sparse_coding  # noqa: F401
from structlearn.objectives.base import OBJECTIVES, Objective  # noqa: F401
