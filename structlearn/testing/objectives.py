"""Conformance checks for any registered objective (the built-in ones and plugins').

Each ``check_*`` raises ``AssertionError`` (or the objective's own error) when the objective
breaks the protocol of :mod:`structlearn.objectives.base`. They run on a square 16-unit layer
over 4x4 "images" of Laplacian data, in float64 unless said otherwise; bad and retuned
hyperparameter values are derived from the objective's declared parameter table, so a new
objective needs no test data of its own.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from structlearn.models.dense import DenseLayer
from structlearn.objectives.base import OBJECTIVES, Objective
from structlearn.params import Interval, Options, OrNone, declared_params
from structlearn.registry import load_plugins

SHAPE = (4, 4)  # 16 inputs and 16 units: square, so complete-only objectives (infomax) accept it
N_IN = 16


def names() -> list[str]:
    """Every registered objective, plugins included."""
    load_plugins()
    return OBJECTIVES.available()


def data(dtype: torch.dtype = torch.float64, n: int = 48, seed: int = 123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, N_IN, generator=g, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).to(dtype)  # Laplacian: non-Gaussian


def build(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, **params: Any) -> Objective:
    layer = DenseLayer(N_IN, N_IN, SHAPE, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return OBJECTIVES.create(name, layer, generator=torch.Generator().manual_seed(seed + 1), **params)


def bad_values(constraint: Any) -> list[Any]:
    """Values ``constraint`` must refuse."""
    if isinstance(constraint, OrNone):
        return bad_values(constraint.inner)
    if isinstance(constraint, Interval):
        out: list[Any] = [float("inf"), float("nan"), "x"]
        if constraint.low is not None:
            out.append(constraint.low - 1)
        if constraint.high is not None:
            out.append(constraint.high + 1)
        if constraint.type is int:
            out.append(2.5)
        return out
    if isinstance(constraint, Options):
        return ["__not_an_option__", 1] if set(constraint.values) == {True, False} else ["__not_an_option__"]
    return []


def other_value(constraint: Any, current: Any) -> Any:
    """A valid value different from ``current`` (``None`` when there is none)."""
    if isinstance(constraint, OrNone):
        return other_value(constraint.inner, current)
    if isinstance(constraint, Options):
        return next((v for v in constraint.values if v != current), None)
    if isinstance(constraint, Interval):
        base = current if current is not None else (constraint.low or 0) + 1
        for cand in (base * 0.5, base * 2, base + 1, base - 1):
            cand = int(round(cand)) if constraint.type is int else float(cand)
            try:
                if constraint.check("v", cand) != current:
                    return constraint.check("v", cand)
            except ValueError:
                continue
    return None


def refuses(fn: Callable[[], Any], words: str) -> None:
    """``fn()`` must raise a ``ValueError`` whose message contains ``words``."""
    try:
        fn()
    except ValueError as e:
        assert words in str(e), f"error {str(e)!r} does not name {words!r}"
        return
    raise AssertionError(f"a bad value was accepted (expected an error naming {words!r})")


def _finite_metrics(metrics: dict[str, Any]) -> None:
    assert "loss" in metrics, "train_step must report a loss"
    for key, v in metrics.items():
        assert isinstance(v, torch.Tensor) and v.ndim == 0, f"metric {key!r} must be a 0-d tensor"
        assert bool(torch.isfinite(v)), (key, v)


def check_steps(name: str, dtype: torch.dtype = torch.float64) -> None:
    """Steps change the weights and keep dtype and device; encode/decode/loss have the right shapes."""
    obj = build(name, dtype)
    x = data(dtype)
    before = obj.layer.weight.detach().clone()
    for _ in range(3):
        _finite_metrics(obj.train_step(x))
    w = obj.layer.weight
    assert w.dtype == dtype and w.device == x.device
    assert not torch.equal(w.detach(), before), "train_step did not change the weights"
    z = obj.encode(x)
    assert z.shape == (x.shape[0], N_IN) and z.dtype == dtype and bool(torch.isfinite(z).all())
    xr = obj.reconstruct(x)
    if xr is not None:
        assert xr.shape == x.shape and xr.dtype == dtype
        torch.testing.assert_close(obj.decode(z), xr)
    loss = obj.loss(x)
    assert loss.ndim == 0 and loss.dtype == dtype and bool(torch.isfinite(loss))


def check_split(name: str) -> None:
    """``update(statistics(x))`` is ``train_step(x)``; the declared mean statistics of two
    half-batches average to the full batch's."""
    a, b = build(name), build(name)
    x = data()
    ma, mb = a.train_step(x), b.update(b.statistics(x))
    assert torch.equal(a.layer.weight, b.layer.weight) and all(torch.equal(ma[k], mb[k]) for k in ma)
    keys = a.mean_statistics()
    if not keys:
        return
    full, h1, h2 = a.statistics(x), b.statistics(x[:24]), b.statistics(x[24:])
    for k in keys:
        torch.testing.assert_close((h1[k] + h2[k]) / 2, full[k], rtol=1e-9, atol=1e-12, msg=f"statistic {k!r}")


