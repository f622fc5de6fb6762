"""Argument types shared by the sub-commands: fixes, policies, positive numbers."""

from __future__ import annotations

import argparse

from model.backoff import BackoffPolicy, parse_policy
from model.fixes import UnknownFixError, resolve_fix_name

__all__ = ["add_without", "fix_name", "non_negative_int", "policy", "positive_float", "positive_int"]


def add_without(parser: argparse.ArgumentParser, *, effect: str = "") -> None:
    """Declare ``--without FIX`` (repeatable; a name or F1..F5) on ``parser``: ``args.without``."""
    more = f"; {effect}" if effect else ""
    parser.add_argument("--without", type=fix_name, action="append", default=[], metavar="FIX",
                        help=f"switch a fix off (a name or F1..F5); repeatable{more}")


def fix_name(text: str) -> str:
    """A fix name or F1..F5 alias, as its canonical name."""
    try:
        return resolve_fix_name(text)
    except UnknownFixError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def policy(text: str) -> BackoffPolicy:
    """A backoff policy by name."""
    try:
        return parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
