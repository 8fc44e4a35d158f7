"""Workflows over run folders: the only code that opens them.

:class:`Run` reads a run folder once (config, data, layers, structure); the workflows build on
it: :mod:`~structlearn.runs.discover` (train and read out), :mod:`~structlearn.runs.readout`
(``structure.json``), :mod:`~structlearn.runs.sweep` (density sweeps), and
:mod:`~structlearn.runs.export` (architecture specs).
"""
from structlearn.runs.run import Run, new_run_dir, safe_name

__all__ = ["Run", "new_run_dir", "safe_name"]