def interrupted_and_resumed(make: Callable[[], Objective], batches: list[torch.Tensor],
                            stop: int) -> tuple[Objective, Objective]:
    """``make()`` trained on every batch, and a second ``make()`` trained on the first ``stop``,
    its state dict loaded into a third that trains on the rest: (uninterrupted, resumed)."""
    whole = make()
    for xb in batches:
        whole.train_step(xb)
    first = make()
    for xb in batches[:stop]:
        first.train_step(xb)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    for xb in batches[stop:]:
        resumed.train_step(xb)
    return whole, resumed


def check_gradients(name: str) -> None:
    """Gradient objectives own ``self.optimizer`` and their loss reaches every trainable parameter."""
    obj = build(name)
    params = [p for p in obj.parameters() if p.requires_grad]
    assert params, "an objective trains at least the layer weight"
    if not obj.uses_gradients:
        return
    assert getattr(obj, "optimizer", None) is not None, "gradient objectives own self.optimizer"
    obj.loss(data()).backward()
    for p in params:
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0)


def check_seeded(name: str) -> None:
    """The same seed gives the same weights and metrics; another seed does not."""
    runs = []
    for _ in range(2):
        obj = build(name, seed=5)
        ms = [obj.train_step(data()) for _ in range(3)]
        runs.append((obj.layer.weight.detach().clone(), ms[-1]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    other = build(name, seed=6)
    other.train_step(data())
    assert not torch.equal(other.layer.weight, runs[0][0])


def check_mask(name: str) -> None:
    """Pruned weights stay exactly zero, gradients included; masks never regrow."""
    obj = build(name)
    mask = torch.rand(N_IN, N_IN, generator=torch.Generator().manual_seed(9)) < 0.6
    obj.layer.set_mask_(mask)
    x = data()
    for _ in range(4):
        obj.train_step(x)
    assert bool((obj.layer.weight[~mask] == 0).all())
    assert not bool((obj.layer.mask & ~mask).any()), "an objective may prune more, never unprune"
    if obj.uses_gradients:
        opt: Any = getattr(obj, "optimizer")
        opt.zero_grad()
        obj.loss(x).backward()
        grad = obj.layer.weight.grad
        assert grad is not None and bool((grad[~mask] == 0).all())


def check_resume(name: str) -> None:
    """State dict + optimizer state continue a run identically."""
    x = data()
    a = build(name)
    for _ in range(2):
        a.train_step(x)
    state, opt = copy.deepcopy(a.state_dict()), copy.deepcopy(a.optimizer_state())
    b = build(name, seed=11)
    b.load_state_dict(state)
    b.load_optimizer_state(opt)
    a.train_step(x)
    b.train_step(x)
    assert torch.equal(a.layer.weight, b.layer.weight)


def check_params(name: str) -> None:
    """Every declared parameter refuses bad values at construction and in ``set_params`` with
    an error naming it; unknown names are refused; each changeable parameter can be retuned
    mid-run (``lr`` reaches the optimizer) and training goes on with finite metrics."""
    table = declared_params(type(build(name)))
    assert table, f"objective {name!r} declares no parameters (use structlearn.params.Param)"
    obj = build(name)
    x = data()
    obj.train_step(x)
    for k, p in table.items():
        for bad in bad_values(p.constraint):
            refuses(lambda: build(name, **{k: bad}), k)
            refuses(lambda: obj.set_params(**{k: bad}), k)
    refuses(lambda: obj.set_params(not_a_hyperparameter=1.0), "no parameter")
    numeric = {}
    for k, p in table.items():
        if k in obj.fixed_params:
            continue
        new = other_value(p.constraint, getattr(obj, k))
        if new is None:
            continue
        old = getattr(obj, k)
        try:
            obj.set_params(**{k: new})
        except ValueError:  # a joint constraint (e.g. labels for MCR^2) refuses this value here
            continue
        assert getattr(obj, k) == new, f"set_params did not change {k!r}"
        opt = getattr(obj, "optimizer", None)
        if k == "lr" and opt is not None:
            assert opt.param_groups[0]["lr"] == new
        obj.set_params(**{k: old})
        if isinstance(p.constraint, Interval):
            numeric[k] = new
    obj.set_params(**numeric)
    _finite_metrics(obj.train_step(x))


CHECKS: dict[str, Callable[[str], None]] = {
    "steps": check_steps, "split": check_split, "gradients": check_gradients, "seeded": check_seeded,
    "mask": check_mask, "resume": check_resume, "params": check_params,
}


def check_objective(name: str) -> None:
    """Every check above, on objective ``name``."""
    for check in CHECKS.values():
        check(name)
    check_steps(name, torch.float32)
