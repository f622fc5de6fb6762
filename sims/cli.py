"""The ``sselab`` command line: one sub-command per module in ``sims/commands``.

Each public module in ``sims.commands`` (helpers start with ``_`` and are skipped)
defines ``register(subparsers)``, which adds its sub-command and sets ``func`` on
the parser to a callable taking the parsed arguments and returning the exit
status. Bad flags exit with status 2 and a message naming the flag and what it
accepts (argparse's own behaviour, kept).

Install what you use: the base distribution has no third-party dependency, so a
command's libraries may be missing. That is handled here, once, for every
command (``sims/extras.py`` knows which module belongs to which extra):

- a command module that cannot even be imported is registered as a stand-in
  that takes any arguments, so ``sselab --help`` still lists it;
- running a command whose extra is missing exits 2 and prints the exact
  ``pip install 'sselab[EXTRA]'`` line, whether the import fails at registration
  or inside the command.

An :class:`ImportError` of a module no extra provides is a bug and propagates.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import sims.commands
from sims.extras import install_line, missing_extra

__all__ = ["build_parser", "main"]

#: Exit status of a command whose extra is not installed (argparse's usage error status).
MISSING_EXTRA_STATUS = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="sselab",
        description="Verify that an SSE stack survives failure: check, simulate, report, serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(sims.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"sims.commands.{info.name}")
        except ImportError as exc:
            extra = missing_extra(exc)
            if extra is None:
                raise
            _register_missing(sub, info.name, extra, exc.name or extra)
            continue
        module.register(sub)
    return parser


def _register_missing(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    command: str,
    extra: str,
    module: str,
) -> None:
    """Register ``command`` as a stand-in that says which extra to install."""
    parser = sub.add_parser(command, help=f"(needs {install_line(extra)})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def explain(args: argparse.Namespace) -> int:
        return _missing(command, extra, module)

    parser.set_defaults(func=explain)


def _missing(command: str, extra: str, module: str) -> int:
    """Say which extra ``command`` needs and how to install it; return the exit status."""
    print(f"sselab {command}: needs the '{extra}' extra ({module} is not installed). Install it with:\n"
          f"  {install_line(extra)}", file=sys.stderr)
    return MISSING_EXTRA_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sselab`` with ``argv`` (default: the process's arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run again (check --compiled)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        return _missing(args.command, extra, exc.name or extra)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
