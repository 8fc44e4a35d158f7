"""Declared parameters: one constraint table per component, checked in one place.

Every component (objective, pruner, config section) declares each hyperparameter once, as a
:class:`Param` (default, constraint, one line of doc), the way scikit-learn declares
``_parameter_constraints``. Construction, mid-run changes (``set_params``), the config's
error messages and the generated docs (:func:`describe`) all read that one table::

    class MyObjective(Objective):
        lam = Param(0.5, Interval(float, 0, None, closed="neither"), "L1 weight")
        n_iter = Param(50, Interval(int, 1, None), "FISTA iterations")

Constraints:

- :class:`Interval` ``(type, low, high, closed)``: a finite ``int`` or ``float`` in the range
  (``None`` = unbounded on that side; infinity and NaN are always refused, and an ``int``
  must be integral: ``2.0`` is accepted as 2, ``2.5`` is refused);
- :class:`Options` ``(values)``: one of a fixed set (strings, booleans, small integers);
- :class:`Boolean`: ``True`` or ``False``;
- :class:`OrNone` ``(inner)``: ``None`` or what ``inner`` accepts.

A failed check raises ``ValueError("<name>=<value> ...; allowed: <description>")``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

__all__ = ["Boolean", "Constraint", "Interval", "Options", "OrNone", "Param", "check_choice", "check_params",
           "check_range", "declared_params", "describe"]


class Constraint(Protocol):
    def check(self, name: str, value: Any) -> Any:
        """The value, cast to its declared type; ``ValueError`` naming ``name`` when refused."""

    def describe(self) -> str:
        """What is allowed, for messages and docs."""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


@dataclass(frozen=True)
class Interval:
    """A finite number of ``type`` (``int`` or ``float``) in ``[low, high]``; ``closed`` is
    ``"both"``, ``"left"`` (``[low, high)``), ``"right"`` (``(low, high]``) or ``"neither"``."""

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def describe(self) -> str:
        lo_b = "[" if self.closed in ("both", "left") and self.low is not None else "("
        hi_b = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        lo = "-inf" if self.low is None else _num(self.low)
        hi = "inf" if self.high is None else _num(self.high)
        kind = "integers" if self.type is int else "finite numbers"
        return f"{kind} in {lo_b}{lo}, {hi}{hi_b}"

    def check(self, name: str, value: Any) -> Any:
        allowed, given = self.describe(), value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or hasattr(value, "shape"):
            try:  # numpy / 0-d torch scalars
                if isinstance(value, bool) or getattr(value, "ndim", 0) != 0:
                    raise TypeError
                value = value.item() if hasattr(value, "item") else value
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise TypeError
            except (TypeError, ValueError, AttributeError):
                raise ValueError(f"{name}={value!r} is not a number; allowed: {allowed}") from None
        if not math.isfinite(value):
            raise ValueError(f"{name}={given!r} is not finite; allowed: {allowed}")
        if self.type is int:
            if float(value) != int(value):
                raise ValueError(f"{name}={given!r} is not an integer; allowed: {allowed}")
            value = int(value)
        else:
            value = float(value)
        bad = False
        if self.low is not None:
            bad |= value < self.low if self.closed in ("both", "left") else value <= self.low
        if self.high is not None:
            bad |= value > self.high if self.closed in ("both", "right") else value >= self.high
        if bad:
            raise ValueError(f"{name}={given!r} out of range; allowed: {allowed}")
        return value


@dataclass(frozen=True)
class Options:
    """One of ``values`` (compared with ``==``; ``True`` never matches ``1``)."""

    values: tuple

    def describe(self) -> str:  # booleans as YAML writes them
        return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)

    def check(self, name: str, value: Any) -> Any:
        for v in self.values:
            if type(v) is type(value) and v == value or (isinstance(v, str) and v == value):
                return v
        raise ValueError(f"{name}={value!r} is not allowed; allowed: {self.describe()}")


def Boolean() -> Options:  # noqa: N802  (reads as a constraint, like the classes)
    """``True`` or ``False`` (never ``1`` or ``"yes"``)."""
    return Options((True, False))


@dataclass(frozen=True)
class OrNone:
    inner: Any

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"

    def check(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner.check(name, value)


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter: its default, its constraint and one line of doc. As a
    class attribute of a component it is a descriptor: instances read and write their own
    value (set at construction by :func:`check_params`)."""

    default: Any
    constraint: Any
    doc: str = ""
    name: str = field(default="", init=False, compare=False)  # set by __set_name__

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get("_params", {}).get(self.name, self.default)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__.setdefault("_params", {})[self.name] = self.constraint.check(self.name, value)


def declared_params(cls: Any) -> dict[str, Param]:
    """Every :class:`Param` of ``cls`` and its bases, in declaration order (bases first)."""
    out: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for k, v in vars(klass).items():
            if isinstance(v, Param):
                out[k] = v
            elif k in out:  # a subclass replaced the declaration with something else
                del out[k]
    return out


def check_params(owner: str, table: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against ``table`` (name -> :class:`Param` or constraint); unknown names
    raise a ``ValueError`` listing the allowed ones. Returns the cast values."""
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise ValueError(f"{owner} has no parameter {', '.join(map(repr, unknown))}; allowed: {', '.join(table) or 'none'}")
    out = {}
    for k, v in params.items():
        c = table[k]
        try:
            out[k] = (c.constraint if isinstance(c, Param) else c).check(k, v)
        except ValueError as e:
            doc = f" ({c.doc})" if isinstance(c, Param) and c.doc else ""
            raise ValueError(f"{owner}: {e}{doc}") from None
    return out


def describe(cls_or_table: Any) -> str:
    """Markdown lines ``- name (default): allowed; doc`` of a component's declared parameters."""
    table = declared_params(cls_or_table) if isinstance(cls_or_table, type) else dict(cls_or_table)
    return "\n".join(f"- `{k}` (default {p.default!r}): {p.constraint.describe()}; {p.doc}".rstrip("; ")
                     for k, p in table.items())


# ----------------------------------------------------------------------------- one-off checks

def check_range(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    """Check one number against a range (see :class:`Interval`); returns it cast."""
    closed = {(False, False): "both", (False, True): "left", (True, False): "right", (True, True): "neither"}
    return Interval(int if integer else float, low, high, closed[(low_open, high_open)]).check(name, value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check one value against a fixed set (see :class:`Options`)."""
    return Options(tuple(choices)).check(name, value)
