"""The HTTP endpoints: stream, publish, snapshot, health, metrics, on one ``APIRouter``.

Every handler reads what it needs from ``request.app.state.runtime`` (a
:class:`service.app.Runtime` built by :func:`service.app.create_app`), so the
endpoints live at module level where tests and tools can import and walk them.

No ``from __future__ import annotations`` here: FastAPI evaluates the handlers'
annotations at import time.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from model.core import EventId, RemoteProtocolError
from model.session import HEARTBEAT
from service.auth import USER_PATTERN, AuthError, Principal, issue_ticket, may_publish, verify_token
from service.bus import LiveMessage
from service.frames import retry_frame
from service.limits import check_json
from service.metrics import CONTENT_TYPE_LATEST, Metrics
from service.store import IdempotencyConflict, Unavailable
from service.stream import Outbox, StreamSession
from service.timers import TickTimers

if TYPE_CHECKING:
    from service.app import Runtime

__all__ = ["CONTROL_EVENTS", "ErrorBody", "HTTPError", "PublishRequest", "error", "router"]

log = logging.getLogger("sselab.app")

#: Event types the server itself sends; a publisher may not use them.
CONTROL_EVENTS = frozenset({"heartbeat", "replay-truncated", "replay-failed"})
#: What an Idempotency-Key may be.
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,200}$"

router = APIRouter()
#: The coalesced timer that watches a stream's pending send (see :class:`EventStream`).
SEND_WATCH = "send-watch"
#: The timers a stream's ``TickTimers`` coalesce: the session's heartbeat, the send watch.
COALESCED_TIMERS = frozenset({HEARTBEAT, SEND_WATCH})


class PublishRequest(BaseModel):
    """The body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=200, pattern=USER_PATTERN,
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


class Ticket(BaseModel):
    """A stream ticket: put it in ``GET /stream?ticket=...`` within ``expires_in`` seconds."""

    ticket: str
    expires_in: float
    stream_url: str


class HealthBody(BaseModel):
    """Readiness: the Redis subscriber's health and the cached Postgres check."""

    ready: bool
    state: str
    reason: str
    last_sentinel_age: float | None
    database: str
    replica: str | None = None


class SnapshotEvent(BaseModel):
    """One event in a snapshot."""

    id: str
    type: str
    data: Any


class SnapshotBody(BaseModel):
    """A user's head cursor and recent events (oldest first), one page of them."""

    head: str
    events: list[SnapshotEvent]
    more: bool = False
    next_before: str | None = None


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


def _unauthorized(message: str, hint: str = "") -> HTTPError:
    return HTTPError(401, message, hint, {"WWW-Authenticate": "Bearer"})


def _busy(rt: "Runtime", reason: str, status: int, message: str, hint: str) -> HTTPError:
    rt.metrics.refused.labels(reason=reason, status=str(status)).inc()
    return HTTPError(status, message, hint, {"Retry-After": str(rt.settings.retry_after_s)})


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized("unsupported authorization scheme", "use 'Bearer <token>'")
    return value.strip()


async def _not_revoked(rt: "Runtime", principal: Principal) -> Principal:
    """Check the deny list (with ``reauthorize`` on); 401 when revoked, 503 when unknown."""
    if not rt.settings.fixes.reauthorize:
        return principal
    try:
        revoked = await rt.revocations.is_revoked(principal)
    except Exception as exc:
        log.warning("revocation check failed", extra={"error": exc.__class__.__name__})
        raise _busy(rt, "revocation-unavailable", 503, "cannot check the token now",
                    "retry after the Retry-After seconds") from None
    if revoked:
        raise _unauthorized("token revoked", "get a new token")
    return principal


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer token")] = None,
) -> Principal:
    """The verified principal of the request's ``Authorization: Bearer`` token (401 otherwise)."""
    rt = runtime(request)
    if "access_token" in request.query_params or "ticket" in request.query_params:
        raise _unauthorized("tokens in the query string are accepted only on GET /stream",
                            "send 'Authorization: Bearer <token>'")
    try:
        principal = verify_token(rt.settings.secret, _bearer(authorization),
                                 max_ttl=rt.settings.max_token_ttl_s)
    except AuthError as exc:
        raise _unauthorized(exc.message, exc.hint) from None
    return await _not_revoked(rt, principal)


