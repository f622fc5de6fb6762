"""The bench: one client, one replica session and one subscriber, on fake time.

What it is. The smallest shell that carries out the machines' actions, for the
seed's five verification steps (:mod:`sims.seed`) and the reports that script an
outage against a single client. It decides nothing (house style point 6):

* **Fake time.** One timer book, :class:`model.timers.FakeTimers` (the one the
  service's tests use): every scripted happening and every machine timer is a
  named entry in it, and the clock jumps to the next one. ``StartTimer``
  (re-)arms a machine's timer, ``CancelTimer`` drops it, and a timer that was
  cancelled or re-armed never reaches its machine.
* **One dispatch contract.** Each machine's actions are carried out through a
  ``{action class: handler}`` table with :func:`model.core.dispatch`; an action
  without a handler raises :class:`~model.core.UnhandledActionError`. Actions the
  bench deliberately leaves alone (logs, status and health changes: the step log
  already shows them) are listed with :func:`model.core.ignore`.
* **A fake Postgres topic log**: epoch, head and retention floor; replay queries
  read ``after < seq <= upto`` up to ``limit`` rows (every query and the rows it
  read are recorded); the next ``n`` replay queries can be told to fail;
  snapshots read the head and the data in the order the client asks for.
* **A fake replica**: one session per accepted stream, subscribed to live
  fan-out before it reads the topic row, as ``model.session`` expects. A
  session's ``EndStream`` closes the stream at both ends.
* **A fake Redis link** between the replica's subscriber and the server: publishes
  fan out and sentinels come back, unless the link has died silently, in which
  case both vanish without an error. ``Resubscribe`` makes a new, working link.
* **A fake lossy network link** between the client and the replica: latency,
  refused connects (replicas down), slow connects, and stalls (frames of a
  stream silently dropped while both ends think it is open).

Nothing here sleeps; a whole scenario runs in milliseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from collections.abc import Callable, Iterable
from typing import Any

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.core import Action, CancelTimer, EventId, Input, Log, StartTimer, dispatch, ignore
from model.fixes import Fixes
from model.timers import FakeTimers

__all__ = ["LINK_LATENCY", "QUERY_TIME", "REDIS_LATENCY", "SNAPSHOT_TIME", "Bench", "Step"]

#: One-way latency of the client <-> replica link, seconds.
LINK_LATENCY = 0.05
#: Time a replay query takes, seconds.
QUERY_TIME = 0.02
#: Time a snapshot (re-hydration) takes, seconds.
SNAPSHOT_TIME = 0.2
#: One-way latency of the replica <-> Redis link, seconds.
REDIS_LATENCY = 0.01



@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened: when, to whom (or by whom), and what."""

    at: float
    actor: str
    text: str

    def __str__(self) -> str:
        return f"{self.at:8.2f}s  {self.actor:<10} {self.text}"



# ---------------------------------------------------------------- describing things

# ---------------------------------------------------------------- describing things

_HIDDEN_FIELDS = frozenset({"now", "u", "fields"})
_ROUTINE_TIMERS = frozenset({cl.HEARTBEAT, sb.SENTINEL})


def _value(value: object) -> str:
    if isinstance(value, EventId):
        return str(value)
    if isinstance(value, se.TopicHead):
        return f"epoch {value.epoch} head {value.head} floor {value.floor}"
    if isinstance(value, cl.Status | se.TruncateReason | sb.Health):
        return str(value.value)
    if isinstance(value, tuple) and len(value) > 6:
        return f"({value[0]}..{value[-1]}: {len(value)} items)"
    return repr(value) if isinstance(value, str) else str(value)


def _show(obj: Input | Action) -> str:
    """``Name(field=value, ...)`` without ``now`` and draws, event ids in wire form."""
    if isinstance(obj, Log):
        return f"log {obj.level} {obj.message!r}"
    if isinstance(obj, cl.StatusChanged):
        return f"status {obj.status.value} (counter {obj.attempts})"
    if isinstance(obj, StartTimer):
        return f"timer {obj.timer} at {obj.at:.2f}s"
    if isinstance(obj, CancelTimer):
        return f"cancel timer {obj.timer}"
    parts = [f"{f.name}={_value(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
             if f.name not in _HIDDEN_FIELDS]
    return f"{type(obj).__name__}({', '.join(parts)})"


