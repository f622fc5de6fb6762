"""The HTTP service: stream, publish, snapshot, health, metrics (FastAPI on uvicorn).

Run it with ``sselab serve`` or ``uvicorn --factory service.app:create_app``.
Every reconnect, replay, heartbeat and health decision is taken by a ``model/``
machine (``model.session`` per stream, ``model.subscriber`` per process); the
handlers here authenticate, validate, read rows and write frames.

Deliberate divergences (STYLE 11):

* sse-starlette's own ping is switched off (``ping=0``): heartbeats are the
  session machine's ``SendHeartbeat``, sent as ``event: heartbeat`` frames so a
  client can see them (comment pings are invisible to EventSource and httpx-sse).
* The ``reauthorize`` fix is not switchable here: every request checks its token
  and a stream's topic is its token's user, always. A stream also ends when its
  token expires, so a long-lived stream is re-authorised by its reconnect.

No ``from __future__ import annotations`` here: FastAPI must evaluate the
handlers' annotations, which name closures such as ``authenticate``.
"""


import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from model.core import EventId, RemoteProtocolError
from service import trace
from service.auth import AuthError, Principal, verify_token
from service.bus import Bus, LiveMessage
from service.config import Settings
from service.logs import configure
from service.metrics import CONTENT_TYPE_LATEST, Metrics
from service.store import Store
from service.stream import Frame, StreamSession
from service.timers import LoopTimers

__all__ = ["CONTROL_EVENTS", "PublishRequest", "create_app"]

log = logging.getLogger("sselab.app")

#: Event types the server itself sends; a publisher may not use them.
CONTROL_EVENTS = frozenset({"heartbeat", "replay-truncated", "replay-failed"})

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


class PublishRequest(BaseModel):
    """The body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                      description="the topic: the user whose stream receives the event")
    type: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                      description="the SSE event type; not a control event name")
    data: Any = Field(description="any JSON value")

    @field_validator("type")
    @classmethod
    def _not_control(cls, value: str) -> str:
        if value in CONTROL_EVENTS:
            raise ValueError(f"{value!r} is a control event the server sends itself")
        return value


class Published(BaseModel):
    """The answer to a publish: the new event's id."""

    id: str


class ErrorBody(BaseModel):
    """An error: what went wrong and what to do about it."""

    error: str
    hint: str = ""


class HealthBody(BaseModel):
    """The readiness of this replica's subscriber."""

    ready: bool
    state: str
    reason: str
    last_sentinel_age: float | None
    replica: str


class SnapshotEvent(BaseModel):
    """One event in a snapshot."""

    id: str
    type: str
    data: Any


class SnapshotBody(BaseModel):
    """A user's head cursor and recent events (oldest first)."""

    head: str
    events: list[SnapshotEvent]


