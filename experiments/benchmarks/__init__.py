"""Benchmark definitions for ``structlearn bench`` (harness: :mod:`structlearn.bench`).

One module per benchmark, each exposing ``BENCHMARK = Benchmark(name, order, run, summary)``;
modules starting with ``_`` hold shared helpers. Results and profiles: ``NOTES.md``.
"""
