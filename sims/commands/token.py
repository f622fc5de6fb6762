"""``sselab token``: print a signed token for a user (or a publisher)."""

from __future__ import annotations

import argparse
import os

from sims.commands._args import positive_float

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``token`` sub-command."""
    parser = sub.add_parser(
        "token", help="print a signed token",
        description="Print an HS256 token signed with SSELAB_SECRET (the development key if "
                    "unset), for the stream of USER or, with --publisher, for publishing.")
    parser.add_argument("user", metavar="USER", help="the token's user (its stream's topic)")
    parser.add_argument("--publisher", action="store_true", help="a publisher token")
    parser.add_argument("--ttl", type=positive_float, default=3600.0, metavar="SECONDS",
                        help="lifetime in seconds (default 3600)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the token."""
    from service.auth import issue_token
    from service.config import DEV_SECRET

    secret = os.environ.get("SSELAB_SECRET", "").strip() or DEV_SECRET
    print(issue_token(secret, args.user, role="publisher" if args.publisher else "user",
                      ttl=args.ttl))
    return 0