async def authenticate_stream(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer token")] = None,
    ticket: Annotated[str | None, Query(description="a stream ticket from POST /stream/ticket "
                                                    "(for browsers)")] = None,
    access_token: Annotated[str | None, Query(
        description="a user token; accepted only with SSELAB_QUERY_TOKENS=true")] = None,
) -> Principal:
    """The principal of a stream: a bearer token, a ``?ticket=``, or (if allowed) ``?access_token=``."""
    rt = runtime(request)
    settings = rt.settings
    try:
        if ticket is not None and authorization is None:
            principal = verify_token(settings.secret, ticket, ticket=True)
        elif access_token is not None and authorization is None:
            if not settings.query_tokens:
                raise AuthError("tokens in the query string are not accepted",
                                hint="get a ticket from POST /stream/ticket and use ?ticket=")
            principal = verify_token(settings.secret, access_token,
                                     max_ttl=settings.max_token_ttl_s)
            if principal.role != "user":
                raise AuthError("only user tokens may travel in the query string",
                                hint="send publisher tokens in the Authorization header")
        else:
            principal = verify_token(settings.secret, _bearer(authorization),
                                     max_ttl=settings.max_token_ttl_s)
    except AuthError as exc:
        raise _unauthorized(exc.message, exc.hint) from None
    return await _not_revoked(rt, principal)


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, forged, expired or revoked token"}}
BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the database is busy or down; see Retry-After"}}


