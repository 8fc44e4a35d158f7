"""7b. Peak memory of the full default ``structlearn discover`` run (several minutes; run by name)."""
from __future__ import annotations

from structlearn.bench import Benchmark

from .scaling import run_full_discover

BENCHMARK = Benchmark("discover_memory", 9, run_full_discover,
                      "peak RSS of the full default `structlearn discover` run (minutes)", default=False)
