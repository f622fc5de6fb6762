"""One SSE connection: the shell around ``model.session``, and its bounded outbox.

The machine decides what to replay, when to truncate, what to say when a replay
fails, how to order live events, when to send a heartbeat and when a failed
resync ends the stream. This shell runs its ``QueryReplay`` on Postgres, keeps
the frames of events until the machine says ``Send``, writes frames to a bounded
:class:`Outbox`, and arms its timers. Actions are carried out through one
``{action: handler}`` table (``model.core.dispatch``): an action without a
handler is a loud error, never silently dropped.

Order at open, as ``model.session`` requires: the stream is registered for live
fan-out first, the topic row is read second, and ``Open`` is fed third; live
events that arrive before ``Open`` are held and fed right after it (the machine
takes no ``LiveEvent`` before ``Open``).

Back-pressure. Every frame is encoded once per event (a live event's frame comes
from the bus, shared by every stream of its topic) and queued as bytes. The
outbox holds at most ``max_frames`` frames and ``max_bytes`` bytes; a frame that
does not fit means the client is not reading fast enough: the stream is ended at
once (its pending frames dropped) and counted as a slow consumer. The client
resumes from the last id it received, so nothing is lost. The same clean end is
used at token expiry, on revocation, on shutdown and for the machine's
``EndStream``; a client that does not read at all is cut off by the send timeout.

Revocation is the machine's call too: before every replay, at token expiry and at
each periodic re-check the shell feeds ``Revoked`` when the token is no longer
valid, and ``model.session`` ends the stream (``reauthorize`` on) or keeps it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from model import session
from model.core import Action, CancelTimer, EventId, Log, StartTimer, dispatch
from model.session import Phase, SessionConfig, TopicHead
from service import trace
from service.bus import LiveMessage
from service.frames import encode_frame
from service.logs import log_action
from service.metrics import Metrics
from service.store import ReplayResult
from service.timers import Timers

__all__ = ["Outbox", "StreamSession"]

log = logging.getLogger("sselab.stream")

Replay = Callable[[str, int, int | None, int | None], Awaitable[ReplayResult]]
HeadReader = Callable[[str], Awaitable[TopicHead]]
Reauthorize = Callable[[], Awaitable[bool]]

_HEARTBEAT = encode_frame(None, "heartbeat", "{}")
#: The actions that show a session started catching up (a replay, or a truncation past the limit).
_CATCH_UP = (session.QueryReplay, session.SendTruncated)


class Outbox:
    """A stream's outgoing frames, bounded in count and bytes; ended once, for a reason."""

    def __init__(self, *, max_frames: int = 2000, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.ended: str | None = None  #: why the stream ends (None while it runs)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size(self) -> int:
        """Bytes waiting to be written."""
        return self._bytes

    def put(self, frame: bytes) -> bool:
        """Queue a frame; False when it does not fit (the consumer is too slow)."""
        if self.ended is not None:
            return True  # the stream is ending: nothing more goes out
        if len(self._frames) >= self.max_frames or self._bytes + len(frame) > self.max_bytes:
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._ready.set()
        return True

    def end(self, reason: str) -> None:
        """End the stream now: pending frames are dropped (the client resumes from its cursor)."""
        if self.ended is None:
            self.ended = reason
            self._frames.clear()
            self._bytes = 0
            self._ready.set()

    def take(self, max_bytes: int = 256 * 1024) -> bytes | None:
        """Every pending frame (up to about ``max_bytes``) as one chunk, or None when empty."""
        if not self._frames:
            return None
        if len(self._frames) == 1:
            chunk = self._frames.popleft()
        else:
            parts = [self._frames.popleft()]
            size = len(parts[0])
            while self._frames and size + len(self._frames[0]) <= max_bytes:
                parts.append(self._frames.popleft())
                size += len(parts[-1])
            chunk = b"".join(parts)
        self._bytes -= len(chunk)
        return chunk

    async def get(self) -> bytes | None:
        """The next chunk to write; None once the stream has ended."""
        while True:
            if self.ended is not None:
                return None
            chunk = self.take()
            if chunk is not None:
                return chunk
            self._ready.clear()
            await self._ready.wait()

    def drain(self) -> list[bytes]:
        """Take every pending frame, one by one (tests)."""
        out = list(self._frames)
        self._frames.clear()
        self._bytes = 0
        return out


class StreamSession:
    """The shell of one stream's session machine."""

    def __init__(self, *, topic: str, cfg: SessionConfig, timers: Timers, replay: Replay,
                 read_head: HeadReader, metrics: Metrics | None = None,
                 trace_id: str = "", outbox: Outbox | None = None,
                 reauthorize: Reauthorize | None = None) -> None:
        self.topic = topic
        self.cfg = cfg
        self.timers = timers
        self.state = session.initial()
        self.outbox = outbox if outbox is not None else Outbox()
        self._replay = replay
        self._read_head = read_head
        self._metrics = metrics
        self._reauthorize = reauthorize
        #: event id -> (encoded frame, commit time), held until the machine says Send
        self._payloads: dict[EventId, tuple[bytes, float]] = {}
        self._early: list[LiveMessage] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trace = trace.from_env()
        self.trace_id = trace_id or f"{topic}/{id(self):x}"
        self._handlers: dict[type[Action], Callable[[Any], object]] = {
            session.Send: self._send,
            session.SendHeartbeat: self._send_heartbeat,
            session.SendTruncated: self._send_truncated,
            session.SendFailed: self._send_failed,
            session.QueryReplay: lambda a: self._spawn(self._query(a)),
            session.EndStream: lambda a: self.end(a.reason),
            StartTimer: self._start_timer,
            CancelTimer: lambda a: self.timers.cancel(a.timer),
            session.AnnounceHead: self._announce_head,
            Log: lambda a: log_action(log, a, topic=self.topic),
        }

    # ------------------------------------------------------------ inputs from the world

    def open(self, last_event_id: EventId | None, topic: TopicHead) -> None:
        """Feed ``Open`` with the client's cursor and the topic row, then any held events."""
        self._feed(session.Open(now=self.timers.now(), last_event_id=last_event_id, topic=topic))
        early, self._early = self._early, []
        for msg in early:
            self.live(msg)

    def live(self, msg: LiveMessage) -> None:
        """A live event of this topic arrived from the bus."""
        if self.state.phase is Phase.NEW:
            self._early.append(msg)
            return
        if msg.event_id not in self._payloads:
            frame = msg.frame or encode_frame(str(msg.event_id), msg.type, msg.data)
            self._payloads[msg.event_id] = (frame, msg.committed_at)
        # The machine drops an event of another epoch (``event-epoch``).
        self._feed(session.LiveEvent(now=self.timers.now(), seq=msg.event_id.seq,
                                     epoch=msg.event_id.epoch))

    def resync(self) -> None:
        """The subscriber recovered: read the head, then feed ``Resync`` (or ``ResyncFailed``)."""
        self._spawn(self._resync())

    def resync_to(self, head: TopicHead) -> None:
        """Feed ``Resync`` with a head read for this stream (batched by the caller)."""
        if self._metrics is not None:
            self._metrics.resyncs.inc()
        self._feed(session.Resync(now=self.timers.now(), topic=head))

    def probe(self, head: TopicHead) -> bool:
        """Feed ``HeadProbed`` with the head the replica's probe read; True if a catch-up started.

        The machine decides (fix ``head-probe``); a catch-up shows as its replay query
        or, for a gap past the limit, its ``replay-truncated``.
        """
        actions = self._feed(session.HeadProbed(now=self.timers.now(), topic=head))
        return any(isinstance(a, _CATCH_UP) for a in actions)

    def resync_failed(self, reason: str) -> None:
        """The head read a resync needs failed: the machine decides (it ends the stream)."""
        self._feed(session.ResyncFailed(now=self.timers.now(), reason=reason[:200]))

    def revoked(self, reason: str) -> None:
        """The token is revoked or expired: tell the machine (it decides whether to end)."""
        self._feed(session.Revoked(now=self.timers.now(), reason=reason))

    def end(self, reason: str) -> None:
        """End the stream cleanly now (expiry, revocation, slow consumer, shutdown, machine)."""
        if self.outbox.ended is None:
            self.outbox.end(reason)
            if self._metrics is not None:
                self._metrics.streams_ended.labels(reason=reason).inc()

    def close(self) -> None:
        """The client went away (or the replica closed the stream)."""
        self._feed(session.Close(now=self.timers.now()))
        for task in list(self._tasks):
            task.cancel()
        self.timers.cancel_all()
        self._payloads.clear()

    @property
    def closed(self) -> bool:
        """Whether the session has closed."""
        return self.state.phase is Phase.CLOSED

    # ------------------------------------------------------------ the machine

    def _feed(self, event: session.SessionInput) -> list[Action]:
        if self.state.phase is Phase.CLOSED:
            return []  # a closed session takes no input: late query results are dropped
        self.state, actions = session.step(self.cfg, self.state, event)
        if self._trace is not None:
            self._trace.step("session", self.trace_id, event, self.state.phase.value, actions,
                             now=self.timers.now(), detail={"user": self.topic})
        dispatch(self._handlers, actions, shell="service.stream")
        if self._payloads:
            epoch, cursor = self.state.epoch, self.state.cursor
            stale = [k for k in self._payloads if k.seq <= cursor or k.epoch != epoch]
            for key in stale:
                del self._payloads[key]  # sent, covered by a signal, or not of this log
        return actions

    def _write(self, frame: bytes) -> None:
        if not self.outbox.put(frame):
            if self._metrics is not None:
                self._metrics.slow_consumers.labels(reason="buffer").inc()
            log.warning("slow consumer: stream buffer full; ending the stream",
                        extra={"topic": self.topic, "frames": len(self.outbox),
                               "bytes": self.outbox.size})
            self.end("slow-consumer")

    def _send(self, action: session.Send) -> None:
        payload = self._payloads.get(action.event_id)
        if payload is None:
            log.error("no payload for an event the session sent",
                      extra={"topic": self.topic, "event_id": str(action.event_id)})
            return
        self._write(payload[0])
        m = self._metrics
        if m is not None:
            m.sent.inc()
            m.fanout_latency.observe(max(0.0, time.time() - payload[1]))

    def _send_heartbeat(self, action: session.SendHeartbeat) -> None:
        self._write(_HEARTBEAT)
        if self._metrics is not None:
            self._metrics.heartbeats.inc()

    def _announce_head(self, action: session.AnnounceHead) -> None:
        # An id-only message (``announce-head``): no ``data:``, so no event is dispatched,
        # yet Chromium's EventSource adopts the id as its lastEventId and sends it back
        # as Last-Event-ID on its own reconnect (tests/integration/test_browser_eventsource).
        self._write(f"id: {action.head}\r\n\r\n".encode())

    def _send_truncated(self, action: session.SendTruncated) -> None:
        data = {"head": str(action.head), "limit": action.limit, "reason": action.reason.value}
        self._write(encode_frame(None, "replay-truncated", json.dumps(data)))
        if self._metrics is not None:
            self._metrics.truncated.labels(reason=action.reason.value).inc()

    def _send_failed(self, action: session.SendFailed) -> None:
        self._write(encode_frame(None, "replay-failed", json.dumps({"reason": action.reason})))
        if self._metrics is not None:
            self._metrics.replay_failed.inc()

    def _start_timer(self, action: StartTimer) -> None:
        name = action.timer
        def fire() -> None:
            self._feed(session.TimerFired(now=self.timers.now(), timer=name))
        self.timers.start(name, action.at, fire)

    async def _query(self, action: session.QueryReplay) -> None:
        if self._reauthorize is not None:
            try:
                allowed = await self._reauthorize()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("token re-check before a replay failed",
                            extra={"topic": self.topic, "error": exc.__class__.__name__})
                allowed, reason = False, "reauthorize-unavailable"
            else:
                reason = "revoked"
            if not allowed:
                self.revoked(reason)
                if self.closed:
                    return
        try:
            result = await self._replay(self.topic, action.after, action.upto, action.limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.replays.labels(outcome="failed").inc()
            log.warning("replay query failed", extra={"topic": self.topic, "error": repr(exc)})
            self._feed(session.ReplayError(now=self.timers.now(),
                                           reason=_reason(exc)))
            return
        if self._metrics is not None:
            self._metrics.replays.labels(outcome="rows").inc()
            self._metrics.replay_rows.inc(len(result.rows))
        epoch = self.state.epoch
        for row in result.rows:
            event_id = EventId(epoch, row.seq)
            if event_id not in self._payloads:
                self._payloads[event_id] = (encode_frame(str(event_id), row.type, row.data),
                                            row.created_at)
        self._feed(session.ReplayRows(now=self.timers.now(),
                                      seqs=tuple(r.seq for r in result.rows), floor=result.floor))

    async def _resync(self) -> None:
        try:
            head = await self._read_head(self.topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("resync head read failed", extra={"topic": self.topic,
                                                          "error": repr(exc)})
            self.resync_failed(_reason(exc))
            return
        self.resync_to(head)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug in this shell, not a fault of the world: say so, and end the stream
            # so the client resumes from its cursor instead of waiting on a dead session.
            log.error("stream task failed; ending the stream", exc_info=task.exception(),
                      extra={"topic": self.topic})
            self.end("internal-error")


def _reason(exc: BaseException) -> str:
    """What the client is told about a failure: its kind and a short, address-free text."""
    text = getattr(exc, "client_reason", None)
    return str(text) if text else f"{exc.__class__.__name__}"[:200]
