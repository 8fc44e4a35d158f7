"""CLI commands: one module each (see :mod:`structlearn.cli`). Entry points are the only code
that changes process state (torch threads, signals)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def deferred_signals(what: str = "the run") -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the yielded flag instead of interrupting: the trainer stops at its
    next step boundary and checkpoints there (resuming is then exact). A second signal aborts at
    once with ``KeyboardInterrupt``, leaving the last checkpoint. The old handlers come back on exit."""
    flag = threading.Event()
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in sigs}

    def handler(signum: int, frame: object) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()
        print(f"\n{signal.Signals(signum).name}: stopping {what} at the next step boundary (again to abort now)",
              file=sys.stderr, flush=True)

    for s in sigs:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def add_config_arguments(p: argparse.ArgumentParser, default: str, what: str, example: str) -> None:
    """``CONFIG`` (a YAML path or a bundled config's name), ``--set KEY=VALUE`` and ``--out``."""
    p.add_argument("config", nargs="?", help=f"{what}: a YAML path or a bundled config's name (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a field by dotted path, e.g. {example} (repeatable)")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")


def set_threads(n: int) -> None:
    """torch CPU threads for this process (0 keeps torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)
