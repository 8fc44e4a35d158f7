"""The experiment configs that ship with structlearn (package data), by name.

``experiments/<name>.yaml`` in the repository are links to these files, so a command run from
a checkout and one run after ``pip install structlearn`` resolve the same config.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def available() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A YAML path: an existing file as given, else a bundled config by name (``mosaic_sparse``,
    ``mosaic_sparse.yaml`` or ``experiments/mosaic_sparse.yaml``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    bundled = resources.files(__name__) / f"{stem}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    raise ValueError(f"config file {str(name_or_path)!r} does not exist; allowed: a YAML path or a bundled config "
                     f"({', '.join(available())})")
