"""The service factory: build the shared state, the lifespan and the middleware.

Run it with ``sselab serve`` or ``uvicorn --factory service.app:create_app``.
Every reconnect, replay, heartbeat and health decision is taken by a ``model/``
machine (``model.session`` per stream, ``model.subscriber`` per process); the
endpoints (``service.api``) authenticate, validate, read rows and write frames.

Deliberate divergences (STYLE 11):

* sse-starlette's own ping is switched off (``ping=0``): heartbeats are the
  session machine's ``SendHeartbeat``, sent as ``event: heartbeat`` frames so a
  client can see them (comment pings are invisible to EventSource and httpx-sse).
* Re-authorisation: the token deny list is checked on every request (with
  ``reauthorize`` on; off, the seed's code, only signature and expiry are checked
  at connect), and before every replay, every ``SSELAB_REAUTH_INTERVAL_S`` on open
  streams and at token expiry the shell feeds ``model.session``'s ``Revoked``: the
  machine ends the stream with the fix on and keeps it with the fix off. Every
  request checks its token, and a stream's topic is its token's user, always.
* Tokens never reach a log line: uvicorn's access log (on with ``uvicorn
  --factory``) has ``ticket=`` and ``access_token=`` values redacted by a filter
  installed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.session import SessionConfig, TopicHead
from service import trace
from service.api import HTTPError, PublishRequest, error, router
from service.auth import Principal
from service.bus import Bus, bus_key
from service.config import Settings
from service.limits import Admission, too_deep
from service.logs import configure
from service.metrics import Metrics
from service.revocation import Revocations
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
    revocations: Revocations
    admission: Admission
    session_cfg: SessionConfig
    #: open streams and the principal each was opened with
    sessions: dict[StreamSession, Principal] = dataclasses.field(default_factory=dict)
    stream_ids: Iterator[int] = dataclasses.field(default_factory=itertools.count)
    database_state: str = "unknown"  #: the cached Postgres check: up, down or unknown
    database_error: str = ""
    _tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)

    def resync_all(self) -> None:
        """The subscriber recovered: every open stream catches up (heads read once per topic)."""
        task = asyncio.get_running_loop().create_task(self._resync(list(self.sessions)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync(self, sessions: list[StreamSession]) -> None:
        async for topic_sessions, head, failure in self._heads(sessions, "resync"):
            for sess in topic_sessions:
                if head is not None:
                    sess.resync_to(head)
                else:
                    sess.resync_failed(failure)

    async def probe_heads(self) -> None:
        """The head probe (``head-probe``): feed every open stream its topic's head.

        One read per topic, batched over every stream of that topic on this replica.
        A session whose cursor is behind the head (a publish lost after its commit)
        starts a catch-up; that is the machine's decision. A failed read feeds
        nothing: the machine has no input for it, and the next period reads again.
        """
        sessions = list(self.sessions)
        if not sessions:
            return
        self.metrics.head_probes.inc()
        async for topic_sessions, head, _ in self._heads(sessions, "head probe"):
            if head is None:
                continue
            for sess in topic_sessions:
                if sess.probe(head):
                    self.metrics.probe_catch_ups.inc()

    async def _heads(self, sessions: list[StreamSession], what: str
                     ) -> AsyncIterator[tuple[list[StreamSession], TopicHead | None, str]]:
        """Each topic's open streams with its head (None and why when the read failed).

        Heads are read once per topic, 500 topics per query.
        """
        by_topic: dict[str, list[StreamSession]] = {}
        for sess in sessions:
            by_topic.setdefault(sess.topic, []).append(sess)
        topics = sorted(by_topic)
        for i in range(0, len(topics), 500):
            batch = topics[i:i + 500]
            try:
                heads = await self.store.topic_heads(batch)
            except Exception as exc:
                log.warning(f"{what} head read failed", extra={"topics": len(batch),
                                                               "error": exc.__class__.__name__})
                heads, failure = {}, exc.__class__.__name__
            else:
                failure = "topic row missing"
            for topic in batch:
                yield by_topic[topic], heads.get(topic), failure

    async def check_database(self) -> None:
        """Refresh the cached Postgres check (readiness reads the cache, never the database)."""
        try:
            async with asyncio.timeout(max(1.0, self.settings.db_acquire_timeout_s)):
                await self.store.ping()
        except Exception as exc:
            self.database_state, self.database_error = "down", exc.__class__.__name__
        else:
            self.database_state, self.database_error = "up", ""
        self.metrics.database_up.set(1.0 if self.database_state == "up" else 0.0)

    async def reauthorize_open_streams(self) -> int:
        """Tell every open stream whose token was revoked; return how many the machines ended."""
        items = list(self.sessions.items())
        ended = 0
        for i in range(0, len(items), 1000):
            batch = items[i:i + 1000]
            revoked = await self.revocations.revoked([p for _, p in batch])
            for (sess, _), bad in zip(batch, revoked, strict=True):
                if bad:
                    sess.revoked("revoked")  # the machine decides (reauthorize)
                    ended += sess.closed
        return ended


class BodyLimit:
    """ASGI middleware for ``POST /events``: 413 over the byte limit, 422 nested too deep.

    The depth is checked on the raw bytes, before any parser recurses into them.
    """

    def __init__(self, app: ASGIApp, limit: int, max_depth: int = 32) -> None:
        self.app, self.limit, self.max_depth = app, limit, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit, refuse deep nesting, then hand it on."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/events":
            await self.app(scope, receive, send)
            return
        def too_big() -> JSONResponse:  # built only when sent (not on every publish)
            return error(413, "event too large", f"the body limit is {self.limit} bytes")

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_big()(scope, receive, send)
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
                await too_big()(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if too_deep(body, self.max_depth + 1):  # the body object itself is one level
            await JSONResponse({"detail": [{
                "loc": ["body", "data"], "type": "value_error",
                "msg": f"data nests deeper than {self.max_depth} levels (SSELAB_MAX_JSON_DEPTH)",
            }]}, status_code=422)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_QUERY_SECRET = re.compile(r"((?:^|[?&])(?:ticket|access_token)=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Blank ``ticket=`` and ``access_token=`` values in uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the request path argument; always keep the record."""
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str) and "=" in args[2]:
                args[2] = _QUERY_SECRET.sub(r"\1REDACTED", args[2])
                record.args = tuple(args)
        return True


