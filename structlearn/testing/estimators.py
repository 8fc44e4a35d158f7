"""Conformance checks for any registered estimator (entropy or mutual information) and any
registered exporter, plugins included.

Estimators: built with their defaults; an entropy estimator returns a finite 0-d tensor in
nats that does not depend on the order of the samples and is the same on a second call, and
after its own ``normalization`` it is unchanged by the gains that normalization removes
(per feature for ``standardize`` and ``whiten``, per sample for ``unit_norm``).
A mutual-information estimator is symmetric, near 0 for independent
variables and clearly larger for strongly dependent ones.
Exporters: write a valid spec to a file (non-empty, no temporary left), refuse an invalid one.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from structlearn.export import EXPORTERS, make_spec
from structlearn.info.estimators import ESTIMATORS, normalize
from structlearn.registry import load_plugins
from structlearn.testing.objectives import refuses


def estimator_names() -> list[str]:
    load_plugins()
    return ESTIMATORS.available()


def exporter_names() -> list[str]:
    load_plugins()
    return EXPORTERS.available()


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_estimator(name: str) -> None:
    est = ESTIMATORS.create(name)
    assert getattr(est, "kind", None) in ("entropy", "mi"), f"estimator {name!r} must say kind 'entropy' or 'mi'"
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    if est.kind == "entropy":
        z = _gaussian(400, 3, 0)
        h = est(normalize(z, est.normalization))
        assert isinstance(h, torch.Tensor) and h.ndim == 0 and bool(torch.isfinite(h)), h
        assert torch.equal(h, est(normalize(z, est.normalization))), "not deterministic"
        torch.testing.assert_close(est(normalize(z[perm], est.normalization)), h, rtol=1e-9, atol=1e-9)
        gains = {"standardize": torch.tensor([3.0, 0.5, 2.0], dtype=torch.float64),  # per feature
                 "whiten": torch.tensor([3.0, 0.5, 2.0], dtype=torch.float64),
                 "unit_norm": torch.linspace(0.5, 3.0, 400, dtype=torch.float64)[:, None]}  # per sample
        if est.normalization in gains:
            torch.testing.assert_close(est(normalize(z * gains[est.normalization], est.normalization)), h, rtol=1e-6,
                                       atol=1e-6, msg=f"a gain its normalization ({est.normalization}) removes changed it")
        return
    x = _gaussian(400, 1, 2)[:, 0]
    indep, dep = _gaussian(400, 1, 3)[:, 0], x + 0.1 * _gaussian(400, 1, 4)[:, 0]
    i_xy = est(normalize(x, est.normalization), normalize(dep, est.normalization))
    assert isinstance(i_xy, torch.Tensor) and i_xy.ndim == 0 and bool(torch.isfinite(i_xy))
    torch.testing.assert_close(est(normalize(dep, est.normalization), normalize(x, est.normalization)), i_xy,
                               rtol=1e-6, atol=1e-6, msg="MI must be symmetric")
    i_ind = est(normalize(x, est.normalization), normalize(indep, est.normalization))
    assert float(i_ind) < 0.1 < float(i_xy) - 0.5, (float(i_ind), float(i_xy))
    torch.testing.assert_close(est(normalize(x[perm], est.normalization), normalize(dep[perm], est.normalization)), i_xy,
                               rtol=1e-9, atol=1e-9)


SPEC = make_spec((8, 8), [{"type": "conv2d", "out_channels": 4, "kernel_size": [3, 3], "stride": [1, 1],
                           "padding": [1, 1]}, {"type": "activation", "fn": "relu"}, {"type": "dense", "out_features": 5}])


def check_exporter(name: str) -> None:
    write = EXPORTERS.create(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        write(SPEC, path)
        assert path.is_file() and path.stat().st_size > 0, f"exporter {name!r} wrote nothing"
        assert not [p for p in Path(tmp).iterdir() if p.name.endswith(".tmp")], "a temporary file was left"
        refuses(lambda: write({**SPEC, "version": 999}, Path(tmp) / "bad.json"), "version")
        assert not (Path(tmp) / "bad.json").exists()
