"""CLI commands: one module each (see :mod:`structlearn.cli`)."""
