"""The HTTP endpoints: stream, publish, snapshot, health, metrics, on one ``APIRouter``.

Every handler reads what it needs from ``request.app.state.runtime`` (a
:class:`service.app.Runtime` built by :func:`service.app.create_app`), so the
endpoints live at module level where tests and tools can import and walk them.

No ``from __future__ import annotations`` here: FastAPI evaluates the handlers'
annotations at import time.
"""

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from model.core import EventId, RemoteProtocolError
from service.auth import AuthError, Principal, verify_token
from service.bus import LiveMessage
from service.metrics import CONTENT_TYPE_LATEST
from service.stream import Frame, StreamSession
from service.timers import LoopTimers

if TYPE_CHECKING:
    from service.app import Runtime

__all__ = ["CONTROL_EVENTS", "ErrorBody", "HTTPError", "PublishRequest", "check_json", "error",
           "router"]

log = logging.getLogger("sselab.app")

#: Event types the server itself sends; a publisher may not use them.
CONTROL_EVENTS = frozenset({"heartbeat", "replay-truncated", "replay-failed"})

router = APIRouter()


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


class HTTPError(Exception):
    """An error answer raised from a dependency: status, message, hint, headers."""

    def __init__(self, status: int, error: str, hint: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.error, self.hint, self.headers = status, error, hint, headers


def error(status: int, error: str, hint: str = "", headers: dict[str, str] | None = None
          ) -> JSONResponse:
    """A JSON error answer ``{"error", "hint"}``."""
    return JSONResponse({"error": error, "hint": hint}, status_code=status, headers=headers)


def runtime(request: Request) -> "Runtime":
    """The app's shared state (stores, bus, settings, metrics, open sessions)."""
    rt: Runtime = request.app.state.runtime
    return rt


def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer token")] = None,
    access_token: Annotated[str | None, Query(description="token, for browsers")] = None,
) -> Principal:
    """The verified principal of the request's token (401 otherwise)."""
    token = access_token
    if authorization:
        scheme, _, value = authorization.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
        if token is None:
            raise HTTPError(401, "unsupported authorization scheme", "use 'Bearer <token>'",
                            {"WWW-Authenticate": "Bearer"})
    try:
        return verify_token(runtime(request).settings.secret, token)
    except AuthError as exc:
        raise HTTPError(401, exc.message, exc.hint, {"WWW-Authenticate": "Bearer"}) from None


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, forged or expired token"}}


@router.get("/stream", response_class=EventSourceResponse, responses={
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "the user's events, plus replay-truncated, replay-failed, heartbeat"},
    400: {"model": ErrorBody, "description": "malformed or foreign Last-Event-ID"},
    503: {"model": ErrorBody, "description": "the database is unavailable"},
    **AUTH_ERRORS})
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(description="cursor, for browsers")] = None,
) -> Any:
    """Stream the authenticated user's events, resuming after Last-Event-ID."""
    rt = runtime(request)
    metrics, bus, store = rt.metrics, rt.bus, rt.store
    text = last_event_id_header if last_event_id_header is not None else last_event_id
    cursor: EventId | None = None
    if text is not None and text.strip():
        try:
            cursor = EventId.parse(text)
        except RemoteProtocolError as exc:
            metrics.stream_rejections.labels(status="400").inc()
            return error(400, exc.message, exc.hint)
    topic = principal.user
    timers = LoopTimers()
    sess = StreamSession(topic=topic, cfg=rt.session_cfg, timers=timers, replay=store.replay,
                         read_head=store.topic_head, metrics=metrics,
                         trace_id=f"{topic}/{rt.settings.replica}/{next(rt.stream_ids)}")
    bus.register(topic, sess.live)  # live fan-out first, the topic row second
    try:
        info = await store.open_info(topic, cursor.epoch if cursor else None)
    except Exception as exc:
        bus.unregister(topic, sess.live)
        metrics.stream_rejections.labels(status="503").inc()
        log.warning("stream open failed", extra={"user": topic, "error": repr(exc)})
        return error(503, "database unavailable", "retry later")
    if info.cursor_owner is not None and info.cursor_owner != topic:
        # Foreign: the cursor's epoch is the log of another user's topic.
        bus.unregister(topic, sess.live)
        metrics.stream_rejections.labels(status="400").inc()
        return error(400, "foreign Last-Event-ID",
                     "the id belongs to another user's stream; connect without it")
    rt.sessions.add(sess)
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
            rt.sessions.discard(sess)
            metrics.open_streams.dec()

    return EventSourceResponse(frames(), ping=0, headers={"Cache-Control": "no-store"})


