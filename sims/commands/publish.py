"""``sselab publish``: publish one event to a user's stream through a running service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["json_value", "register", "run"]

DEFAULT_URL = "http://127.0.0.1:8000"


def json_value(text: str) -> Any:
    """A JSON document."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``publish`` sub-command."""
    parser = sub.add_parser(
        "publish", help="publish an event",
        description="POST /events with a publisher token (from --token, or signed with "
                    "SSELAB_SECRET for USER's topic only); prints the new event's id.")
    parser.add_argument("user", metavar="USER", help="whose stream receives the event")
    parser.add_argument("type", metavar="TYPE", help="the event type, e.g. 'note'")
    parser.add_argument("data", metavar="JSON", type=json_value, help="the event's data, as JSON")
    parser.add_argument("--url", default=os.environ.get("SSELAB_URL", DEFAULT_URL),
                        help=f"the service (default $SSELAB_URL or {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="a publisher token (default: sign one)")
    parser.add_argument("--idempotency-key", default=None, metavar="KEY",
                        help="retry-safe: a second publish with this key answers the first's id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Publish and print the id; 1 if the service refused."""
    import httpx

    from service.auth import issue_token
    from service.config import cli_secret

    token = args.token
    if token is None:
        secret = cli_secret("sselab publish")
        if secret is None:
            return 2
        try:
            token = issue_token(secret, "sselab-cli", role="publisher", ttl=300,
                                topics=[args.user])
        except ValueError as exc:
            print(f"sselab publish: {exc}", file=sys.stderr)
            return 2
    body = {"user": args.user, "type": args.type, "data": args.data}
    headers = {"Authorization": f"Bearer {token}"}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    try:
        response = httpx.post(f"{args.url.rstrip('/')}/events", json=body, headers=headers,
                              timeout=10)
    except httpx.HTTPError as exc:
        print(f"sselab publish: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 201:
        retry = response.headers.get("retry-after")
        print(f"sselab publish: HTTP {response.status_code}: {response.text}"
              + (f" (retry after {retry} s)" if retry else ""), file=sys.stderr)
        return 1
    print(response.json()["id"])
    return 0