class EventStream(EventSourceResponse):
    """An SSE response that counts a send timeout as a slow consumer instead of raising it."""

    def __init__(self, sess: StreamSession, metrics: Metrics, content: Any, *,
                 timers: TickTimers, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._sess, self._metrics, self._timers = sess, metrics, timers
        self._since: float | None = None  #: when the send now pending started
        self._sender: asyncio.Task[Any] | None = None
        self._cut = False

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        """One ASGI send, cut off (``SendTimeoutError``) if still blocked after ``send_timeout``.

        sse-starlette arms a loop timer and a cancel scope per send; a stream's sends
        are many and nearly all finish at once. Here a send only notes when it
        started, and one watch per stream (on the shared tick) looks at the pending
        send at most every ``send_timeout``: a blocked send is cut off at most a tick
        late, and a thousand streams sending cost no timer per send.
        """
        if self.send_timeout is None:
            await super()._send_with_timeout(send, message)
            return
        timers = self._timers
        self._sender = asyncio.current_task()
        self._since = now = timers.now()
        if not timers.armed(SEND_WATCH):  # disarmed when idle, or by the session's close
            timers.start(SEND_WATCH, now + self.send_timeout, self._check)
        try:
            await send(message)
        except asyncio.CancelledError:
            if not self._cut:
                raise
            self._cut = False
            if self._sender is not None:
                self._sender.uncancel()
            raise SendTimeoutError() from None
        finally:
            self._since = None

    def _check(self) -> None:
        """The watch: cut off a send pending for ``send_timeout``, or look again when it would be."""
        since, timeout = self._since, self.send_timeout
        if since is None or timeout is None or self._sender is None:
            return  # idle: the next send arms the watch again
        due = since + timeout
        if self._timers.now() >= due:
            self._cut = True
            self._sender.cancel()
        else:
            self._timers.start(SEND_WATCH, due, self._check)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the stream; a client that stops reading is cut off after the send timeout."""
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            self._metrics.slow_consumers.labels(reason="send-timeout").inc()
            self._sess.end("send-timeout")


@router.get("/stream", response_class=EventSourceResponse, responses={
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "the user's events, plus replay-truncated, replay-failed, heartbeat"},
    400: {"model": ErrorBody, "description": "malformed or foreign Last-Event-ID"},
    429: {"model": ErrorBody, "description": "too many streams (token, address or process)"},
    **BUSY, **AUTH_ERRORS})
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate_stream)],
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(description="cursor, for browsers")] = None,
) -> Any:
    """Stream the authenticated user's events, resuming after Last-Event-ID."""
    rt = runtime(request)
    metrics = rt.metrics
    text = last_event_id_header if last_event_id_header is not None else last_event_id
    cursor: EventId | None = None
    if text is not None and text.strip():
        try:
            cursor = EventId.parse(text)
        except RemoteProtocolError as exc:
            metrics.stream_rejections.labels(status="400").inc()
            return error(400, exc.message, exc.hint)
    address = request.client.host if request.client else "unknown"
    cap = rt.admission.admit(principal.token_id, address)
    if cap is not None:
        metrics.stream_rejections.labels(status="429").inc()
        raise _busy(rt, f"streams-per-{cap}", 429, f"too many open streams for this {cap}",
                    f"close a stream or retry later (SSELAB_MAX_STREAMS"
                    f"{'' if cap == 'process' else '_PER_' + cap.upper()})")
    try:
        return await _open_stream(rt, principal, cursor, address)
    except BaseException:
        rt.admission.release(principal.token_id, address)
        raise


async def _open_stream(rt: "Runtime", principal: Principal, cursor: EventId | None,
                       address: str) -> Any:
    settings, metrics, bus, store = rt.settings, rt.metrics, rt.bus, rt.store
    topic = principal.user
    # Heartbeats of all streams share loop ticks (at most 1 % of the interval late).
    timers = TickTimers(min(0.05, settings.heartbeat_s / 100), COALESCED_TIMERS)
    async def reauthorize() -> bool:
        return not await rt.revocations.is_revoked(principal)
    outbox = Outbox(max_frames=settings.stream_buffer_frames,
                    max_bytes=settings.stream_buffer_bytes)
    sess = StreamSession(topic=topic, cfg=rt.session_cfg, timers=timers, replay=store.replay,
                         read_head=store.topic_head, metrics=metrics, outbox=outbox,
                         reauthorize=reauthorize,
                         trace_id=f"{topic}/{settings.replica}/{next(rt.stream_ids)}")
    bus.register(topic, sess.live)  # live fan-out first, the topic row second
    try:
        info = await store.open_info(topic, cursor.epoch if cursor else None)
    except Exception as exc:
        bus.unregister(topic, sess.live)
        metrics.stream_rejections.labels(status="503").inc()
        log.warning("stream open failed", extra={"user": topic, "error": repr(exc)})
        reason = "database-busy" if isinstance(exc, Unavailable) else "database-error"
        raise _busy(rt, reason, 503, "database unavailable", "retry later") from None
    if info.cursor_owner is not None and info.cursor_owner != topic:
        # Foreign: the cursor's epoch is the log of another user's topic.
        bus.unregister(topic, sess.live)
        metrics.stream_rejections.labels(status="400").inc()
        rt.admission.release(principal.token_id, address)
        return error(400, "foreign Last-Event-ID",
                     "the id belongs to another user's stream; connect without it")
    rt.sessions[sess] = principal
    metrics.open_streams.inc()
    # A jittered reconnect delay, so a fleet of browsers does not come back in lockstep.
    outbox.put(retry_frame(round(settings.retry_ms * (0.5 + random.random()))))
    sess.open(cursor, info.topic)
    # At token expiry the machine is told (read or not); with reauthorize on it ends the
    # stream, and the reconnect re-checks the token.
    expiry = timers.now() + max(0.0, principal.expires_at - time.time())
    timers.start("token-expiry", expiry, lambda: sess.revoked("expired"))
    shutdown = anyio.Event()

    async def on_shutdown() -> None:
        await shutdown.wait()
        sess.end("shutdown")

    async def frames() -> AsyncIterator[bytes]:
        try:
            while (chunk := await outbox.get()) is not None:
                yield chunk
        finally:
            sess.close()
            bus.unregister(topic, sess.live)
            rt.sessions.pop(sess, None)
            rt.admission.release(principal.token_id, address)
            metrics.open_streams.dec()

    return EventStream(sess, metrics, frames(), timers=timers, ping=0,
                       send_timeout=settings.send_timeout_s,
                       shutdown_event=shutdown, shutdown_grace_period=settings.shutdown_grace_s,
                       data_sender_callable=on_shutdown,
                       headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/stream/ticket", status_code=201, response_model=Ticket, responses={
    403: {"model": ErrorBody, "description": "not a user token"}, **AUTH_ERRORS})
