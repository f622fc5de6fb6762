"""One SSE connection: the shell around ``model.session``.

The machine decides what to replay, when to truncate, what to say when a replay
fails, how to order live events and when to send a heartbeat. This shell runs
its ``QueryReplay`` on Postgres, keeps the payloads of events until the machine
says ``Send``, writes frames to an outgoing queue, and arms its timers.

Order at open, as ``model.session`` requires: the stream is registered for live
fan-out first, the topic row is read second, and ``Open`` is fed third; live
events that arrive before ``Open`` are held and fed right after it (the machine
takes no ``LiveEvent`` before ``Open``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from model import session
from model.core import Action, CancelTimer, EventId, Log, StartTimer
from model.session import Phase, SessionConfig, TopicHead
from service import trace
from service.bus import LiveMessage
from service.logs import log_action
from service.metrics import Metrics
from service.store import ReplayResult
from service.timers import Timers

__all__ = ["Frame", "StreamSession"]

log = logging.getLogger("sselab.stream")

#: What the endpoint writes: (event id or None, event type, data JSON text); None ends it.
Frame = tuple[str | None, str, str]

Replay = Callable[[str, int, int | None, int | None], Awaitable[ReplayResult]]
HeadReader = Callable[[str], Awaitable[TopicHead]]


class StreamSession:
    """The shell of one stream's session machine."""

    def __init__(self, *, topic: str, cfg: SessionConfig, timers: Timers, replay: Replay,
                 read_head: HeadReader, metrics: Metrics | None = None,
                 trace_id: str = "") -> None:
        self.topic = topic
        self.cfg = cfg
        self.timers = timers
        self.state = session.initial()
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._replay = replay
        self._read_head = read_head
        self._metrics = metrics
        #: event id -> (type, data JSON, commit time), held until the machine says Send
        self._payloads: dict[EventId, tuple[str, str, float]] = {}
        self._early: list[LiveMessage] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trace = trace.from_env()
        self.trace_id = trace_id or f"{topic}/{id(self):x}"

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
        self._payloads.setdefault(msg.event_id, (msg.type, msg.data, msg.committed_at))
        # The machine drops an event of another epoch (``event-epoch``).
        self._feed(session.LiveEvent(now=self.timers.now(), seq=msg.event_id.seq,
                                     epoch=msg.event_id.epoch))

    def resync(self) -> None:
        """The subscriber recovered: read the head and feed ``Resync``."""
        self._spawn(self._resync())

    def close(self) -> None:
        """The client went away (or the replica closes the stream)."""
        self._feed(session.Close(now=self.timers.now()))
        for task in list(self._tasks):
            task.cancel()
        self.timers.cancel_all()

    @property
    def closed(self) -> bool:
        """Whether the session has closed."""
        return self.state.phase is Phase.CLOSED

    # ------------------------------------------------------------ the machine

    def _feed(self, event: session.SessionInput) -> None:
        if self.state.phase is Phase.CLOSED:
            return  # a closed session takes no input: late query results are dropped
        self.state, actions = session.step(self.cfg, self.state, event)
        if self._trace is not None:
            self._trace.step("session", self.trace_id, event, self.state.phase.value, actions,
                             now=self.timers.now(), detail={"user": self.topic})
        for action in actions:
            self._perform(action)
        epoch, cursor = self.state.epoch, self.state.cursor
        for key in [k for k in self._payloads if k.seq <= cursor or k.epoch != epoch]:
            del self._payloads[key]  # sent, covered by a signal, or not of this log

    def _perform(self, action: Action) -> None:
        m = self._metrics
        if isinstance(action, session.Send):
            payload = self._payloads.get(action.event_id)
            if payload is None:
                log.error("no payload for an event the session sent",
                          extra={"topic": self.topic, "event_id": str(action.event_id)})
                return
            self.queue.put_nowait((str(action.event_id), payload[0], payload[1]))
            if m is not None:
                m.sent.inc()
                m.fanout_latency.observe(max(0.0, time.time() - payload[2]))
        elif isinstance(action, session.SendHeartbeat):
            self.queue.put_nowait((None, "heartbeat", "{}"))
            if m is not None:
                m.heartbeats.inc()
        elif isinstance(action, session.SendTruncated):
            data = {"head": str(action.head), "limit": action.limit, "reason": action.reason.value}
            self.queue.put_nowait((None, "replay-truncated", json.dumps(data)))
            if m is not None:
                m.truncated.labels(reason=action.reason.value).inc()
        elif isinstance(action, session.SendFailed):
            self.queue.put_nowait((None, "replay-failed", json.dumps({"reason": action.reason})))
            if m is not None:
                m.replay_failed.inc()
        elif isinstance(action, session.QueryReplay):
            self._spawn(self._query(action))
        elif isinstance(action, StartTimer):
            name = action.timer
            self.timers.start(name, action.at, lambda: self._feed(
                session.TimerFired(now=self.timers.now(), timer=name)))
        elif isinstance(action, CancelTimer):
            self.timers.cancel(action.timer)
        elif isinstance(action, Log):
            log_action(log, action, topic=self.topic)

    async def _query(self, action: session.QueryReplay) -> None:
        try:
            result = await self._replay(self.topic, action.after, action.upto, action.limit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.replays.labels(outcome="failed").inc()
            log.warning("replay query failed", extra={"topic": self.topic, "error": repr(exc)})
            self._feed(session.ReplayError(now=self.timers.now(),
                                           reason=f"{exc.__class__.__name__}: {exc}"[:200]))
            return
        if self._metrics is not None:
            self._metrics.replays.labels(outcome="rows").inc()
            self._metrics.replay_rows.inc(len(result.rows))
        for row in result.rows:
            self._payloads.setdefault(EventId(self.state.epoch, row.seq),
                                      (row.type, row.data, row.created_at))
        self._feed(session.ReplayRows(now=self.timers.now(),
                                      seqs=tuple(r.seq for r in result.rows), floor=result.floor))

    async def _resync(self) -> None:
        try:
            head = await self._read_head(self.topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The machine has no input for "could not read the head"; end the stream
            # so the client reconnects and replays from its cursor instead.
            log.warning("resync head read failed; closing the stream",
                        extra={"topic": self.topic, "error": repr(exc)})
            self.queue.put_nowait(None)
            return
        if self._metrics is not None:
            self._metrics.resyncs.inc()
        self._feed(session.Resync(now=self.timers.now(), topic=head))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