def _shown_actions(actions: Iterable[Action]) -> list[str]:
    return [_show(a) for a in actions
            if not (isinstance(a, StartTimer | CancelTimer) and a.timer in _ROUTINE_TIMERS)
            and not isinstance(a, se.SendHeartbeat)]



# ---------------------------------------------------------------- the shell


class Bench:
    """A deterministic shell around one client, one replica session and one subscriber."""

    def __init__(self, fixes: Fixes, *, replay_limit: int = 1000, max_attempts: int = 50,
                 seed: int = 0) -> None:
        self.fixes = fixes
        self.client_cfg = cl.ClientConfig(max_attempts=max_attempts, fixes=fixes)
        self.session_cfg = se.SessionConfig(replay_limit=replay_limit, fixes=fixes)
        self.subscriber_cfg = sb.SubscriberConfig(fixes=fixes)
        self.timers = FakeTimers()  #: the one timer book: scripted happenings and machine timers
        self.steps: list[Step] = []
        self._happenings = itertools.count()
        self._rng = random.Random(seed)
        # client
        self.client = cl.initial()
        self.client_hooks: list[Callable[[cl.ClientInput, cl.ClientState, list[Action]], None]] = []
        self.opens: list[float] = []  #: when each OpenStream was carried out
        self.delivered: list[int] = []  #: seqs handed to the application
        self.covered = 0  #: the last snapshot holds every seq up to this one
        self.effects: list[tuple[float, str]] = []  #: ("open" | "rehydrate" | "rehydrated")
        self.signals: list[str] = []  #: control events the client received
        # network link
        self.refuse = False
        self.connect_delay = LINK_LATENCY
        self.stall_new_streams = False  #: replicas accept streams but never send a byte
        self.stream_id = 0  #: the client's current stream (0: none)
        self._stream_ids = itertools.count(1)
        self.stalled: set[int] = set()
        self.frames_dropped = 0
        # replica
        self.session: se.SessionState | None = None
        self.session_stream = 0
        # postgres
        self.epoch = 0
        self.head = 0
        self.floor = 0
        self.fail_replays = 0
        self.queries: list[tuple[int | None, int]] = []  #: (limit asked, rows read)
        self.failed_queries = 0
        # redis
        self.redis_alive = True
        self.subscriber = sb.initial()
        self.resubscribes = 0
        self.resyncs = 0
        # the machines' actions: {action class: handler}, carried out by model.core.dispatch
        self._acting_stream = 0  #: the stream whose session's actions are being carried out
        self.client_handlers: dict[type[Any], Callable[[Any], object]] = {
            cl.OpenStream: self._open_stream,
            cl.CloseStream: self._close_stream,
            cl.Deliver: self._deliver,
            cl.StartRehydrate: self._start_rehydrate,
            StartTimer: self._start_client_timer,
            CancelTimer: functools.partial(self._cancel_timer, "client"),
            cl.StatusChanged: ignore,  # the bench has no UI: the step log shows the status
            Log: ignore,  # the step log shows it
        }
        self.session_handlers: dict[type[Any], Callable[[Any], object]] = {
            se.QueryReplay: self._query_replay,
            se.Send: self._send,
            se.SendTruncated: self._send_truncated,
            se.SendFailed: self._send_failed,
            se.SendHeartbeat: self._send_heartbeat,
            se.EndStream: self._end_stream,
            se.AnnounceHead: self._announce_head,
            StartTimer: self._start_session_timer,
            CancelTimer: functools.partial(self._cancel_timer, "session"),
            Log: ignore,  # the step log shows it
        }
        self.subscriber_handlers: dict[type[Any], Callable[[Any], object]] = {
            sb.PublishSentinel: self._publish_sentinel,
            sb.Resubscribe: self._resubscribe,
            sb.ResyncStreams: self._resync_streams,
            StartTimer: self._start_subscriber_timer,
            CancelTimer: functools.partial(self._cancel_timer, "subscriber"),
            sb.HealthChanged: ignore,  # the facts read the subscriber's state; the step log shows it
            Log: ignore,  # the step log shows it
        }

    # -------------------------------------------------------------- time

    @property
    def now(self) -> float:
        """The fake time."""
        return self.timers.now()

    def at(self, when: float, thunk: Callable[[], None]) -> None:
        """Schedule ``thunk`` at absolute fake time ``when`` (FIFO among equal times)."""
        self.timers.start(f"happening {next(self._happenings)}", max(when, self.now), thunk)

    def script(self, when: float, text: str, thunk: Callable[[], object]) -> None:
        """Schedule a scripted happening, logged as ``text``."""
        def run() -> None:
            self.note("script", text)
            thunk()
        self.at(when, run)

    def run_until(self, end: float) -> None:
        """Carry out everything due up to ``end``, then set the clock to ``end``."""
        self.timers.advance_to(max(self.now, end))

    def note(self, actor: str, text: str) -> None:
        """Add a step to the log."""
        self.steps.append(Step(round(self.now, 6), actor, text))

    def _arm(self, owner: str, timer: str, when: float, fire: Callable[[float], None]) -> None:
        self.timers.start(f"{owner} {timer}", max(when, self.now), lambda: fire(self.now))

    def _cancel_timer(self, owner: str, action: CancelTimer) -> None:
        self.timers.cancel(f"{owner} {action.timer}")

    def armed(self, owner: str, timer: str) -> bool:
        """Whether ``owner``'s timer is armed."""
        return f"{owner} {timer}" in self.timers.armed()

    # -------------------------------------------------------------- postgres

    def publish(self, count: int = 1) -> list[int]:
        """Commit ``count`` events on the topic and fan each out through Redis."""
        seqs = []
        for _ in range(count):
            self.head += 1
            seq = self.head
            seqs.append(seq)
            if self.redis_alive:
                self.at(self.now + REDIS_LATENCY, functools.partial(self._fan_out, seq))
        lost = "" if self.redis_alive else " (its fan-out is lost on the dead subscriber link)"
        shown = f"0-{seqs[0]}" if count == 1 else f"0-{seqs[0]}..0-{seqs[-1]}"
        self.note("publisher", f"commits {count} event{'s' if count > 1 else ''} {shown}{lost}")
        return seqs

    def topic(self) -> se.TopicHead:
        """The topic row as the replica reads it."""
        return se.TopicHead(self.epoch, self.head, self.floor)

    def missing(self) -> list[int]:
        """Committed seqs the client has neither been handed nor holds in its snapshot."""
        have = set(self.delivered)
        return [s for s in range(1, self.head + 1) if s > self.covered and s not in have]

    def _replay(self, stream: int, after: int, upto: int | None, limit: int | None) -> None:
        if self.session is None or self.session_stream != stream:
            return
        if self.fail_replays > 0:
            self.fail_replays -= 1
            self.failed_queries += 1
            self.note("postgres", "replay query fails: canceling statement due to statement timeout")
            self.session_input(se.ReplayError(reason="statement timeout", now=self.now))
            return
        rows = [s for s in range(max(after, self.floor) + 1, self.head + 1)
                if upto is None or s <= upto]
        if limit is not None:
            rows = rows[:limit]
        self.queries.append((limit, len(rows)))
        self.note("postgres", f"replay query read {len(rows)} row{'' if len(rows) == 1 else 's'} "
                              f"(limit {'none' if limit is None else limit})")
        self.session_input(se.ReplayRows(seqs=tuple(rows), floor=self.floor, now=self.now))

    # -------------------------------------------------------------- client

    def client_input(self, event: cl.ClientInput) -> None:
        """Feed the client one input and carry out its actions."""
        before = self.client
        state, actions = cl.step(self.client_cfg, before, event)
        self.client = state
        if isinstance(event, cl.ReplayTruncated):
            self.signals.append("replay-truncated")
        elif isinstance(event, cl.ReplayFailed):
            self.signals.append("replay-failed")
        if not isinstance(event, cl.HeartbeatReceived):
            shown = _shown_actions(actions)
            if state.attempts != before.attempts and not any(
                    isinstance(a, cl.StatusChanged) for a in actions):
                shown.append(f"counter {before.attempts} → {state.attempts}")
            self.note("client", _show(event) + (" → " + "; ".join(shown) if shown else ""))
        for hook in self.client_hooks:
            hook(event, before, actions)
        dispatch(self.client_handlers, actions, shell="the bench's client")

    def _open_stream(self, action: cl.OpenStream) -> None:
        self.opens.append(self.now)
        self.effects.append((self.now, "open"))
        sid = next(self._stream_ids)
        self.stream_id = sid
        if self.refuse:
            self.at(self.now + LINK_LATENCY, lambda: self._refused(sid))
        else:
            last = action.last_event_id
            self.at(self.now + self.connect_delay, lambda: self._accept(sid, last))

    def _close_stream(self, action: cl.CloseStream) -> None:
        old, self.stream_id = self.stream_id, 0
        if self.session is not None and self.session_stream == old:
            self._close_session()

    def _deliver(self, action: cl.Deliver) -> None:
        self.delivered.append(action.event_id.seq)

    def _start_rehydrate(self, action: cl.StartRehydrate) -> None:
        self.effects.append((self.now, "rehydrate"))
        self._rehydrate(action.head_first)

    def _start_client_timer(self, action: StartTimer) -> None:
        def fire_client(now: float, name: str = action.timer) -> None:
            self.client_input(cl.TimerFired(timer=name, now=now, u=self._rng.random()))
        self._arm("client", action.timer, action.at, fire_client)

    def _rehydrate(self, head_first: bool) -> None:
        started_head = self.head

        def done() -> None:
            head, covered = ((started_head, self.head) if head_first
                             else (self.head, started_head))
            self.covered = max(self.covered, covered)
            self.effects.append((self.now, "rehydrated"))
            self.note("postgres", f"snapshot read: head 0-{head}")
            self.client_input(cl.RehydrateDone(head=EventId(self.epoch, head), now=self.now))
        self.at(self.now + SNAPSHOT_TIME, done)

    def _refused(self, stream: int) -> None:
        if self.stream_id != stream:
            return
        self.stream_id = 0
        self.client_input(cl.StreamFailed(reason="connection refused", now=self.now,
                                          u=self._rng.random()))

    def _frame(self, stream: int, make: Callable[[float], cl.ClientInput]) -> None:
        """Send a frame from the replica to the client over the (lossy) link."""
        if stream in self.stalled:
            self.frames_dropped += 1
            return

        def arrive() -> None:
            if self.stream_id == stream and self.client.stream:
                self.client_input(make(self.now))
        self.at(self.now + LINK_LATENCY, arrive)

    def drop_stream(self, reason: str = "network drop") -> None:
        """The network drops the client's stream (or the replica ends it); both ends see it."""
        stream = self.stream_id
        if self.session is not None and self.session_stream == stream:
            self._close_session()

        def arrive() -> None:
            if self.stream_id == stream and stream:
                self.stream_id = 0
                self.client_input(cl.StreamClosed(reason=reason, now=self.now,
                                                  u=self._rng.random()))
        self.at(self.now + LINK_LATENCY, arrive)

    def stall_stream(self) -> None:
        """The client's current stream goes silent in both directions without closing."""
        self.stalled.add(self.stream_id)

    # -------------------------------------------------------------- replica

    def _accept(self, stream: int, last: EventId | None) -> None:
        if self.stream_id != stream:
            return  # the client abandoned this attempt
        if self.session is not None:
            self._close_session()
        self.session = se.initial()
        self.session_stream = stream  # subscribed to live fan-out before the row is read
        self._frame(stream, lambda now: cl.StreamOpened(now=now))
        if self.stall_new_streams:
            self.stalled.add(stream)  # the 200 got through; nothing after it will
        self.session_input(se.Open(last_event_id=last, topic=self.topic(), now=self.now))

    def _close_session(self) -> None:
        if self.session is not None and self.session.phase is not se.Phase.CLOSED:
            self.session_input(se.Close(now=self.now))
        self.session = None
        self.session_stream = 0

    def session_input(self, event: se.SessionInput) -> None:
        """Feed the replica's session one input and carry out its actions."""
        assert self.session is not None
        state, actions = se.step(self.session_cfg, self.session, event)
        self.session = state
        routine = isinstance(event, se.TimerFired) or (
            isinstance(event, se.LiveEvent) and all(isinstance(a, se.Send) for a in actions))
        if not routine:
            shown = _shown_actions(actions)
            self.note("replica", _show(event) + (" → " + "; ".join(shown) if shown else ""))
        outer, self._acting_stream = self._acting_stream, self.session_stream
        dispatch(self.session_handlers, actions, shell="the bench's replica session")
        self._acting_stream = outer

    def _query_replay(self, action: se.QueryReplay) -> None:
        stream = self._acting_stream
        after, upto, limit = action.after, action.upto, action.limit
        self.at(self.now + QUERY_TIME, lambda: self._replay(stream, after, upto, limit))

    def _send(self, action: se.Send) -> None:
        event_id = action.event_id
        self._frame(self._acting_stream, lambda now: cl.EventReceived(event_id=event_id, now=now))

    def _send_truncated(self, action: se.SendTruncated) -> None:
        head, reason = action.head, action.reason.value
        self._frame(self._acting_stream,
                    lambda now: cl.ReplayTruncated(head=head, reason=reason, now=now))

    def _send_failed(self, action: se.SendFailed) -> None:
        why = action.reason
        self._frame(self._acting_stream, lambda now: cl.ReplayFailed(reason=why, now=now))

    def _announce_head(self, action: se.AnnounceHead) -> None:
        head = action.head
        self._frame(self._acting_stream, lambda now: cl.HeadAnnounced(head=head, now=now))

    def _send_heartbeat(self, action: se.SendHeartbeat) -> None:
        self._frame(self._acting_stream, lambda now: cl.HeartbeatReceived(now=now))

    def _end_stream(self, action: se.EndStream) -> None:
        """The replica ends the stream cleanly: both ends see it close."""
        if self.stream_id == self._acting_stream:
            self.drop_stream(reason=f"stream ended by the replica ({action.reason})")

    def _start_session_timer(self, action: StartTimer) -> None:
        stream = self._acting_stream

        def fire(now: float, name: str = action.timer) -> None:
            if self.session is not None and self.session_stream == stream:
                self.session_input(se.TimerFired(timer=name, now=now))
        self._arm("session", action.timer, action.at, fire)

    def _fan_out(self, seq: int) -> None:
        if self.redis_alive and self.session is not None and self.session.phase is not se.Phase.CLOSED:
            self.session_input(se.LiveEvent(seq=seq, now=self.now))

    # -------------------------------------------------------------- redis

    def kill_redis_link(self) -> None:
        """The subscriber's connection dies silently: no error, no data, no sentinels."""
        self.redis_alive = False

    def subscriber_input(self, event: sb.SubscriberInput) -> None:
        """Feed the replica's subscriber one input and carry out its actions."""
        state, actions = sb.step(self.subscriber_cfg, self.subscriber, event)
        self.subscriber = state
        routine = isinstance(event, sb.SentinelReceived) or (
            isinstance(event, sb.TimerFired) and event.timer == sb.SENTINEL
            and self.redis_alive)
        if not routine:
            shown = _shown_actions(actions)
            self.note("subscriber", _show(event) + (" → " + "; ".join(shown) if shown else ""))
        dispatch(self.subscriber_handlers, actions, shell="the bench's subscriber")

    def _publish_sentinel(self, action: sb.PublishSentinel) -> None:
        token = action.token

        def back() -> None:
            if self.redis_alive:  # a link that died meanwhile loses it too
                self.subscriber_input(sb.SentinelReceived(token=token, now=self.now))
        if self.redis_alive:
            self.at(self.now + 2 * REDIS_LATENCY, back)

    def _resubscribe(self, action: sb.Resubscribe) -> None:
        self.resubscribes += 1
        self.at(self.now + REDIS_LATENCY, lambda: self.subscriber_input(
            sb.Closed(reason="resubscribe: old connection torn down", now=self.now)))

        def ready() -> None:
            self.redis_alive = True  # a new connection, a working link
            self.subscriber_input(sb.Ready(now=self.now))
        self.at(self.now + 2 * REDIS_LATENCY, ready)

    def _resync_streams(self, action: sb.ResyncStreams) -> None:
        self.resyncs += 1
        if self.session is not None and self.session.phase is not se.Phase.CLOSED:
            self.session_input(se.Resync(topic=self.topic(), now=self.now))

    def _start_subscriber_timer(self, action: StartTimer) -> None:
        def fire_subscriber(now: float, name: str = action.timer) -> None:
            self.subscriber_input(sb.TimerFired(timer=name, now=now))
        self._arm("subscriber", action.timer, action.at, fire_subscriber)

