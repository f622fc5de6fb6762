"""``sselab serve``: run the SSE service (FastAPI on uvicorn) on real Redis and Postgres."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from model.fixes import Fixes, UnknownFixError
from sims.commands._args import add_without, fix_name, positive_int

__all__ = ["fixes_spec", "register", "run"]


def fixes_spec(text: str) -> Fixes:
    """A fix list such as ``all``, ``none``, ``all,-F3`` or ``F1,topic-sequence``."""
    for part in (p.strip().lstrip("+-") for p in text.split(",")):
        if part and part not in ("all", "none"):
            fix_name(part)  # names the bad fix and lists the accepted ones
    try:
        return Fixes.parse(text)
    except UnknownFixError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``serve`` sub-command."""
    parser = sub.add_parser(
        "serve", help="run the SSE service",
        description="Run the SSE service. Every other setting comes from SSELAB_* environment "
                    "variables (see the README); --fixes and --without override SSELAB_FIXES.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=8000, help="port (default 8000)")
    parser.add_argument("--fixes", type=fixes_spec, default=None, metavar="SPEC",
                        help="fixes switched on: 'all' (default), 'none', 'all,-F3', ...")
    add_without(parser, effect="applied after --fixes / SSELAB_FIXES")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (ticket and token values are redacted)")
    parser.add_argument("--insecure-dev-key", action="store_true",
                        help="without SSELAB_SECRET, sign with the published development key "
                             "(a laptop only; warns on every start); same as "
                             "SSELAB_INSECURE_DEV_KEY=1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the server and block until it stops."""
    import uvicorn

    from service.app import create_app
    from service.config import ConfigError, Settings

    env = dict(os.environ)
    if args.insecure_dev_key:
        env["SSELAB_INSECURE_DEV_KEY"] = "1"
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"sselab serve: {exc}", file=sys.stderr)
        return 2
    if settings.insecure_dev_key:
        print("sselab serve: warning: signing with the published development key "
              "(SSELAB_INSECURE_DEV_KEY); never in production", file=sys.stderr)
    fixes: Fixes = args.fixes if args.fixes is not None else settings.fixes
    if args.without:
        fixes = fixes.without(*args.without)
    settings = dataclasses.replace(settings, fixes=fixes)
    # The process's concurrency limit: its stream cap plus room for publishes and probes
    # (uvicorn answers 503 beyond it).
    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=args.access_log,
                timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
                limit_concurrency=settings.max_streams + 256,
                log_level=settings.log_level.lower())
    return 0
