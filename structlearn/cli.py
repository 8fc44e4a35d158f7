"""``structlearn <command>``: discover | search | report | export | bench | ...

Each command is a module in :mod:`structlearn.commands` defining ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; new commands are found automatically.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import structlearn.commands as pkg

    parser = argparse.ArgumentParser(prog="structlearn",
                                     description="Let a network's structure emerge from dense unsupervised training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"structlearn.commands.{info.name}")
        p = sub.add_parser(info.name.replace("_", "-"), help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ValueError as e:  # bad input: one clear line, no traceback
        print(f"structlearn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