class _HTTPError(Exception):
    def __init__(self, status: int, error: str, hint: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.error, self.hint, self.headers = status, error, hint, headers


def _error(status: int, error: str, hint: str = "", headers: dict[str, str] | None = None
           ) -> JSONResponse:
    return JSONResponse({"error": error, "hint": hint}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: answer 413 when a ``POST /events`` body exceeds the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
        """Buffer the body up to the limit, then hand it on (or refuse it)."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/events":
            await self.app(scope, receive, send)
            return
        too_big = _error(413, "event too large", f"the body limit is {self.limit} bytes")
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

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service from ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    metrics = Metrics()
    store = Store(settings.database_url, settings.db_schema,
                  replay_timeout_ms=settings.replay_timeout_ms,
                  topic_sequence=settings.fixes.topic_sequence, max_size=settings.db_pool_max)
    sessions: set[StreamSession] = set()
    stream_ids = itertools.count()

    def resync_all() -> None:
        for sess in list(sessions):
            sess.resync()

    bus = Bus(redis_url=settings.redis_url, subscriber_url=settings.subscriber_redis_url,
              namespace=settings.namespace, replica=settings.replica,
              cfg=settings.subscriber_config(), metrics=metrics, retry_s=settings.redis_retry_s,
              on_resync=resync_all)
    session_cfg = settings.session_config()

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
            for sess in list(sessions):
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
    app.state.settings = settings
    app.state.store = store
    app.state.bus = bus
    app.state.metrics = metrics
    app.state.sessions = sessions
    app.add_middleware(BodyLimit, limit=settings.max_event_bytes)

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, exc: _HTTPError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.hint, exc.headers)

    def authenticate(
        authorization: Annotated[str | None, Header(description="Bearer token")] = None,
        access_token: Annotated[str | None, Query(description="token, for browsers")] = None,
    ) -> Principal:
        token = access_token
        if authorization:
            scheme, _, value = authorization.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
            if token is None:
                raise _HTTPError(401, "unsupported authorization scheme", "use 'Bearer <token>'",
                                 {"WWW-Authenticate": "Bearer"})
        try:
            return verify_token(settings.secret, token)
        except AuthError as exc:
            raise _HTTPError(401, exc.message, exc.hint, {"WWW-Authenticate": "Bearer"}) from None

    auth_errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "missing, forged or expired token"}}

    @app.get("/stream", response_class=EventSourceResponse, responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "the user's events, plus replay-truncated, replay-failed, heartbeat"},
        400: {"model": ErrorBody, "description": "malformed or foreign Last-Event-ID"},
        503: {"model": ErrorBody, "description": "the database is unavailable"},
        **auth_errors})
    async def stream(
        principal: Annotated[Principal, Depends(authenticate)],
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        last_event_id: Annotated[str | None, Query(description="cursor, for browsers")] = None,
    ) -> Any:
        """Stream the authenticated user's events, resuming after Last-Event-ID."""
        text = last_event_id_header if last_event_id_header is not None else last_event_id
        cursor: EventId | None = None
        if text is not None and text.strip():
            try:
                cursor = EventId.parse(text)
            except RemoteProtocolError as exc:
                metrics.stream_rejections.labels(status="400").inc()
                return _error(400, exc.message, exc.hint)
        topic = principal.user
        timers = LoopTimers()
        sess = StreamSession(topic=topic, cfg=session_cfg, timers=timers, replay=store.replay,
                             read_head=store.topic_head, metrics=metrics,
                             trace_id=f"{topic}/{settings.replica}/{next(stream_ids)}")
        bus.register(topic, sess.live)  # live fan-out first, the topic row second
        try:
            info = await store.open_info(topic, cursor.epoch if cursor else None)
        except Exception as exc:
            bus.unregister(topic, sess.live)
            metrics.stream_rejections.labels(status="503").inc()
            log.warning("stream open failed", extra={"user": topic, "error": repr(exc)})
            return _error(503, "database unavailable", "retry later")
        if info.cursor_owner is not None and info.cursor_owner != topic:
            # Foreign: the cursor's epoch is the log of another user's topic.
            bus.unregister(topic, sess.live)
            metrics.stream_rejections.labels(status="400").inc()
            return _error(400, "foreign Last-Event-ID",
                          "the id belongs to another user's stream; connect without it")
        sessions.add(sess)
        metrics.open_streams.inc()
        sess.open(cursor, info.topic)
        # A stream ends when its token expires: the reconnect re-checks the token.
        expiry = timers.now() + max(0.0, principal.expires_at - time.time())
        timers.start("token-expiry", expiry, lambda: sess.queue.put_nowait(None))

        async def frames() -> AsyncIterator[ServerSentEvent]:
            try:
                while True:
                    frame: Frame | None = await sess.queue.get()
                    if frame is None:
                        return
                    event_id, event_type, data = frame
                    yield ServerSentEvent(data=data, event=event_type, id=event_id)
            finally:
                sess.close()
                bus.unregister(topic, sess.live)
                sessions.discard(sess)
                metrics.open_streams.dec()

        return EventSourceResponse(frames(), ping=0, headers={"Cache-Control": "no-store"})

    @app.post("/events", status_code=201, response_model=Published, responses={
        403: {"model": ErrorBody, "description": "the token is not a publisher's"},
        413: {"model": ErrorBody, "description": "the body is over the size limit"},
        503: {"model": ErrorBody, "description": "the database is unavailable"},
        **auth_errors})
    async def publish(body: PublishRequest,
                      principal: Annotated[Principal, Depends(authenticate)]) -> Any:
        """Publish an event to a user's stream (publisher tokens only)."""
        if principal.role != "publisher":
            return _error(403, "publishing needs a publisher token",
                          "issue one with 'sselab token NAME --publisher'")
        try:
            _check_json(body.data)
        except ValueError as exc:
            return JSONResponse({"detail": [{"loc": ["body", "data"], "msg": str(exc),
                                             "type": "value_error"}]}, status_code=422)
        try:
            event_id, committed = await store.publish(body.user, body.type, body.data)
        except Exception as exc:
            log.error("publish failed", extra={"user": body.user, "error": repr(exc)})
            return _error(503, "database unavailable", "retry the publish")
        metrics.published.inc()
        data = json.dumps(body.data, separators=(",", ":"))
        try:
            await bus.publish(LiveMessage(body.user, event_id, body.type, data, committed))
        except Exception as exc:
            # Committed but not fanned out: streams see the hole at the next event of
            # the topic (and catch up), and replays always serve it.
            metrics.publish_bus_errors.inc()
            log.error("bus publish failed after commit",
                      extra={"user": body.user, "event_id": str(event_id), "error": repr(exc)})
        return {"id": str(event_id)}

    @app.get("/snapshot", response_model=SnapshotBody, responses=auth_errors)
    async def snapshot(
        principal: Annotated[Principal, Depends(authenticate)],
        head_first: Annotated[bool, Query(description="read the head before the events")] = True,
        limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
    ) -> Any:
        """The user's head cursor and recent events, for re-hydration."""
        try:
            snap = await store.snapshot(principal.user, limit or settings.snapshot_limit,
                                        head_first=head_first)
        except Exception as exc:
            log.warning("snapshot failed", extra={"user": principal.user, "error": repr(exc)})
            return _error(503, "database unavailable", "retry the snapshot")
        return {"head": str(snap.head), "events": [
            {"id": str(EventId(snap.head.epoch, e.seq)), "type": e.type, "data": json.loads(e.data)}
            for e in snap.events]}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        """The process is up."""
        return {"status": "live", "replica": settings.replica}

    def ready() -> JSONResponse:
        view = bus.view()
        body = {"ready": view.ready, "state": view.state, "reason": view.reason,
                "last_sentinel_age": view.last_sentinel_age, "replica": settings.replica}
        return JSONResponse(body, status_code=200 if view.ready else 503)

    ready_doc: dict[int | str, dict[str, Any]] = {
        200: {"model": HealthBody}, 503: {"model": HealthBody, "description": "not ready"}}

    @app.get("/health/ready", response_model=HealthBody, responses=ready_doc)
    async def health_ready() -> JSONResponse:
        """200 when the Redis subscriber is healthy, 503 otherwise (model.subscriber.view)."""
        return ready()

    @app.get("/health", response_model=HealthBody, responses=ready_doc)
    async def health() -> JSONResponse:
        """The readiness check, as /health/ready."""
        return ready()

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        """Prometheus metrics of this process."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _check_json(value: Any) -> None:
    """Refuse what JSON or Postgres jsonb cannot hold: NaN, infinities, NUL characters."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("data may not contain NaN or infinities")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("data may not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(key)
            _check_json(item)
    elif isinstance(value, list):
        for item in value:
            _check_json(item)
