"""``sselab token``: print a signed token for a user (or a publisher), or revoke tokens."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from sims.commands._args import positive_float

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``token`` sub-command."""
    parser = sub.add_parser(
        "token", help="print a signed token, or revoke tokens",
        description="Print an HS256 token signed with SSELAB_SECRET (at least 32 bytes; "
                    "SSELAB_INSECURE_DEV_KEY=1 signs with the published development key) for "
                    "the stream of USER or, with --publisher, for publishing to --topic "
                    "patterns. --revoke and --revoke-token write the deny list in Redis "
                    "(SSELAB_REDIS_URL, SSELAB_NAMESPACE).")
    parser.add_argument("user", metavar="USER", nargs="?",
                        help="the token's user (its stream's topic)")
    parser.add_argument("--publisher", action="store_true", help="a publisher token")
    parser.add_argument("--topic", action="append", default=[], metavar="PATTERN",
                        help="a topic a publisher token may publish to: a name or a pattern "
                             "('team-*', '*' for all); repeatable, required with --publisher")
    parser.add_argument("--ttl", type=positive_float, default=3600.0, metavar="SECONDS",
                        help="lifetime in seconds (default 3600; at most SSELAB_MAX_TOKEN_TTL_S)")
    parser.add_argument("--revoke", action="store_true",
                        help="revoke every token of USER issued until now")
    parser.add_argument("--revoke-token", metavar="TOKEN", default=None,
                        help="revoke this one token (and the stream tickets minted from it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the token, or revoke; 2 for bad arguments or a missing key."""
    from service.auth import AuthError, issue_token, verify_token
    from service.config import ConfigError, Settings, cli_secret

    secret = cli_secret("sselab token")
    if secret is None:
        return 2
    if args.revoke or args.revoke_token:
        if args.revoke and not args.user:
            print("sselab token: --revoke needs USER", file=sys.stderr)
            return 2
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"sselab token: {exc}", file=sys.stderr)
            return 2
        token_id, expires = None, None
        if args.revoke_token:
            try:
                principal = verify_token(secret, args.revoke_token)
            except AuthError as exc:
                if exc.message != "token expired":
                    print(f"sselab token: cannot revoke: {exc.message}", file=sys.stderr)
                    return 2
                print("sselab token: that token has expired already", file=sys.stderr)
                return 0
            token_id, expires = principal.token_id, principal.expires_at
        return asyncio.run(_revoke(settings, args.user if args.revoke else None, token_id,
                                   expires))
    if not args.user:
        print("sselab token: USER is required", file=sys.stderr)
        return 2
    max_ttl = float(os.environ.get("SSELAB_MAX_TOKEN_TTL_S", "").strip() or 86400.0)
    if args.ttl > max_ttl:
        print(f"sselab token: --ttl {args.ttl:g} is over the servers' maximum lifetime "
              f"{max_ttl:g} s (SSELAB_MAX_TOKEN_TTL_S); they would refuse it", file=sys.stderr)
        return 2
    if args.publisher and not args.topic:
        print("sselab token: a publisher token needs --topic PATTERN (repeatable; '*' for "
              "every topic)", file=sys.stderr)
        return 2
    if args.topic and not args.publisher:
        print("sselab token: --topic is for publisher tokens (add --publisher)", file=sys.stderr)
        return 2
    try:
        print(issue_token(secret, args.user, role="publisher" if args.publisher else "user",
                          ttl=args.ttl, topics=args.topic or None))
    except ValueError as exc:
        print(f"sselab token: {exc}", file=sys.stderr)
        return 2
    return 0


async def _revoke(settings: object, user: str | None, token_id: str | None,
                  expires: float | None) -> int:
    import redis.asyncio as aioredis

    from service.config import Settings
    from service.revocation import Revocations

    assert isinstance(settings, Settings)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        deny = Revocations(client, settings.namespace, max_ttl=settings.max_token_ttl_s)
        if user is not None:
            await deny.revoke_user(user)
            print(f"revoked every token of {user} issued until now")
        if token_id is not None:
            await deny.revoke_token(token_id, expires_at=expires)
            print(f"revoked token {token_id}")
    except Exception as exc:
        print(f"sselab token: cannot reach Redis: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    return 0