@router.post("/events", status_code=201, response_model=Published, responses={
    403: {"model": ErrorBody, "description": "the token is not a publisher's"},
    413: {"model": ErrorBody, "description": "the body is over the size limit"},
    503: {"model": ErrorBody, "description": "the database is unavailable"},
    **AUTH_ERRORS})
async def publish(request: Request, body: PublishRequest,
                  principal: Annotated[Principal, Depends(authenticate)]) -> Any:
    """Publish an event to a user's stream (publisher tokens only)."""
    rt = runtime(request)
    if principal.role != "publisher":
        return error(403, "publishing needs a publisher token",
                     "issue one with 'sselab token NAME --publisher'")
    try:
        check_json(body.data)
    except ValueError as exc:
        return JSONResponse({"detail": [{"loc": ["body", "data"], "msg": str(exc),
                                         "type": "value_error"}]}, status_code=422)
    try:
        event_id, committed = await rt.store.publish(body.user, body.type, body.data)
    except Exception as exc:
        log.error("publish failed", extra={"user": body.user, "error": repr(exc)})
        return error(503, "database unavailable", "retry the publish")
    rt.metrics.published.inc()
    data = json.dumps(body.data, separators=(",", ":"))
    try:
        await rt.bus.publish(LiveMessage(body.user, event_id, body.type, data, committed))
    except Exception as exc:
        # Committed but not fanned out: streams see the hole at the next event of
        # the topic (and catch up), and replays always serve it.
        rt.metrics.publish_bus_errors.inc()
        log.error("bus publish failed after commit",
                  extra={"user": body.user, "event_id": str(event_id), "error": repr(exc)})
    return {"id": str(event_id)}


@router.get("/snapshot", response_model=SnapshotBody, responses=AUTH_ERRORS)
async def snapshot(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    head_first: Annotated[bool, Query(description="read the head before the events")] = True,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
) -> Any:
    """The user's head cursor and recent events, for re-hydration."""
    rt = runtime(request)
    try:
        snap = await rt.store.snapshot(principal.user, limit or rt.settings.snapshot_limit,
                                       head_first=head_first)
    except Exception as exc:
        log.warning("snapshot failed", extra={"user": principal.user, "error": repr(exc)})
        return error(503, "database unavailable", "retry the snapshot")
    return {"head": str(snap.head), "events": [
        {"id": str(EventId(snap.head.epoch, e.seq)), "type": e.type, "data": json.loads(e.data)}
        for e in snap.events]}


@router.get("/health/live")
async def live(request: Request) -> dict[str, str]:
    """The process is up."""
    return {"status": "live", "replica": runtime(request).settings.replica}


def _ready(request: Request) -> JSONResponse:
    rt = runtime(request)
    view = rt.bus.view()
    body = {"ready": view.ready, "state": view.state, "reason": view.reason,
            "last_sentinel_age": view.last_sentinel_age, "replica": rt.settings.replica}
    return JSONResponse(body, status_code=200 if view.ready else 503)


READY_DOC: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthBody}, 503: {"model": HealthBody, "description": "not ready"}}


@router.get("/health/ready", response_model=HealthBody, responses=READY_DOC)
async def health_ready(request: Request) -> JSONResponse:
    """200 when the Redis subscriber is healthy, 503 otherwise (model.subscriber.view)."""
    return _ready(request)


@router.get("/health", response_model=HealthBody, responses=READY_DOC)
async def health(request: Request) -> JSONResponse:
    """The readiness check, as /health/ready."""
    return _ready(request)


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def check_json(value: Any) -> None:
    """Refuse what JSON or Postgres jsonb cannot hold: NaN, infinities, NUL characters."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("data may not contain NaN or infinities")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("data may not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            check_json(key)
            check_json(item)
    elif isinstance(value, list):
        for item in value:
            check_json(item)
