"""The Redis bus: publish after commit, one pub/sub link per process, sentinels.

The process holds **one** pub/sub connection, subscribed to the namespace's
event channel and to this replica's own sentinel channel, and fans every event
out to the local streams of its topic. The link's lifecycle is reported to
``model.subscriber`` as ``Ready`` / ``Reconnecting``; the machine decides health,
when to publish a sentinel, when a missing one means the link is dead
(``Resubscribe``), and when open streams must catch up (``ResyncStreams``).

Divergence from the seed (noted per STYLE 11): redis-py's pub/sub does not emit
ioredis-style lifecycle events, so this module plays the client library's part:
the link is dialled with redis-py's own retries switched off, and when it drops
it is dialled again after ``SSELAB_REDIS_RETRY_S`` -- what ioredis does on its
own. That redial is the library's behaviour the machine takes as input
(``Reconnecting`` then ``Ready``), not a decision about health.

The bus trusts nothing it hears. Every event message is checked against a
strict schema with ranges (:func:`decode_message`) and, when signing is on (the
default), its HMAC-SHA256 under a key derived from ``SSELAB_SECRET``: a client
that can reach Redis but does not hold the key cannot inject events. A message
that fails is dropped, logged and counted (``sselab_bus_rejected_total{reason}``);
it never reaches a machine and never drops the link. Redis AUTH/ACL and TLS come
with the URL (``rediss://user:password@host:port/0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from model import subscriber
from model.core import CancelTimer, EventId, Handlers, Log, StartTimer, dispatch
from model.subscriber import HealthView, SubscriberConfig
from service import trace
from service.auth import USER_PATTERN
from service.frames import encode_frame
from service.logs import log_action
from service.metrics import Metrics
from service.timers import LoopTimers, Timers

__all__ = ["BadMessage", "Bus", "LiveMessage", "bus_key", "decode_message", "encode_message"]

log = logging.getLogger("sselab.bus")


class LiveMessage(NamedTuple):
    """An event as it travels on the bus."""

    topic: str
    event_id: EventId
    type: str
    data: str  #: the event's JSON text
    committed_at: float  #: Unix seconds
    frame: bytes = b""  #: its SSE frame, encoded once on arrival (not on the wire)


#: Largest epoch or seq a message may carry (ids stay exact as JSON numbers).
MAX_ID = 2**53 - 1
_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
_USER = re.compile(USER_PATTERN)
_FIELDS = frozenset({"topic", "epoch", "seq", "type", "data", "at"})
_CONTROL = frozenset({"heartbeat", "replay-truncated", "replay-failed"})
_SIGNED = b"v1."
#: Publish connections the bus holds for its fast lane (more in flight use the pool).
_HELD = 8
#: A lost or broken link: the publish goes down the client's retrying path instead.
_LINK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class BadMessage(ValueError):
    """A bus message that is refused; ``reason`` is its metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def bus_key(secret: str) -> bytes:
    """The HMAC key of bus messages, derived from the token key (never the key itself)."""
    return hashlib.sha256(b"sselab-bus-v1\x00" + secret.encode()).digest()


def encode_message(msg: LiveMessage, key: bytes | None = None) -> bytes:
    """The bus wire form of an event: its JSON, or ``v1.<hmac>.<json>`` with a key."""
    body = json.dumps({"topic": msg.topic, "epoch": msg.event_id.epoch, "seq": msg.event_id.seq,
                       "type": msg.type, "data": msg.data, "at": msg.committed_at},
                      separators=(",", ":")).encode()
    if key is None:
        return body
    return _SIGNED + _signature(key, body) + b"." + body


def _signature(key: bytes, body: bytes) -> bytes:
    """A message body's HMAC-SHA256 under ``key``, as the hex the wire carries."""
    return hmac.digest(key, body, "sha256").hex().encode()


def _no_constant(name: str) -> Any:
    raise BadMessage("json", f"{name} is not JSON")