def _install_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


async def _every(period: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``job`` every ``period`` seconds; a failure is logged and the loop goes on."""
    while True:
        try:
            await job()
        except Exception as exc:
            log.warning(f"{what} failed", extra={"error": exc.__class__.__name__})
        await asyncio.sleep(period)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPError)
    return error(exc.status, exc.error, exc.hint, exc.headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service from ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    _install_redaction()
    metrics = Metrics()
    store = Store(settings.database_url, settings.db_schema,
                  replay_timeout_ms=settings.replay_timeout_ms,
                  topic_sequence=settings.fixes.topic_sequence, max_size=settings.db_pool_max,
                  acquire_timeout=settings.db_acquire_timeout_s,
                  max_waiting=settings.db_max_waiting, replay_max_bytes=settings.replay_max_bytes)
    holder: list[Runtime] = []
    bus = Bus(redis_url=settings.redis_url, subscriber_url=settings.subscriber_redis_url,
              namespace=settings.namespace, replica=settings.replica,
              cfg=settings.subscriber_config(), metrics=metrics, retry_s=settings.redis_retry_s,
              on_resync=lambda: holder[0].resync_all(),
              key=bus_key(settings.secret) if settings.bus_signing else None,
              max_data_bytes=settings.max_event_bytes)
    rt = Runtime(settings=settings, metrics=metrics, store=store, bus=bus,
                 revocations=Revocations(bus.publisher, settings.namespace,
                                         max_ttl=settings.max_token_ttl_s,
                                         cache_s=settings.revocation_cache_s),
                 admission=Admission(per_token=settings.max_streams_per_token,
                                     per_address=settings.max_streams_per_address,
                                     total=settings.max_streams),
                 session_cfg=settings.session_config())
    holder.append(rt)

    async def maintenance() -> None:
        if settings.retention_s > 0:
            pruned = await store.prune(older_than_s=settings.retention_s)
            if pruned:
                log.info("retention pruned events", extra={"rows": pruned})
        await store.prune_idempotency(settings.idempotency_ttl_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.insecure_dev_key:
            log.warning("SSELAB_INSECURE_DEV_KEY is set: tokens are signed with the development "
                        "key published in the source; anyone can mint them. Never in production.")
        tracer = trace.from_env()
        if tracer is not None:
            tracer.env("config", role="server", replica=settings.replica,
                       fixes=list(settings.fixes.on()), replay_limit=settings.replay_limit,
                       heartbeat_s=settings.heartbeat_s,
                       sentinel_interval_s=settings.sentinel_interval_s,
                       sentinel_timeout_s=settings.sentinel_timeout_s,
                       probe_s=settings.probe_s)
        if settings.gc_threshold:
            # A thousand open streams are ~400k objects the collector scans whole in a
            # full collection: 250-320 ms with the loop stopped, once every ~30 s at 2,000
            # deliveries/s, because every young collection promotes whatever is in flight.
            # Rarer young collections promote almost nothing (benchmarks/service.py).
            gc.set_threshold(*settings.gc_threshold)
        await store.open()
        await bus.start()
        await rt.check_database()
        jobs = [asyncio.create_task(_every(settings.db_check_s, rt.check_database,
                                           "database check")),
                asyncio.create_task(_every(max(1.0, min(60.0, settings.retention_s / 2 or 60.0)),
                                           maintenance, "maintenance"))]
        jobs.append(asyncio.create_task(_every(settings.reauth_interval_s,
                                               rt.reauthorize_open_streams,
                                               "re-authorising open streams")))
        if settings.fixes.head_probe:
            jobs.append(asyncio.create_task(_every(settings.probe_s, rt.probe_heads,
                                                   "head probe")))
        log.info("sselab service started", extra={"fixes": str(settings.fixes)})
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            for sess in list(rt.sessions):
                sess.end("shutdown")
            await bus.stop()
            await store.close()

    docs = settings.docs_enabled
    app = FastAPI(
        title="sselab service",
        version="0.1.0",
        description="Server-Sent Events whose every reconnect, replay, heartbeat and health "
                    "decision is taken by sselab's verified state machines.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.runtime = rt
    app.add_middleware(BodyLimit, limit=settings.max_event_bytes,
                       max_depth=settings.max_json_depth)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_credentials=settings.cors_credentials, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
            expose_headers=["Retry-After", "Idempotent-Replayed"], max_age=600)
    app.add_exception_handler(HTTPError, _http_error)
    app.include_router(router)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, plus the body ``POST /events`` validates itself."""
        schema = app.openapi_schema
        if schema is None:
            schema = FastAPI.openapi(app)  # built once, kept in app.openapi_schema
            schema.setdefault("components", {}).setdefault("schemas", {})["PublishRequest"] = \
                PublishRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