async def stream_ticket(request: Request,
                        principal: Annotated[Principal, Depends(authenticate)]) -> Any:
    """A short-lived ticket for opening this user's stream from a browser (``?ticket=``)."""
    rt = runtime(request)
    if principal.role != "user":
        return error(403, "tickets are for user tokens", "publishers do not stream")
    ttl = rt.settings.ticket_ttl_s
    ticket = issue_ticket(rt.settings.secret, principal, ttl=ttl)
    return {"ticket": ticket, "expires_in": ttl, "stream_url": f"/stream?ticket={ticket}"}


def _header_doc(name: str, title: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"anyOf": [{"type": "string", **schema}, {"type": "null"}],
                       "description": description, "title": title}}


#: ``POST /events`` reads its headers and body itself: FastAPI's dependency solving
#: was an eighth of a publish's CPU. They are documented as FastAPI documents them
#: (the body's schema is added to the components in :func:`service.app.create_app`).
PUBLISH_DOC: dict[str, Any] = {
    "parameters": [
        _header_doc("idempotency-key", "Idempotency-Key",
                    "retry-safe key: a second publish with it answers the first's id",
                    pattern=IDEMPOTENCY_KEY),
        _header_doc("authorization", "Authorization", "Bearer token")],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/PublishRequest"}}}},
    "responses": {"422": {"description": "Validation Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}}}
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY)


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 422 in FastAPI's shape: ``{"detail": [{"type", "loc", "msg", ...}]}``."""
    return JSONResponse({"detail": errors}, status_code=422)


@router.post("/events", status_code=201, response_model=Published, responses={
    403: {"model": ErrorBody, "description": "not a publisher token, or the topic is not in "
                                             "its scope"},
    413: {"model": ErrorBody, "description": "the body is over the size limit"},
    **BUSY, **AUTH_ERRORS}, openapi_extra=PUBLISH_DOC)
async def publish(request: Request) -> Any:
    """Publish an event to a user's stream (publisher tokens, within their topic scope)."""
    rt = runtime(request)
    settings = rt.settings
    headers = request.headers
    idempotency_key = headers.get("idempotency-key")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        return _invalid([{"type": "string_pattern_mismatch", "loc": ["header", "idempotency-key"],
                          "msg": f"String should match pattern '{IDEMPOTENCY_KEY}'",
                          "input": idempotency_key}])
    principal = await authenticate(request, headers.get("authorization"))  # 401 before 422
    try:
        body = PublishRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return _invalid([{**e, "loc": ["body", *e["loc"]]}
                         for e in exc.errors(include_url=False, include_context=False,
                                               include_input=False)])
    if principal.role != "publisher":
        return error(403, "publishing needs a publisher token",
                     "issue one with 'sselab token NAME --publisher --topic PATTERN'")
    if not may_publish(principal, body.user):
        return error(403, "topic outside this publisher token's scope",
                     f"the token may publish to: {', '.join(principal.topics) or 'nothing'}")
    try:
        check_json(body.data, max_depth=settings.max_json_depth,
                   max_nodes=settings.max_json_nodes)
    except ValueError as exc:
        return JSONResponse({"detail": [{"loc": ["body", "data"], "msg": str(exc),
                                         "type": "value_error"}]}, status_code=422)
    data = json.dumps(body.data, separators=(",", ":"))
    idempotency = None
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(json.dumps([body.user, body.type, data]).encode()).hexdigest()
        idempotency = (f"{principal.user}", idempotency_key, fingerprint)
    try:
        event_id, committed, replayed = await rt.store.publish_once(
            body.user, body.type, body.data, idempotency=idempotency, text=data)
    except IdempotencyConflict:
        return JSONResponse({"detail": [{"loc": ["header", "idempotency-key"],
                                         "msg": "this Idempotency-Key was used for a different "
                                                "request; use a new key per event",
                                         "type": "value_error"}]}, status_code=422)
    except Exception as exc:
        log.error("publish failed", extra={"user": body.user, "error": exc.__class__.__name__})
        reason = "database-busy" if isinstance(exc, Unavailable) else "database-error"
        raise _busy(rt, reason, 503, "database unavailable", "retry the publish with the same "
                    "Idempotency-Key") from None
    if replayed:
        rt.metrics.idempotent_replays.inc()
        return JSONResponse({"id": str(event_id)}, status_code=201,
                            headers={"Idempotent-Replayed": "true"})
    rt.metrics.published.inc()
    try:
        await rt.bus.publish(LiveMessage(body.user, event_id, body.type, data, committed))
    except Exception as exc:
        # Committed but not fanned out: every replica's head probe (``head-probe``,
        # each SSELAB_PROBE_S) finds the head past its streams' cursors and they catch
        # up; the topic's next event shows the hole too, and replays always serve it.
        rt.metrics.publish_bus_errors.inc()
        log.error("bus publish failed after commit",
                  extra={"user": body.user, "event_id": str(event_id),
                         "error": exc.__class__.__name__})
    # Answered as is, not through response_model's validation (the schema still says Published).
    return JSONResponse({"id": str(event_id)}, status_code=201)


@router.get("/snapshot", response_model=SnapshotBody, responses={
    400: {"model": ErrorBody, "description": "malformed 'before'"}, **BUSY, **AUTH_ERRORS})
async def snapshot(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    head_first: Annotated[bool, Query(description="read the head before the events")] = True,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
    before: Annotated[str | None, Query(
        description="page: only events before this id (a previous page's next_before)")] = None,
) -> Any:
    """The user's head cursor and latest events (a page within the byte cap), for re-hydration."""
    rt = runtime(request)
    settings = rt.settings
    before_seq = None
    if before is not None:
        try:
            before_seq = EventId.parse(before).seq
        except RemoteProtocolError as exc:
            return error(400, f"before: {exc.message}", exc.hint)
    try:
        snap = await rt.store.snapshot(principal.user, limit or settings.snapshot_limit,
                                       head_first=head_first, before=before_seq,
                                       max_bytes=settings.snapshot_max_bytes)
    except Exception as exc:
        log.warning("snapshot failed", extra={"user": principal.user,
                                              "error": exc.__class__.__name__})
        reason = "database-busy" if isinstance(exc, Unavailable) else "database-error"
        raise _busy(rt, reason, 503, "database unavailable", "retry the snapshot") from None
    epoch = snap.head.epoch
    next_before = str(EventId(epoch, snap.events[0].seq)) if snap.more and snap.events else None
    return {"head": str(snap.head), "more": snap.more, "next_before": next_before, "events": [
        {"id": str(EventId(epoch, e.seq)), "type": e.type, "data": json.loads(e.data)}
        for e in snap.events]}


@router.get("/health/live")
async def live(request: Request) -> dict[str, str]:
    """The process is up."""
    settings = runtime(request).settings
    return {"status": "live", **({"replica": settings.replica} if settings.debug else {})}


def _ready(request: Request) -> JSONResponse:
    rt = runtime(request)
    view = rt.bus.view()
    database = rt.database_state
    reason = view.reason if rt.settings.debug else view.reason.split(":", 1)[0]
    body: dict[str, Any] = {"ready": view.ready and database == "up", "state": view.state,
                            "reason": reason, "last_sentinel_age": view.last_sentinel_age,
                            "database": database}
    if rt.settings.debug:
        body["replica"] = rt.settings.replica
        body["database_error"] = rt.database_error
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


READY_DOC: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthBody}, 503: {"model": HealthBody, "description": "not ready"}}


@router.get("/health/ready", response_model=HealthBody, responses=READY_DOC)
async def health_ready(request: Request) -> JSONResponse:
    """200 when the Redis subscriber is healthy and Postgres answered its last check."""
    return _ready(request)


@router.get("/health", response_model=HealthBody, responses=READY_DOC)
async def health(request: Request) -> JSONResponse:
    """The readiness check, as /health/ready."""
    return _ready(request)


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
    401: {"model": ErrorBody, "description": "SSELAB_METRICS_TOKEN is set and not sent"},
    404: {"model": ErrorBody, "description": "metrics are switched off"}})
async def prometheus(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer SSELAB_METRICS_TOKEN")] = None,
) -> Response:
    """Prometheus metrics of this process (protected by SSELAB_METRICS_TOKEN when set)."""
    rt = runtime(request)
    if not rt.settings.metrics_enabled:
        return error(404, "metrics are switched off", "set SSELAB_METRICS=on")
    expected = rt.settings.metrics_token
    if expected:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 expected.encode()):
            return error(401, "metrics need the metrics token",
                         "send 'Authorization: Bearer <SSELAB_METRICS_TOKEN>'",
                         {"WWW-Authenticate": "Bearer"})
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
