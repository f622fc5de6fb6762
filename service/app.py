"""The service factory: build the shared state, the lifespan and the middleware.

Run it with ``sselab serve`` or ``uvicorn --factory service.app:create_app``.
Every reconnect, replay, heartbeat and health decision is taken by a ``model/``
machine (``model.session`` per stream, ``model.subscriber`` per process); the
endpoints (``service.api``) authenticate, validate, read rows and write frames.

Deliberate divergences (STYLE 11):

* sse-starlette's own ping is switched off (``ping=0``): heartbeats are the
  session machine's ``SendHeartbeat``, sent as ``event: heartbeat`` frames so a
  client can see them (comment pings are invisible to EventSource and httpx-sse).
* The ``reauthorize`` fix is not switchable here: every request checks its token
  and a stream's topic is its token's user, always. A stream also ends when its
  token expires, so a long-lived stream is re-authorised by its reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.session import SessionConfig
from service import trace
from service.api import HTTPError, error, router
from service.bus import Bus
from service.config import Settings
from service.logs import configure
from service.metrics import Metrics
from service.store import Store
from service.stream import StreamSession

__all__ = ["BodyLimit", "Runtime", "create_app"]

log = logging.getLogger("sselab.app")


@dataclasses.dataclass(kw_only=True, eq=False)
class Runtime:
    """What the endpoints share, kept on ``app.state.runtime``."""

    settings: Settings
    metrics: Metrics
    store: Store
    bus: Bus
    session_cfg: SessionConfig
    sessions: set[StreamSession] = dataclasses.field(default_factory=set)
    stream_ids: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def resync_all(self) -> None:
        """The subscriber recovered: every open stream catches up."""
        for sess in list(self.sessions):
            sess.resync()


class BodyLimit:
    """ASGI middleware: answer 413 when a ``POST /events`` body exceeds the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit, then hand it on (or refuse it)."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/events":
            await self.app(scope, receive, send)
            return
        too_big = error(413, "event too large", f"the body limit is {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_big(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPError)
    return error(exc.status, exc.error, exc.hint, exc.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service from ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    metrics = Metrics()
    store = Store(settings.database_url, settings.db_schema,
                  replay_timeout_ms=settings.replay_timeout_ms,
                  topic_sequence=settings.fixes.topic_sequence, max_size=settings.db_pool_max)
    holder: list[Runtime] = []
    bus = Bus(redis_url=settings.redis_url, subscriber_url=settings.subscriber_redis_url,
              namespace=settings.namespace, replica=settings.replica,
              cfg=settings.subscriber_config(), metrics=metrics, retry_s=settings.redis_retry_s,
              on_resync=lambda: holder[0].resync_all())
    rt = Runtime(settings=settings, metrics=metrics, store=store, bus=bus,
                 session_cfg=settings.session_config())
    holder.append(rt)

    async def retention() -> None:
        period = max(1.0, min(60.0, settings.retention_s / 2))
        while True:
            await asyncio.sleep(period)
            try:
                pruned = await store.prune(older_than_s=settings.retention_s)
                if pruned:
                    log.info("retention pruned events", extra={"rows": pruned})
            except Exception as exc:
                log.warning("retention prune failed", extra={"error": repr(exc)})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracer = trace.from_env()
        if tracer is not None:
            tracer.env("config", role="server", replica=settings.replica,
                       fixes=list(settings.fixes.on()), replay_limit=settings.replay_limit,
                       heartbeat_s=settings.heartbeat_s,
                       sentinel_interval_s=settings.sentinel_interval_s,
                       sentinel_timeout_s=settings.sentinel_timeout_s)
        await store.open()
        await bus.start()
        pruner = asyncio.create_task(retention()) if settings.retention_s > 0 else None
        log.info("sselab service started", extra={"replica": settings.replica,
                                                  "fixes": str(settings.fixes)})
        try:
            yield
        finally:
            if pruner is not None:
                pruner.cancel()
            for sess in list(rt.sessions):
                sess.queue.put_nowait(None)
            await bus.stop()
            await store.close()

    app = FastAPI(
        title="sselab service",
        version="0.1.0",
        description="Server-Sent Events whose every reconnect, replay, heartbeat and health "
                    "decision is taken by sselab's verified state machines.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.add_middleware(BodyLimit, limit=settings.max_event_bytes)
    app.add_exception_handler(HTTPError, _http_error)
    app.include_router(router)
    return app
