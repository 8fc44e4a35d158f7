"""``structlearn <command>``: discover | search | report | export | bench | ...

Each command is a module in :mod:`structlearn.commands` defining ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; new commands are found automatically.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import structlearn.commands as pkg

    parser = argparse.ArgumentParser(prog="structlearn",
                                     description="Let a network's structure emerge from dense unsupervised training.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"structlearn.commands.{info.name}")
        p = sub.add_parser(info.name.replace("_", "-"), help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def describe_failure(e: BaseException) -> str | None:
    """One line for an expected failure (bad input, the file system, a checkpoint, W&B, a
    database), or ``None`` for a bug (which keeps its traceback)."""
    if isinstance(e, ValueError):
        return str(e).replace("\n", " ")
    if isinstance(e, OSError):
        what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.ENOTDIR: "a path component is not a folder",
                errno.ENOENT: "no such file or folder", errno.EEXIST: "it exists already",
                errno.EISDIR: "it is a folder"}.get(e.errno or -1, e.strerror or type(e).__name__)
        where = f" ({e.filename})" if e.filename else ""
        return f"{what}{where}; nothing was lost: every file is written atomically, resume where it applies"
    module = type(e).__module__ or ""
    if module.startswith(("wandb", "optuna", "sqlalchemy")):
        return f"{module.split('.')[0]}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def main(argv: list[str] | None = None) -> int:
    # Thread policy, before torch (and its OpenMP runtime) loads: threads sleep at a barrier instead
    # of spinning, so a run degrades gracefully beside other jobs (experiments/benchmarks/NOTES.md
    # section 11: slowdown beside a CPU hog 3.43x -> 1.60x, quiet run +9%). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # for commands that relaunch themselves (--nproc)
    try:
        return int(args._run(args) or 0)
    except Exception as e:  # an expected failure is one line (exit 2); --debug shows the traceback
        line = describe_failure(e)
        if line is None or args.debug:
            raise
        print(f"structlearn {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
