"""The seed's five verification steps, run through the machines on fake time.

The seed ends with five manual checks, one per fix (replay limit, replay failure,
heartbeat race, Redis health, max reconnect). Each is a function here that
scripts the check against the real machines of ``model/`` and returns an
:class:`Outcome`: the step-by-step log of what happened, the facts observed
(``rehydrated``, ``counter``, ``attempts_made``, ``detected_at``, ``failed``,
``recovered``, ...), whether the fixed behaviour was seen and whether the bug the
fix prevents was seen. Every scenario takes any :class:`~model.fixes.Fixes`, so
the same script shows the fix working with it on and the bug with it off.

The shell (:class:`Bench`) is the smallest one that carries out the machines'
actions, and it decides nothing (house style point 6):

* **Fake time.** A heap of pending happenings keyed by ``(at, order)``; the clock
  jumps to the next one. ``StartTimer`` (re-)arms a timer, ``CancelTimer`` drops
  it, and a timer that was cancelled or re-armed never reaches its machine.
* **A fake Postgres topic log**: epoch, head and retention floor; replay queries
  read ``after < seq <= upto`` up to ``limit`` rows (every query and the rows it
  read are recorded); the next ``n`` replay queries can be told to fail;
  snapshots read the head and the data in the order the client asks for.
* **A fake replica**: one session per accepted stream, subscribed to live
  fan-out before it reads the topic row, as ``model.session`` expects.
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
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.core import Action, CancelTimer, EventId, Input, Log, StartTimer
from model.fixes import FIXES, Fixes, resolve_fix_name

__all__ = [
    "ALL_FIXES",
    "LINK_LATENCY",
    "SCENARIOS",
    "Bench",
    "Fact",
    "Outcome",
    "Scenario",
    "Step",
    "heartbeat_race",
    "max_reconnect",
    "redis_health",
    "replay_failure",
    "replay_limit",
    "run_scenario",
]

#: One-way latency of the client <-> replica link, seconds.
LINK_LATENCY = 0.05
#: Time a replay query takes, seconds.
QUERY_TIME = 0.02
#: Time a snapshot (re-hydration) takes, seconds.
SNAPSHOT_TIME = 0.2
#: One-way latency of the replica <-> Redis link, seconds.
REDIS_LATENCY = 0.01

#: Every fix on: the default of every scenario.
ALL_FIXES = Fixes()

#: A fact's value: JSON-able scalars only.
Fact = bool | int | float | str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened: when, to whom (or by whom), and what."""

    at: float
    actor: str
    text: str

    def __str__(self) -> str:
        return f"{self.at:8.2f}s  {self.actor:<10} {self.text}"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one scenario run showed, and whether that is what its fix predicts."""

    scenario: str
    fix: str  #: canonical name of the fix the scenario verifies
    fix_on: bool  #: whether that fix was switched on for this run
    fixes: str  #: every switch, as ``str(Fixes)``
    steps: tuple[Step, ...]
    facts: Mapping[str, Fact]
    fixed: bool  #: the fixed behaviour was observed
    bug_shown: bool  #: the bug the fix prevents was observed
    summary: str  #: the observed facts in one phrase

    @property
    def as_predicted(self) -> bool:
        """Fix on: the fixed behaviour was seen; fix off: the bug was seen."""
        return self.fixed if self.fix_on else self.bug_shown

    def verdict(self) -> str:
        """One line: ``fix on: ok — ...`` or ``fix off: BUG shown — ...`` (or a mismatch)."""
        if self.fix_on:
            word = "ok" if self.fixed else "FAILED (fixed behaviour not seen)"
            return f"fix on: {word} — {self.summary}"
        word = "BUG shown" if self.bug_shown else "MISMATCH (bug not shown)"
        return f"fix off: {word} — {self.summary}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the whole outcome."""
        return {
            "scenario": self.scenario, "fix": self.fix, "fix_on": self.fix_on,
            "fixes": self.fixes, "as_predicted": self.as_predicted, "fixed": self.fixed,
            "bug_shown": self.bug_shown, "summary": self.summary, "verdict": self.verdict(),
            "facts": dict(self.facts),
            "steps": [{"at": s.at, "actor": s.actor, "text": s.text} for s in self.steps],
        }


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
        self.now = 0.0
        self.steps: list[Step] = []
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._timers: dict[tuple[str, str], int] = {}
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

    # -------------------------------------------------------------- time

    def at(self, when: float, thunk: Callable[[], None]) -> None:
        """Schedule ``thunk`` at absolute fake time ``when`` (FIFO among equal times)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._order), thunk))

    def script(self, when: float, text: str, thunk: Callable[[], object]) -> None:
        """Schedule a scripted happening, logged as ``text``."""
        def run() -> None:
            self.note("script", text)
            thunk()
        self.at(when, run)

    def run_until(self, end: float) -> None:
        """Carry out everything due up to ``end``, then set the clock to ``end``."""
        while self._heap and self._heap[0][0] <= end:
            when, _, thunk = heapq.heappop(self._heap)
            self.now = when
            thunk()
        self.now = max(self.now, end)

    def note(self, actor: str, text: str) -> None:
        """Add a step to the log."""
        self.steps.append(Step(round(self.now, 6), actor, text))

    def _arm(self, owner: str, timer: str, when: float, fire: Callable[[float], None]) -> None:
        token = next(self._order)
        self._timers[(owner, timer)] = token

        def due() -> None:
            if self._timers.get((owner, timer)) == token:
                del self._timers[(owner, timer)]
                fire(self.now)
        self.at(when, due)

    def _disarm(self, owner: str, timer: str) -> None:
        self._timers.pop((owner, timer), None)

    def armed(self, owner: str, timer: str) -> bool:
        """Whether ``owner``'s timer is armed."""
        return (owner, timer) in self._timers

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
        for action in actions:
            self._client_action(action)

    def _client_action(self, action: Action) -> None:
        if isinstance(action, cl.OpenStream):
            self.opens.append(self.now)
            self.effects.append((self.now, "open"))
            sid = next(self._stream_ids)
            self.stream_id = sid
            if self.refuse:
                self.at(self.now + LINK_LATENCY, lambda: self._refused(sid))
            else:
                last = action.last_event_id
                self.at(self.now + self.connect_delay, lambda: self._accept(sid, last))
        elif isinstance(action, cl.CloseStream):
            old, self.stream_id = self.stream_id, 0
            if self.session is not None and self.session_stream == old:
                self._close_session()
        elif isinstance(action, cl.Deliver):
            self.delivered.append(action.event_id.seq)
        elif isinstance(action, cl.StartRehydrate):
            self.effects.append((self.now, "rehydrate"))
            self._rehydrate(action.head_first)
        elif isinstance(action, StartTimer):
            def fire_client(now: float, name: str = action.timer) -> None:
                self.client_input(cl.TimerFired(timer=name, now=now, u=self._rng.random()))
            self._arm("client", action.timer, action.at, fire_client)
        elif isinstance(action, CancelTimer):
            self._disarm("client", action.timer)

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

    def drop_stream(self) -> None:
        """The network drops the client's stream; both ends see it."""
        stream = self.stream_id
        if self.session is not None and self.session_stream == stream:
            self._close_session()

        def arrive() -> None:
            if self.stream_id == stream and stream:
                self.stream_id = 0
                self.client_input(cl.StreamClosed(reason="network drop", now=self.now,
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
        stream = self.session_stream
        for action in actions:
            self._session_action(stream, action)

    def _session_action(self, stream: int, action: Action) -> None:
        if isinstance(action, se.QueryReplay):
            after, upto, limit = action.after, action.upto, action.limit
            self.at(self.now + QUERY_TIME, lambda: self._replay(stream, after, upto, limit))
        elif isinstance(action, se.Send):
            event_id = action.event_id
            self._frame(stream, lambda now: cl.EventReceived(event_id=event_id, now=now))
        elif isinstance(action, se.SendTruncated):
            head, reason = action.head, action.reason.value
            self._frame(stream, lambda now: cl.ReplayTruncated(head=head, reason=reason, now=now))
        elif isinstance(action, se.SendFailed):
            why = action.reason
            self._frame(stream, lambda now: cl.ReplayFailed(reason=why, now=now))
        elif isinstance(action, se.SendHeartbeat):
            self._frame(stream, lambda now: cl.HeartbeatReceived(now=now))
        elif isinstance(action, StartTimer):
            def fire(now: float, name: str = action.timer) -> None:
                if self.session is not None and self.session_stream == stream:
                    self.session_input(se.TimerFired(timer=name, now=now))
            self._arm("session", action.timer, action.at, fire)
        elif isinstance(action, CancelTimer):
            self._disarm("session", action.timer)

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
        for action in actions:
            self._subscriber_action(action)

    def _subscriber_action(self, action: Action) -> None:
        if isinstance(action, sb.PublishSentinel):
            token = action.token

            def back() -> None:
                if self.redis_alive:  # a link that died meanwhile loses it too
                    self.subscriber_input(sb.SentinelReceived(token=token, now=self.now))
            if self.redis_alive:
                self.at(self.now + 2 * REDIS_LATENCY, back)
        elif isinstance(action, sb.Resubscribe):
            self.resubscribes += 1
            self.at(self.now + REDIS_LATENCY, lambda: self.subscriber_input(
                sb.Closed(reason="resubscribe: old connection torn down", now=self.now)))

            def ready() -> None:
                self.redis_alive = True  # a new connection, a working link
                self.subscriber_input(sb.Ready(now=self.now))
            self.at(self.now + 2 * REDIS_LATENCY, ready)
        elif isinstance(action, sb.ResyncStreams):
            self.resyncs += 1
            if self.session is not None and self.session.phase is not se.Phase.CLOSED:
                self.session_input(se.Resync(topic=self.topic(), now=self.now))
        elif isinstance(action, StartTimer):
            def fire_subscriber(now: float, name: str = action.timer) -> None:
                self.subscriber_input(sb.TimerFired(timer=name, now=now))
            self._arm("subscriber", action.timer, action.at, fire_subscriber)
        elif isinstance(action, CancelTimer):
            self._disarm("subscriber", action.timer)


# ---------------------------------------------------------------- outcomes


def _outcome(name: str, bench: Bench, facts: dict[str, Fact], *, fixed: bool, bug_shown: bool,
             summary: str) -> Outcome:
    fix = SCENARIOS[name].fix
    return Outcome(scenario=name, fix=fix, fix_on=bench.fixes.enabled(fix),
                   fixes=str(bench.fixes), steps=tuple(bench.steps), facts=facts, fixed=fixed,
                   bug_shown=bug_shown, summary=summary)


def _ids(seqs: Iterable[int]) -> str:
    return ", ".join(f"0-{s}" for s in seqs)


def _cursor(state: cl.ClientState) -> str | None:
    return None if state.last_event_id is None else str(state.last_event_id)


# ---------------------------------------------------------------- 1. replay limit


def replay_limit(fixes: Fixes = ALL_FIXES) -> Outcome:
    """Replay limit 5, ten events missed: ``replay-truncated``, then a re-hydration."""
    limit = 5
    bench = Bench(fixes, replay_limit=limit)
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event while connected", lambda: bench.publish(1))
    bench.script(2.0, "the user closes the tab: the client goes away",
                 lambda: bench.client_input(cl.Stop(now=bench.now)))
    bench.script(3.0, "ten events are published while the client is away",
                 lambda: bench.publish(10))
    bench.script(10.0, "the client comes back with its cursor",
                 lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(15.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(20.0)

    largest = max((rows for _, rows in bench.queries), default=0)
    unbounded = any(lim is None for lim, _ in bench.queries)
    truncated = "replay-truncated" in bench.signals
    rehydrated = any(kind == "rehydrated" for _, kind in bench.effects)
    missing = bench.missing()
    facts: dict[str, Fact] = {
        "replay_limit": limit, "missed_while_away": 10, "queries": len(bench.queries),
        "rows_read": sum(rows for _, rows in bench.queries), "largest_read": largest,
        "unbounded_query": unbounded, "truncated": truncated, "rehydrated": rehydrated,
        "replayed_row_by_row": sum(1 for s in bench.delivered if 2 <= s <= 11),
        "cursor": _cursor(bench.client), "missing": len(missing),
        "live": cl.is_live(bench.client),
    }
    fixed = (truncated and rehydrated and largest <= limit + 1 and not unbounded
             and not missing and cl.is_live(bench.client) and bench.client.last_event_id
             == EventId(0, 12))
    bug = largest > limit + 1 and not truncated and not rehydrated
    if truncated:
        summary = (f"replay-truncated after reading {largest} rows (limit {limit}); "
                   f"{'re-hydrated' if rehydrated else 'NOT re-hydrated'}; "
                   f"{'live' if cl.is_live(bench.client) else 'not live'} at {_cursor(bench.client)}")
    else:
        summary = (f"{'unbounded' if unbounded else 'bounded'} replay read {largest} rows "
                   f"(limit {limit}); no replay-truncated; "
                   f"{'re-hydrated' if rehydrated else 'no re-hydration'}")
    return _outcome("replay-limit", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 2. replay failure


def replay_failure(fixes: Fixes = ALL_FIXES) -> Outcome:
    """The replay query throws: ``replay-failed``, then a re-hydration."""
    bench = Bench(fixes)
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event while connected", lambda: bench.publish(1))
    bench.script(2.0, "the client goes away", lambda: bench.client_input(cl.Stop(now=bench.now)))
    bench.script(3.0, "three events are published while the client is away",
                 lambda: bench.publish(3))

    def break_replay() -> None:
        bench.fail_replays = 1
    bench.script(9.0, "postgres: the next replay query will throw", break_replay)
    bench.script(10.0, "the client comes back with its cursor",
                 lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(15.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(20.0)

    signalled = "replay-failed" in bench.signals
    rehydrated = any(kind == "rehydrated" for _, kind in bench.effects)
    missing = bench.missing()
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "query_failed": bench.failed_queries > 0, "replay_failed_sent": signalled,
        "rehydrated": rehydrated, "cursor": _cursor(bench.client), "missing": len(missing),
        "missing_ids": _ids(missing), "live": live,
    }
    fixed = (bench.failed_queries == 1 and signalled and rehydrated and not missing and live
             and bench.client.last_event_id == EventId(0, 5))
    bug = bench.failed_queries == 1 and not signalled and not rehydrated and live and bool(missing)
    if signalled:
        summary = (f"replay-failed sent; {'re-hydrated' if rehydrated else 'NOT re-hydrated'}; "
                   f"{'live' if live else 'not live'} at {_cursor(bench.client)}, "
                   f"{len(missing)} events missing")
    else:
        summary = (f"failure swallowed; client {'live' if live else 'not live'} at "
                   f"{_cursor(bench.client)} missing {len(missing)} events "
                   f"({_ids(missing) or 'none'})")
    return _outcome("replay-failure", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 3. heartbeat race

#: How long a connect takes over the degraded link in the heartbeat-race scenario, seconds.
SLOW_CONNECT = 5.5


def heartbeat_race(fixes: Fixes = ALL_FIXES) -> Outcome:
    """The heartbeat check fires while a reconnect is in flight: the counter must not move."""
    bench = Bench(fixes)
    stall_at = 12.0
    watch: dict[str, Any] = {"max_in_flight": 0, "checks_connecting": 0, "monitor_at_open": None,
                             "probe": None, "opened_counter": None}

    def hook(event: cl.ClientInput, before: cl.ClientState, actions: list[Action]) -> None:
        state = bench.client
        if bench.now < stall_at:
            return
        if isinstance(event, cl.TimerFired) and event.timer == cl.HEARTBEAT \
                and before.status is cl.Status.CONNECTING:
            watch["checks_connecting"] += 1
        if isinstance(event, cl.StreamOpened):
            watch["opened_counter"] = before.attempts
        if state.status is cl.Status.CONNECTING and state.stream:
            watch["max_in_flight"] = max(watch["max_in_flight"], state.attempts)
        if any(isinstance(a, cl.OpenStream) for a in actions) and watch["probe"] is None:
            watch["monitor_at_open"] = state.monitor
            # The seed's own unit test: call handleProactiveReconnection() while
            # isConnecting is true (the monitor forced on), and watch the counter.
            probe_state = state._replace(monitor=True)
            after, _ = cl.step(bench.client_cfg, probe_state,
                               cl.TimerFired(timer=cl.HEARTBEAT, now=bench.now))
            watch["probe"] = after.attempts - probe_state.attempts
            bench.note("probe", "handleProactiveReconnection() fired while connecting: "
                                f"counter {probe_state.attempts} → {after.attempts}")
    bench.client_hooks.append(hook)

    def stall() -> None:
        bench.stall_stream()
        bench.connect_delay = SLOW_CONNECT
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(3.0, "one event", lambda: bench.publish(1))
    bench.script(stall_at, f"the stream stalls silently; new connects take {SLOW_CONNECT:g}s", stall)
    bench.run_until(40.0)

    attempts_made = sum(1 for t in bench.opens if t >= stall_at)
    counter = int(watch["max_in_flight"])
    probe = watch["probe"]
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "attempts_made": attempts_made, "counter": counter,
        "counter_when_opened": watch["opened_counter"],
        "checks_while_connecting": int(watch["checks_connecting"]),
        "monitor_stopped_before_reconnect": watch["monitor_at_open"] is False,
        "probe_counter_delta": probe, "live": live, "final_counter": bench.client.attempts,
    }
    fixed = (attempts_made == 1 and counter == attempts_made and probe == 0
             and watch["checks_connecting"] == 0 and watch["monitor_at_open"] is False and live)
    bug = counter > attempts_made
    if counter == attempts_made:
        summary = (f"counter stayed {counter} for {attempts_made} real attempt"
                   f"{'s' if attempts_made != 1 else ''}; probe +{probe}")
    else:
        summary = (f"counter {counter} after {attempts_made} real attempt"
                   f"{'s' if attempts_made != 1 else ''} "
                   f"({watch['checks_connecting']} checks while connecting)")
    return _outcome("heartbeat-race", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 4. redis health


def redis_health(fixes: Fixes = ALL_FIXES, *, died_at: float = 30.5) -> Outcome:
    """The subscriber's link dies silently at ``died_at``: the sentinel detects it within 35 s.

    The default, 30.5 s, is just after the first sentinel came back: close to the worst
    case, a whole interval plus the timeout.
    """
    if not 0 < died_at < 60:
        raise ValueError(f"died_at must be in (0, 60) seconds, got {died_at}")
    bench = Bench(fixes)
    bound = bench.subscriber_cfg.detection_bound
    bench.script(0.0, "the replica's subscriber connects",
                 lambda: bench.subscriber_input(sb.Ready(now=bench.now)))
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(5.0, "one event", lambda: bench.publish(1))
    bench.script(died_at, "redis: the subscriber's connection dies silently",
                 bench.kill_redis_link)
    bench.script(died_at + 0.5, "an event while the link is dead", lambda: bench.publish(1))
    bench.script(died_at + 1.0, "another", lambda: bench.publish(1))
    bench.script(120.0, "one more event", lambda: bench.publish(1))
    horizon = 150.0
    bench.run_until(horizon)

    detected = next((s.at for s in bench.steps if s.actor == "subscriber"
                     and "HealthChanged(health=unhealthy" in s.text), None)
    delay = None if detected is None else round(detected - died_at, 6)
    missing = bench.missing()
    healthy = bench.subscriber.health is sb.Health.HEALTHY
    live = cl.is_live(bench.client)
    view = sb.view(bench.subscriber_cfg, bench.subscriber, bench.now)
    facts: dict[str, Fact] = {
        "died_at": died_at, "detected_at": detected, "detection_delay": delay,
        "detection_bound": bound, "resubscribed": bench.resubscribes,
        "resynced": bench.resyncs > 0, "health": view.state, "ready": view.ready,
        "missing": len(missing), "missing_ids": _ids(missing), "live": live,
        "recovered": healthy and not missing and live,
    }
    fixed = (delay is not None and 0 <= delay <= bound and healthy and live
             and (not missing or not fixes.resync_after_recovery))
    bug = detected is None and live and bool(missing)
    if delay is not None:
        summary = (f"detected {delay:g}s after the link died (bound {bound:g}s); "
                   f"{'healthy again' if healthy else view.state}, "
                   f"{len(missing)} events missing")
    else:
        summary = (f"never detected ({horizon - died_at:g}s after the link died); client live "
                   f"missing {len(missing)} events ({_ids(missing) or 'none'})")
    return _outcome("redis-health", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 5. max reconnect


def max_reconnect(fixes: Fixes = ALL_FIXES, *, outage: str = "refused") -> Outcome:
    """Max attempts 3: ``failed``, cursor cleared; ``recover()`` re-hydrates, then reconnects.

    ``outage`` is how the replicas fail for 295 s: ``"refused"`` (every connect is refused,
    so attempts fail and back off) or ``"stalled"`` (every connect is accepted, then the
    stream stays silent, so the heartbeat monitor ends each attempt: the proactive path).
    """
    if outage not in ("refused", "stalled"):
        raise ValueError(f"outage must be 'refused' or 'stalled', got {outage!r}")
    max_attempts = 3
    bench = Bench(fixes, max_attempts=max_attempts)
    down_at, up_at, retry_at = 5.0, 300.0, 310.0
    watch: dict[str, Any] = {"failed_at": None, "cursor_when_failed": "unset", "counter_max": 0}

    def hook(event: cl.ClientInput, before: cl.ClientState, actions: list[Action]) -> None:
        state = bench.client
        watch["counter_max"] = max(watch["counter_max"], state.attempts)
        if state.status is cl.Status.FAILED and before.status is not cl.Status.FAILED:
            watch["failed_at"] = round(bench.now, 6)
            watch["cursor_when_failed"] = _cursor(state)
    bench.client_hooks.append(hook)

    def down() -> None:
        if outage == "refused":
            bench.refuse = True
        else:
            bench.stall_new_streams = True
        bench.drop_stream()

    def up() -> None:
        bench.refuse = bench.stall_new_streams = False

    def retry() -> None:
        if bench.client.status is cl.Status.FAILED:
            bench.client_input(cl.Recover(now=bench.now))
        else:
            bench.note("script", f"no Retry button to press: the client is "
                                 f"{bench.client.status.value}")
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event", lambda: bench.publish(1))
    bench.script(down_at, "every replica goes down: the stream drops, " + (
        "connects are refused" if outage == "refused" else
        "connects are accepted but stay silent"), down)
    bench.script(15.0, "an event while the replicas are down", lambda: bench.publish(1))
    bench.script(up_at, "the replicas are back", up)
    bench.script(retry_at, "the user presses Retry: recover()", retry)
    bench.script(320.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(330.0)

    attempts_made = sum(1 for t in bench.opens if down_at <= t < up_at)
    failed = watch["failed_at"] is not None
    after = [kind for t, kind in bench.effects if t >= retry_at]
    first_open = after.index("open") if "open" in after else None
    rehydrated_first = (first_open is not None and "rehydrate" in after[:first_open]
                        and "rehydrated" in after[:first_open])
    missing = bench.missing()
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "max_attempts": max_attempts, "attempts_made": attempts_made,
        "counter_max": int(watch["counter_max"]), "failed": failed,
        "failed_at": watch["failed_at"],
        "cursor_cleared": failed and watch["cursor_when_failed"] is None,
        "rehydrated_before_reconnect": rehydrated_first, "cursor": _cursor(bench.client),
        "missing": len(missing), "live": live,
        "recovered": failed and rehydrated_first and live and not missing,
    }
    fixed = (failed and attempts_made == max_attempts and watch["counter_max"] == max_attempts
             and watch["cursor_when_failed"] is None and rehydrated_first and live
             and not missing and bench.client.last_event_id == EventId(0, 3))
    bug = not failed and attempts_made > max_attempts
    if failed:
        summary = (f"failed after {attempts_made} real attempts (max {max_attempts}), cursor "
                   f"{'cleared' if watch['cursor_when_failed'] is None else 'KEPT'}; recover() "
                   f"{'re-hydrated, then reconnected' if rehydrated_first else 'did NOT re-hydrate first'}"
                   f"; {'live' if live else 'not live'} at {_cursor(bench.client)}")
    else:
        summary = (f"never failed: {attempts_made} attempts in {up_at - down_at:g}s of outage "
                   f"(max {max_attempts}), counter reached {watch['counter_max']}")
    return _outcome("max-reconnect", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- registry


class Scenario(NamedTuple):
    """A seed verification step: its name, the fix it verifies, seed item and what it does."""

    name: str
    fix: str
    item: int
    title: str
    run: Callable[[Fixes], Outcome]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("replay-limit", "bounded-replay", 1,
             "replay limit 5, ten events published while the client is away", replay_limit),
    Scenario("replay-failure", "replay-failed-signal", 2,
             "the replay query throws on reconnect", replay_failure),
    Scenario("heartbeat-race", "heartbeat-guard", 3,
             "the heartbeat check fires while a reconnect is in flight", heartbeat_race),
    Scenario("redis-health", "subscriber-health", 4,
             "the subscriber's Redis connection dies silently", redis_health),
    Scenario("max-reconnect", "max-reconnect", 5,
             "max attempts 3, replicas down; then the user presses Retry", max_reconnect),
)}

assert all(resolve_fix_name(s.fix) == s.fix for s in SCENARIOS.values())
assert {s.fix for s in SCENARIOS.values()} == {i.name for i in FIXES if i.alias}


def run_scenario(name: str, fixes: Fixes = ALL_FIXES) -> Outcome:
    """Run the named scenario with ``fixes``; KeyError names the accepted scenarios."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; accepted: {', '.join(SCENARIOS)}") from None
    return scenario.run(fixes)
