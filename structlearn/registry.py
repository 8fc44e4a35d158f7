"""One generic registry used by every plug-in point (objectives, pruners, estimators).

    OBJECTIVES = Registry("objective")

    @OBJECTIVES.register("sparse_coding")
    class SparseCoding: ...

    OBJECTIVES.create("sparse_coding", layer=..., **cfg)
    OBJECTIVES.available()  # ['sparse_coding', ...]

An unknown name raises a ``ValueError`` that lists the known names.  External
packages register through the ``structlearn.plugins`` entry-point group: each entry
point is a callable that receives nothing and registers what it provides.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")

_PLUGINS_LOADED = False


def load_plugins() -> None:
    """Import every ``structlearn.plugins`` entry point once (idempotent)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="structlearn.plugins"):
        hook = ep.load()
        if callable(hook):
            hook()


class Registry(Generic[T]):
    """A name -> factory map for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items and self._items[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._items:
            load_plugins()
        if name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            )
        return self._items[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def available(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
