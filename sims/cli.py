"""The ``sselab`` command line: one sub-command per module in ``sims/commands``.

Each module in ``sims.commands`` defines ``register(subparsers)``, which adds its
sub-command and sets ``func`` on the parser to a callable taking the parsed
arguments and returning the exit status. Bad flags exit with status 2 and a
message naming the flag and what it accepts (argparse's own behaviour, kept).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import sims.commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="sselab",
        description="Verify that an SSE stack survives failure: check, simulate, report, serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(sims.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sims.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sselab`` with ``argv`` (default: the process's arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    raise SystemExit(main())
