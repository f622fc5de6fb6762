"""``sselab listen``: run the resilient client and print events and status changes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from model.client import ClientConfig, Status
from model.core import EventId, RemoteProtocolError
from sims.commands._args import positive_float, positive_int

__all__ = ["event_id", "register", "run"]

DEFAULT_URL = "http://127.0.0.1:8000"


def event_id(text: str) -> EventId:
    """An event id ``EPOCH-SEQ``."""
    try:
        return EventId.parse(text)
    except RemoteProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``listen`` sub-command."""
    parser = sub.add_parser(
        "listen", help="stream a user's events",
        description="Run service.client.EventStreamClient (model.client decides reconnects, "
                    "backoff, heartbeats and recovery) and print each event and status change.")
    parser.add_argument("--user", default="demo", help="whose stream (default 'demo')")
    parser.add_argument("--url", default=os.environ.get("SSELAB_URL", DEFAULT_URL),
                        help=f"the service (default $SSELAB_URL or {DEFAULT_URL})")
    parser.add_argument("--last-event-id", type=event_id, default=None, metavar="ID",
                        help="resume after this id (EPOCH-SEQ)")
    parser.add_argument("--token", default=None, help="a token (default: sign one for --user)")
    parser.add_argument("--heartbeat-timeout", type=positive_float, default=10.0, metavar="S",
                        help="seconds of silence before reconnecting (default 10)")
    parser.add_argument("--max-attempts", type=positive_int, default=50,
                        help="attempts before 'failed' (default 50)")
    parser.add_argument("--count", type=positive_int, default=None,
                        help="exit after this many events")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Listen until interrupted (or --count events)."""
    return asyncio.run(_listen(args))


async def _listen(args: argparse.Namespace) -> int:
    from service.auth import issue_token
    from service.client import ClientEvent, EventStreamClient, SnapshotData
    from service.config import cli_secret

    fixed: str | None = args.token
    secret = "" if fixed else cli_secret("sselab listen")
    if secret is None:
        return 2

    def token() -> str:  # a fresh token on every reconnect
        return fixed or issue_token(secret, args.user, ttl=3600)

    received = 0
    done = asyncio.Event()

    def on_event(event: ClientEvent) -> None:
        nonlocal received
        print(f"event {event.id} {event.type} {json.dumps(event.data)}", flush=True)
        received += 1
        if args.count is not None and received >= args.count:
            done.set()

    def on_status(status: Status, attempts: int) -> None:
        print(f"status {status.value} attempts={attempts}", flush=True)

    def on_rehydrate(snapshot: SnapshotData) -> None:
        print(f"rehydrated head={snapshot.head} events={len(snapshot.events)}", flush=True)

    config = ClientConfig(heartbeat_timeout=args.heartbeat_timeout, max_attempts=args.max_attempts)
    client = EventStreamClient(args.url, token, config=config, last_event_id=args.last_event_id,
                               on_event=on_event, on_status=on_status, on_rehydrate=on_rehydrate)
    client.start()
    try:
        await done.wait()
    finally:
        await client.aclose()
    print(f"received {received} events", file=sys.stderr)
    return 0
