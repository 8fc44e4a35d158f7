"""The package's layering, checked on the source: every import of a structlearn module (at the
top of a file or inside a function) points down this order, never up or sideways:

    pure < domain < trainer/config < workflows < commands

Imports under ``if TYPE_CHECKING:`` are annotations, not imports, and are skipped. Late
(function-level) imports of third-party modules are allowed only for the optional or heavy
dependencies listed in LATE_OK; no library function changes process state (threads,
environment, umask), only the entry points in STATE_OK do."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "structlearn"

LAYERS = {
    "pure": ["registry", "params", "runtime", "io", "functional"],
    "domain": ["models", "data", "prune", "objectives", "info", "structure", "redunet", "metrics", "viz", "export",
               "supervised", "parallel"],
    "trainer/config": ["config", "configs", "build", "loggers", "callbacks", "train"],
    "workflows": ["runs", "depth", "testing"],
    "commands": ["bench", "commands", "cli", "__main__"],
}
ORDER = [unit for units in LAYERS.values() for unit in units]
LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}

# third-party modules a function may import late: optional, or slow to import (the standard
# library may always be imported late)
LATE_OK = {"wandb", "optuna", "onnx", "onnxscript", "matplotlib", "sklearn", "tqdm", "threadpoolctl", "psycopg2",
           "sqlalchemy", "skimage", "scipy", "PIL", "yaml", "torch",
           "numpy"}  # numpy: the CIFAR unpickler probes numpy._core and numpy.core
# (file, function) pairs allowed to change process state: entry points only
STATE_OK = {("commands/__init__.py", "set_threads"),
            ("commands/bench.py", "_limit_threads"), ("depth/study.py", "_worker_entry"), ("cli.py", "main"),
            # W&B reads its core-log, staging and cache folders from the environment alone: set for the
            # duration of one W&B call, only where the user has not set them, and restored at once
            ("loggers.py", "wandb_folders"),
            # a torchrun entry point (python -m structlearn.testing.sharded_check): one thread per rank
            ("testing/sharded_check.py", "main")}
STATE_CALLS = ("set_num_threads", "set_num_interop_threads", "umask", "putenv")


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "structlearn" or len(parts) < 2:
        return None
    return parts[1]


def walk(tree: ast.AST):
    """(node, enclosing function name or None, under TYPE_CHECKING) for every node."""
    stack = [(tree, None, False)]
    while stack:
        node, fn, tc = stack.pop()
        yield node, fn, tc
        for child in ast.iter_child_nodes(node):
            child_fn = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            child_tc = tc or (isinstance(node, ast.If) and child in node.body and "TYPE_CHECKING" in ast.unparse(node.test))
            stack.append((child, child_fn, child_tc))


def modules():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        unit = rel.parts[0][:-3] if len(rel.parts) == 1 else rel.parts[0]
        yield p, rel.as_posix(), unit, ast.parse(p.read_text())


def imports(tree):
    for node, fn, tc in walk(tree):
        if tc:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, fn, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, fn, node.lineno


def test_every_unit_has_a_layer():
    units = {unit for _, _, unit, _ in modules()} - {"__init__"}
    assert units <= set(ORDER), f"place these in LAYERS: {sorted(units - set(ORDER))}"


def test_imports_point_down():
    upward = []
    for _, rel, unit, tree in modules():
        if unit == "__init__":
            continue
        for mod, fn, line in imports(tree):
            target = unit_of(mod)
            if target is None or target == unit:
                continue
            if target not in ORDER or ORDER.index(target) >= ORDER.index(unit):
                upward.append(f"{rel}:{line} ({LAYER_OF[unit]} {unit}) imports {mod} "
                              f"({LAYER_OF.get(target, '?')} {target}){' inside ' + fn if fn else ''}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_domain_packages_never_import_trainer_config_or_viz():
    domain = set(LAYERS["pure"]) | {"models", "data", "prune", "objectives", "info", "structure"}
    banned = {"runs", "train", "config", "viz", "callbacks", "build"}
    bad = [f"{rel}: {mod}" for _, rel, unit, tree in modules() if unit in domain
           for mod, _, _ in imports(tree) if unit_of(mod) in banned]
    assert not bad, bad


def test_late_third_party_imports_are_listed():
    bad = []
    for _, rel, unit, tree in modules():
        for mod, fn, line in imports(tree):
            top = mod.split(".")[0]
            if fn is not None and unit_of(mod) is None and top not in LATE_OK and top not in sys.stdlib_module_names:
                bad.append(f"{rel}:{line} imports {mod} inside {fn}")
    assert not bad, "late imports of modules not in LATE_OK:\n" + "\n".join(bad)


def test_only_entry_points_change_process_state():
    bad = []
    for _, rel, unit, tree in modules():
        for node, fn, _ in walk(tree):
            src = ast.unparse(node) if isinstance(node, (ast.Call, ast.Assign, ast.AugAssign)) else ""
            changes = (isinstance(node, ast.Call) and any(f".{c}(" in src or src.startswith(f"{c}(") for c in STATE_CALLS)) \
                or (isinstance(node, ast.Call) and "os.environ" in src
                    and any(m in src for m in (".setdefault(", ".update(", ".pop("))) \
                or (isinstance(node, ast.Assign) and "os.environ[" in src.split("=")[0])
            if changes and (rel, fn) not in STATE_OK:
                bad.append(f"{rel} in {fn}: {src[:80]}")
    assert not bad, "process state changed outside an entry point:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("probe", ["torch.set_num_threads(2)", "os.environ['X'] = '1'", "os.umask(0)",
                                   "os.environ.setdefault('X', '1')"])
def test_the_state_check_can_fail(probe, tmp_path, monkeypatch):
    """The detector sees each kind of state change (so the test above can fail)."""
    tree = ast.parse(f"import os, torch\ndef f():\n    {probe}\n")
    hits = []
    for node, fn, _ in walk(tree):
        src = ast.unparse(node) if isinstance(node, (ast.Call, ast.Assign)) else ""
        if (isinstance(node, ast.Call) and any(f".{c}(" in src for c in STATE_CALLS)) or \
                (isinstance(node, ast.Call) and "os.environ" in src and ".setdefault(" in src) or \
                (isinstance(node, ast.Assign) and "os.environ[" in src.split("=")[0]):
            hits.append(fn)
    assert hits == ["f"]