def decode_message(raw: bytes | str, key: bytes | None = None, *,
                   max_data_bytes: int = 1 << 20) -> LiveMessage:
    """Parse and check a bus message (schema, ranges, and its signature when ``key`` is set)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > max_data_bytes + 1024:
        raise BadMessage("size", f"message of {len(data)} bytes")
    if key is not None:
        if not data.startswith(_SIGNED) or data[67:68] != b".":
            raise BadMessage("signature", "unsigned message")
        sig, body = data[3:67], data[68:]
        if not hmac.compare_digest(sig, _signature(key, body)):
            raise BadMessage("signature", "bad signature")
        data = body
    try:
        obj = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadMessage("json", "not JSON") from exc
    if not isinstance(obj, dict) or obj.keys() != _FIELDS:
        raise BadMessage("schema", "expected exactly topic, epoch, seq, type, data, at")
    topic, epoch, seq, type_, text, at = (obj["topic"], obj["epoch"], obj["seq"], obj["type"],
                                          obj["data"], obj["at"])
    if not isinstance(topic, str) or not _USER.match(topic):
        raise BadMessage("schema", "bad topic")
    for value in (epoch, seq):
        if type(value) is not int or not 1 <= value <= MAX_ID:
            raise BadMessage("range", f"ids are whole numbers 1..{MAX_ID}")
    if not isinstance(type_, str) or not _TYPE.match(type_) or type_ in _CONTROL:
        raise BadMessage("schema", "bad type")
    if not isinstance(text, str) or len(text) > max_data_bytes or "\x00" in text:
        raise BadMessage("schema", "bad data")
    if type(at) not in (int, float) or not math.isfinite(at) or not 0 <= at < 1e11:
        raise BadMessage("range", "bad commit time")
    return LiveMessage(topic, EventId(epoch, seq), type_, text, float(at))


Listener = Callable[[LiveMessage], None]


class Bus:
    """Publisher, the one subscriber link, local fan-out, and the subscriber machine."""

    def __init__(self, *, redis_url: str, subscriber_url: str, namespace: str, replica: str,
                 cfg: SubscriberConfig, metrics: Metrics, retry_s: float = 0.5,
                 on_resync: Callable[[], None] = lambda: None,
                 timers: Timers | None = None, key: bytes | None = None,
                 max_data_bytes: int = 1 << 20) -> None:
        self.cfg = cfg
        self._key = key
        self._max_data_bytes = max_data_bytes
        self.metrics = metrics
        self.namespace = namespace
        self.replica = replica
        self.events_channel = f"{namespace}:events"
        self.sentinel_channel = f"{namespace}:sentinel:{replica}"
        self.subscriber_name = f"sselab-sub-{namespace}-{replica}"
        self.publisher_name = f"sselab-pub-{namespace}-{replica}"
        self._subscriber_url = subscriber_url
        self._retry_s = retry_s
        self._on_resync = on_resync
        self._timers = timers
        # A bounded pool that waits for a free connection: redis-py's default pool
        # raises "Too many connections" past 100 concurrent publishes. A command whose
        # connection dropped (a Redis restart) is retried twice on a fresh one; a
        # repeated PUBLISH is a duplicate the sessions drop.
        self.publisher = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=64, timeout=5, client_name=self.publisher_name,
            socket_connect_timeout=2, socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]))
        self._spare: list[Any] = []  #: held publish connections, idle
        self._held = 0  #: held publish connections, idle or in use
        self.state = subscriber.initial()
        self._listeners: dict[str, set[Listener]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._link: asyncio.Task[None] | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trace = trace.from_env()
        self._handlers: Handlers = {
            StartTimer: self._start_timer,
            CancelTimer: lambda a: self.timers.cancel(a.timer),
            subscriber.PublishSentinel: self._sentinel,
            subscriber.Resubscribe: self._resubscribe,
            subscriber.ResyncStreams: lambda a: self._on_resync(),
            subscriber.HealthChanged: lambda a: self.metrics.set_health(a.health),
            Log: lambda a: log_action(log, a, replica=self.replica),
        }

    # ------------------------------------------------------------ machine

    @property
    def timers(self) -> Timers:
        """The clock and timers of the subscriber machine."""
        if self._timers is None:
            self._timers = LoopTimers()
        return self._timers

    def feed(self, event: subscriber.SubscriberInput) -> None:
        """Step the subscriber machine and carry out its actions."""
        self.state, actions = subscriber.step(self.cfg, self.state, event)
        if self._trace is not None:
            self._trace.step("subscriber", self.replica, event, self.state.health.value, actions,
                             now=self.timers.now())
        dispatch(self._handlers, actions, shell="service.bus")

    def _start_timer(self, action: StartTimer) -> None:
        name = action.timer
        self.timers.start(name, action.at, lambda: self.feed(
            subscriber.TimerFired(now=self.timers.now(), timer=name)))

    def _sentinel(self, action: subscriber.PublishSentinel) -> None:
        self.metrics.sentinels_sent.inc()
        self._spawn(self._publish_sentinel(action.token))

    def _resubscribe(self, action: subscriber.Resubscribe) -> None:
        if self._link is not None:
            self._link.cancel()  # tear the link down; the runner dials a new one

    def view(self) -> HealthView:
        """What ``/health/ready`` shows now."""
        return subscriber.view(self.cfg, self.state, self.timers.now())

    # ------------------------------------------------------------ fan-out

    def register(self, topic: str, listener: Listener) -> None:
        """Fan ``topic``'s live events out to ``listener`` from now on."""
        self._listeners.setdefault(topic, set()).add(listener)

    def unregister(self, topic: str, listener: Listener) -> None:
        """Stop fanning ``topic`` out to ``listener``."""
        listeners = self._listeners.get(topic)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[topic]

    def dispatch(self, channel: str, data: bytes | str) -> None:
        """Handle one pub/sub message: a sentinel, or an event for local streams.

        Nothing a message holds can break the link: a bad one is counted and dropped,
        and a listener's error is logged and contained.
        """
        if channel == self.sentinel_channel:
            try:
                token = int(data)
            except ValueError:
                token = -1
            if not 0 <= token < 2**63:
                self.metrics.bus_rejected.labels(reason="sentinel").inc()
                return
            self.metrics.sentinel_round_trips.inc()
            self.feed(subscriber.SentinelReceived(now=self.timers.now(), token=token))
            return
        try:
            msg = decode_message(data, self._key, max_data_bytes=self._max_data_bytes)
        except BadMessage as exc:
            self.metrics.bus_rejected.labels(reason=exc.reason).inc()
            log.warning("bus message refused", extra={"reason": exc.reason, "detail": str(exc)})
            return
        listeners = self._listeners.get(msg.topic)
        if not listeners:
            return
        msg = msg._replace(frame=encode_frame(str(msg.event_id), msg.type, msg.data))
        for listener in list(listeners):
            try:
                listener(msg)
            except Exception:
                self.metrics.listener_errors.inc()
                log.exception("a stream failed to take a live event",
                              extra={"topic": msg.topic})

    async def publish(self, msg: LiveMessage) -> None:
        """Publish a committed event to every replica (signed when the bus has a key)."""
        body = encode_message(msg, self._key)
        # The fast lane: a connection this bus holds, one command and its reply, none of
        # the pool's per-command checkout (a wait condition, a timeout, a readiness
        # probe, telemetry), which cost as much as the command itself. Any error sends
        # the publish down the client's path below, with its reconnects and retries; a
        # PUBLISH sent twice is a duplicate the sessions drop.
        pool = self.publisher.connection_pool
        conn = self._spare.pop() if self._spare else None
        if conn is None and self._held < _HELD:
            self._held += 1  # counted before the wait: a burst must not all pass the cap
            try:
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            except _LINK_ERRORS:
                self._held -= 1  # the client's path below reconnects and retries
            except BaseException:
                self._held -= 1
                raise
        if conn is not None:
            try:
                await conn.send_command("PUBLISH", self.events_channel, body)
                await conn.read_response()
            except _LINK_ERRORS:
                await self._drop(conn)  # redis-py has disconnected it; fall through
            except BaseException:
                await self._drop(conn)  # cancelled mid-command: its reply is unread
                raise
            else:
                if self._closing:
                    await self._drop(conn)
                else:
                    self._spare.append(conn)
                return
        await self.publisher.publish(self.events_channel, body)

    async def _drop(self, conn: Any) -> None:
        """Give a held connection back to the pool, disconnected."""
        self._held -= 1
        with contextlib.suppress(Exception):
            await conn.disconnect()
        await self.publisher.connection_pool.release(conn)

    # ------------------------------------------------------------ the link

    async def start(self) -> None:
        """Start the subscriber link (it reports Ready once subscribed)."""
        self._timers = self._timers or LoopTimers()
        self._runner = asyncio.create_task(self._run(), name="sselab-subscriber")

    async def stop(self) -> None:
        """Stop the link, the timers and the publisher."""
        self._closing = True
        self.timers.cancel_all()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        for task in list(self._tasks):
            task.cancel()
        while self._spare:
            await self._drop(self._spare.pop())
        await self.publisher.aclose(close_connection_pool=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_sentinel(self, token: int) -> None:
        try:
            await self.publisher.publish(self.sentinel_channel, str(token))
        except Exception as exc:  # the missing round trip will tell the machine
            log.warning("sentinel publish failed", extra={"error": repr(exc)})

    async def _run(self) -> None:
        first = True
        while not self._closing:
            if not first:
                self.metrics.subscriber_reconnects.inc()
            first = False
            self._link = asyncio.create_task(self._serve_link(), name="sselab-subscriber-link")
            try:
                await self._link
                reason = "connection closed"
            except asyncio.CancelledError:
                if self._closing or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                reason = "torn down to resubscribe"
            except Exception as exc:
                reason = f"connection lost: {exc.__class__.__name__}: {exc}"[:200]
            if self._closing:
                return
            self.feed(subscriber.Reconnecting(now=self.timers.now(), reason=reason))
            await asyncio.sleep(self._retry_s)

    async def _serve_link(self) -> None:
        client = aioredis.Redis.from_url(
            self._subscriber_url, client_name=self.subscriber_name,
            retry=Retry(NoBackoff(), 0), socket_connect_timeout=self.cfg.sentinel_timeout)
        pubsub = client.pubsub()
        try:
            # A link that cannot subscribe within the sentinel timeout is as good as dead.
            async with asyncio.timeout(self.cfg.sentinel_timeout):
                await pubsub.subscribe(self.events_channel, self.sentinel_channel)
                confirmed = 0
                while confirmed < 2:
                    msg = await pubsub.get_message(timeout=self.cfg.sentinel_timeout)
                    if msg is not None and msg["type"] == "subscribe":
                        confirmed += 1
            self.feed(subscriber.Ready(now=self.timers.now()))
            while True:
                # A blocking read: the sentinel round trips, not a read timeout, tell a
                # dead link (and a timed read costs a readiness probe per message).
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if msg is not None and msg["type"] == "message":
                    channel = msg["channel"]
                    self.dispatch(channel.decode() if isinstance(channel, bytes) else channel,
                                  msg["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()
