"""A fleet of SSE clients, replicas, Redis and Postgres, in SimPy, driving the machines.

What the scenario covers. ``CLIENTS`` browser tabs each hold one event stream
through a load balancer to one of ``REPLICAS`` API replicas. Publishers commit
events to Postgres (a per-topic sequence) and publish them on Redis; each
replica's subscriber link fans them out to the streams of that topic. Clients
reconnect with backoff, replay what they missed from Postgres through the
replica's connection pool, re-hydrate from snapshots when told to, and give up
(``failed``) after the maximum of attempts until the user presses Retry. Faults
-- Redis outages, silent subscriber deaths, query errors, laptop sleep, drops,
stalls, deploys -- arrive on a schedule in the shared vocabulary of
:mod:`model.faults`, plus background drops and sleeps at per-client rates.

Who decides. Nobody here. Every choice about reconnecting, replaying, health
and recovery is made by a machine: :mod:`model.client` per client,
:mod:`model.session` per stream, :mod:`model.subscriber` per replica. This
module only performs their actions (open a stream, run a query, arm a timer,
publish a sentinel), reports back what happened, and measures. Staleness is
judged by :func:`model.invariants.covered` on :class:`~model.invariants.StaleFacts`
gathered from the simulated world.

Theory of operation (the SimPy way).

* Each client is one SimPy process that owns the client machine's timers: it
  sleeps until the earliest armed deadline (or indefinitely) and is woken by an
  interrupt when a deadline moves earlier. Frames from the network are fed to the
  machine by the delivery event's callback; a fault aimed at a client (laptop
  sleep) is an interrupt carrying the fault.
* Replicas and their Redis links are processes too; a replica restart or a link
  drop is an interrupt. Postgres is a ``simpy.Resource`` per replica (the pool)
  with query time = ``QUERY_BASE_S + QUERY_ROW_S * rows``, errors and timeouts.
* All chance comes from one ``random.Random(seed)``: start times, Poisson
  publishes (one stream at the summed rate, topic drawn uniformly: the same
  process as one Poisson publisher per topic), samples of clients hit by a
  fault, sleep durations, query errors and the machines' jitter draws ``u``.
  SimPy orders simultaneous events by insertion, and nothing iterates a set of
  objects, so the same seed gives the same run, bit for bit.

Deliberate divergences, for speed, each exact for the machines' inputs:

* **Heartbeats are coalesced.** Once a client's stream is stable (it has had its
  first message) and healthy, the server's heartbeats every
  ``HEARTBEAT_INTERVAL_S`` would only re-arm the client's heartbeat timer, so
  neither the session's heartbeat timer nor the client's monitor is simulated:
  a quiet connection costs no wake-ups. When the stream goes silent (a stall, a
  laptop lid) the last heartbeat it would have carried is fed to the client at
  its own time, the monitor's deadline is armed from it, and the session's timer
  runs for real again.
* **Server-side closes are seen by both ends at once** (a replica restart, a
  drop), as in the checker's world; a client's own close reaches the replica at
  once too. Frames, connects and snapshot requests take ``NETWORK_LATENCY_S``.
* **The load balancer routes by readiness**: to the replica with the fewest
  streams among those up whose ``/health/ready`` (``model.subscriber.view``) says
  ready; when none is, the attempt gets a 503. With ``subscriber-health`` off the
  view is always ready, as the seed's health endpoint was.
* **Publishers write on their own connections**: commits do not queue in the
  replicas' pools, and always succeed; ``postgres.errors`` hits the SSE reads.
* **The HTTP client times out.** An attempt with no answer after
  ``CONNECT_TIMEOUT_S`` is reported as ``StreamFailed("connect timeout")``, as
  ``StreamFailed`` documents; without it an attempt on a half-open connection
  would hang for ever (the heartbeat monitor, with heartbeat-guard on, ignores a
  client that is connecting).
* **A sleeping laptop's stream is dead**: the server drops its side when the lid
  closes; answers that arrive during the sleep are lost, and an attempt or a
  snapshot in flight fails when the laptop wakes.
"""

from __future__ import annotations

import bisect
import collections
import functools
import gc
import math
import random
from collections.abc import Callable, Generator
from typing import Any, cast

import simpy

from model import client as cm
from model import session as sm
from model import subscriber as subm
from model.core import CancelTimer, EventId, Log, StartTimer
from model.faults import Fault
from model.invariants import StaleFacts, covered
from sims.des.metrics import Recorder
from sims.des.scenarios import Scenario

__all__ = ["WATCH_HORIZON_S", "Fleet"]

#: A client a fault left untouched this long after its end is counted as unaffected.
WATCH_HORIZON_S = 300.0

INF = math.inf

# frame codes on the wire (server -> client)
OPENED, EVENT, HEARTBEAT, TRUNCATED, REPLAY_FAILED, REFUSED = range(6)

_C_CONNECTED = cm.Status.CONNECTED
_C_CONNECTING = cm.Status.CONNECTING
_C_FAILED = cm.Status.FAILED
_R_NONE = cm.Rehydration.NONE
_R_RUNNING = cm.Rehydration.RUNNING
_P_NEW = sm.Phase.NEW
_P_REPLAYING = sm.Phase.REPLAYING
_P_CLOSED = sm.Phase.CLOSED
_H_HEALTHY = subm.Health.HEALTHY
_H_STARTING = subm.Health.STARTING
_RECOVERY_INPUTS = (cm.Recover, cm.Online, cm.Visible)

_client_step = cm.step
_session_step = sm.step
_subscriber_step = subm.step
_EventReceived = cm.EventReceived
_Start = cm.Start
_StartTimer = StartTimer
_Deliver = cm.Deliver
_StatusChanged = cm.StatusChanged
_Send = sm.Send

#: Facts of a client that misses nothing, live or not (judged by covered() once).
_NOTHING_MISSING = {live: StaleFacts(live, 0, 0, False, False, False) for live in (True, False)}
_NOTHING_MISSING_OK = {live: covered(f) for live, f in _NOTHING_MISSING.items()}
_NOTHING_MISSING_ALWAYS_OK = all(_NOTHING_MISSING_OK.values())


class Watch:
    """A client a fault may disturb, followed until it is back in sync.

    Back in sync: live, missing nothing that is not on its way, and holding every
    event committed to its topic by the end of the fault (or by the moment it was
    disturbed, if that came later).
    """

    __slots__ = ("disturbed_at", "done", "end", "fault", "incident", "target")

    def __init__(self, incident: int, fault: str, end: float) -> None:
        self.incident = incident
        self.fault = fault
        self.end = end
        self.disturbed_at: float | None = None
        self.target: int | None = None  #: the seq the client must hold to be back in sync
        self.done = False


class Conn:
    """One stream attempt: the client's end, the wire, and the replica's session."""

    __slots__ = ("client", "dead", "detect", "held", "last_event_id", "opened", "session",
                 "signals", "stable_seen", "stalled", "virtual", "wire")

    def __init__(self, client: Client, last_event_id: EventId | None) -> None:
        self.client = client
        self.last_event_id = last_event_id
        self.session: Session | None = None
        self.dead = False  #: closed, from either end
        self.stalled = False  #: frames are held on the wire (half-open)
        self.held: list[tuple[Any, ...]] = []
        self.wire: collections.deque[int] = collections.deque()  #: event seqs in flight
        self.signals = 0  #: replay-truncated / replay-failed frames in flight
        self.opened = False  #: StreamOpened reached the client
        self.stable_seen = False  #: a message reached the client on this stream
        self.virtual = False  #: heartbeats are coalesced (stable, healthy, connected)
        self.detect: list[Any] | None = None  #: detection row of a silent fault


class Session:
    """A replica's end of one stream: drives model.session."""

    __slots__ = ("anchor", "client", "closed", "conn", "hb_gen", "pending", "replica", "sid",
                 "state", "topic")

    def __init__(self, replica: Replica, conn: Conn, sid: int) -> None:
        self.replica = replica
        self.conn = conn
        self.client = conn.client
        self.topic = conn.client.topic
        self.sid = sid
        self.state = sm.initial()
        self.pending: list[int] = []  #: live seqs that arrived before Open
        self.closed = False
        self.hb_gen = 0
        self.anchor = 0.0  #: a tick of the session's heartbeat grid


class Client:
    """One browser tab: a SimPy process owning model.client's timers, fed by the network."""

    __slots__ = ("applied", "asleep", "beyond", "bo_at", "cls", "cls_since", "conn", "connects",
                 "fleet", "hb_at", "idle", "idx", "last_input_at", "max_attempts", "mismatch",
                 "proc", "real_attempts", "rehydrate_lost", "rehydrate_token", "retry_gen",
                 "sleep_until", "start_at", "started", "state", "topic", "wake_at", "waking",
                 "watches")

    def __init__(self, fleet: Fleet, idx: int, topic: int, start_at: float) -> None:
        self.fleet = fleet
        self.idx = idx
        self.topic = topic
        self.start_at = start_at
        self.started = False
        self.state = cm.initial()
        self.conn: Conn | None = None
        self.hb_at: float | None = None
        self.bo_at: float | None = None
        self.sleep_until = INF
        self.waking = False
        self.asleep = False
        self.wake_at = 0.0
        self.last_input_at = 0.0
        self.applied = 0  #: every seq up to this is applied
        self.beyond: list[int] = []  #: applied seqs above a hole (only ever after a bug)
        self.rehydrate_token = 0
        self.rehydrate_lost = False
        self.real_attempts = 0
        self.max_attempts = 0
        self.connects = 0
        self.mismatch = 0
        self.retry_gen = 0
        self.cls = 0  #: 0 fine, 1 stale but covered, 2 silently stale
        self.cls_since = 0.0
        self.watches: list[Watch] | None = None
        self.idle = fleet.env.event()
        self.proc = fleet.env.process(self._run())

    # ------------------------------------------------------------ the process

    def _due(self) -> float:
        due = INF
        if not self.started:
            due = self.start_at
        hb = self.hb_at
        if hb is not None and hb < due:
            conn = self.conn
            if conn is None or not conn.virtual:
                due = hb
        bo = self.bo_at
        if bo is not None and bo < due:
            due = bo
        return due

    def _run(self) -> Generator[Any, Any, None]:
        env = self.fleet.env
        while True:
            try:
                if self.asleep:
                    self.sleep_until = INF
                    yield env.timeout(max(0.0, self.wake_at - env.now))
                    self._on_wake()
                    continue
                due = self._due()
                self.sleep_until = due
                if due == INF:
                    yield self.idle
                else:
                    now = env.now
                    yield env.timeout(due - now if due > now else 0.0)
                    self.sleep_until = INF
                    self._fire()
            except simpy.Interrupt as interrupt:
                self.waking = False
                self.sleep_until = INF
                cause = interrupt.cause
                if cause is not None:
                    self._on_fault(cause)

    def reschedule(self) -> None:
        """Wake the process if a deadline moved before the one it sleeps until."""
        if self.waking or self.asleep:
            return
        if self._due() < self.sleep_until and self.fleet.env.active_process is not self.proc:
            self.waking = True
            self.proc.interrupt(None)

    def _fire(self) -> None:
        fleet = self.fleet
        now = fleet.env.now
        if not self.started:
            if self.start_at <= now:
                self.started = True
                # The page load: data as of the topic's head, which becomes the cursor.
                head = fleet.head[self.topic]
                self.state = cm.initial(EventId(0, head))
                self.applied = head
                self.feed(cm.Start(now=now))
                fleet.judge(self)
            return
        hb = self.hb_at
        conn = self.conn
        if hb is not None and conn is not None and conn.virtual:
            hb = None
        bo = self.bo_at
        if bo is not None and bo <= now and (hb is None or bo <= hb):
            self.bo_at = None
            self.feed(cm.TimerFired(now=now, timer=cm.BACKOFF, u=fleet.rng.random()))
        elif hb is not None and hb <= now:
            self.hb_at = None
            self.feed(cm.TimerFired(now=now, timer=cm.HEARTBEAT, u=fleet.rng.random()))
        else:
            return  # the deadline moved; sleep again
        fleet.judge(self)

    def _on_fault(self, cause: tuple[Any, ...]) -> None:
        if cause[0] == "sleep":
            duration = float(cause[1])
            now = self.fleet.env.now
            if self.asleep:
                if now + duration > self.wake_at:
                    self.wake_at = now + duration
                    self.fleet.rec.sleeps.append((self.idx, now, now + duration))
                return
            self.asleep = True
            self.wake_at = now + duration
            self.fleet.rec.sleeps.append((self.idx, now, now + duration))
            conn = self.conn
            if conn is not None:
                self.fleet.silence(conn, now)
                if not conn.dead:
                    self.fleet.sever(conn, "laptop asleep", tell_client=False)
            self.fleet.judge(self)

    def _on_wake(self) -> None:
        fleet = self.fleet
        now = fleet.env.now
        self.asleep = False
        conn = self.conn
        st = self.state
        if conn is not None and st.status is _C_CONNECTING and st.stream:
            self.conn = None  # the attempt's answer was lost while the lid was closed
            self.feed(cm.StreamFailed(now=now, reason="interrupted by sleep", u=fleet.rng.random()))
        elif conn is not None and conn.dead and st.status is _C_CONNECTED:
            incident = fleet.sleep_incident(self)
            text = fleet.faults[incident][1] if incident >= 0 else "background sleep"
            conn.detect = fleet.rec.detection(incident, text, "clients.sleep",
                                              f"client {self.idx}", now)
        if self.rehydrate_lost:
            self.rehydrate_lost = False
            if self.state.rehydration is _R_RUNNING:
                self.feed(cm.RehydrateFailed(now=now, reason="interrupted by sleep",
                                             u=fleet.rng.random()))
        if self.started:
            self.feed(cm.Visible(now=now))
        fleet.judge(self)

    # ------------------------------------------------------------ the machine

    def feed(self, inp: cm.ClientInput) -> None:
        """Apply one input to the client machine and carry out its actions."""
        fleet = self.fleet
        fleet.client_steps += 1
        self.last_input_at = inp.now
        old = self.state
        kind_in = inp.__class__
        if kind_in is _Start or (old.status is _C_FAILED and kind_in in _RECOVERY_INPUTS):
            self.real_attempts = 0  # the machine's counter restarts here too: Start, recover()
        st, actions = _client_step(fleet.ccfg, old, inp)
        self.state = st
        for a in actions:
            if isinstance(a, _StartTimer):
                if a.timer == cm.HEARTBEAT:
                    self.hb_at = a.at
                else:
                    self.bo_at = a.at
            elif isinstance(a, _Deliver):
                self._apply(a.event_id.seq)
            elif isinstance(a, _StatusChanged):
                fleet.status_changed(self, a.status, a.attempts)
            elif isinstance(a, CancelTimer):
                if a.timer == cm.HEARTBEAT:
                    self.hb_at = None
                else:
                    self.bo_at = None
            elif isinstance(a, cm.OpenStream):
                self._open(a.last_event_id)
            elif isinstance(a, cm.CloseStream):
                self._close()
            elif isinstance(a, cm.StartRehydrate):
                self._rehydrate(a.head_first)
            elif isinstance(a, Log):
                fleet.log(a)
            else:  # pragma: no cover - a new action the shell does not know
                raise TypeError(f"the DES cannot carry out client action {a!r}")
        attempts = st.attempts
        if attempts > self.max_attempts:
            self.max_attempts = attempts
        gap = attempts - self.real_attempts
        if gap:
            gap = abs(gap)
            if gap > self.mismatch:
                self.mismatch = gap

    def _apply(self, seq: int) -> None:
        applied = self.applied
        if seq == applied + 1:
            applied = seq
            beyond = self.beyond
            while beyond and beyond[0] <= applied + 1:
                applied = max(applied, beyond.pop(0))
            self.applied = applied
        elif seq > applied + 1 and seq not in self.beyond:
            bisect.insort(self.beyond, seq)

    def apply_snapshot(self, upto: int) -> None:
        """A snapshot covering every seq up to ``upto`` was loaded."""
        if upto > self.applied:
            self.applied = upto
            beyond = self.beyond
            while beyond and beyond[0] <= self.applied + 1:
                self.applied = max(self.applied, beyond.pop(0))

    def _open(self, last_event_id: EventId | None) -> None:
        fleet = self.fleet
        conn = Conn(self, last_event_id)
        self.conn = conn
        self.real_attempts += 1
        self.connects += 1
        ev = fleet.env.timeout(fleet.latency, conn)
        ev.callbacks.append(fleet.route)
        deadline = fleet.env.timeout(fleet.settings.connect_timeout, conn)
        deadline.callbacks.append(fleet.connect_deadline)

    def _close(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            if conn.detect is not None:
                conn.detect[5] = self.fleet.env.now
                conn.detect = None
            if not conn.dead:
                self.fleet.sever(conn, "client closed", tell_client=False)

    def _rehydrate(self, head_first: bool) -> None:
        fleet = self.fleet
        self.rehydrate_token += 1
        fleet.rehydration_started(self)
        ev = fleet.env.timeout(fleet.latency, (self, self.rehydrate_token, head_first))
        ev.callbacks.append(fleet.route_snapshot)

    def rehydrated(self, token: int, ok: bool, head: int, covers: int, reason: str) -> None:
        """The snapshot's answer reached the client."""
        if token != self.rehydrate_token:
            return
        if self.asleep:
            self.rehydrate_lost = True
            return
        if self.state.rehydration is not _R_RUNNING:
            return
        fleet = self.fleet
        now = fleet.env.now
        if ok:
            self.apply_snapshot(covers)
            self.feed(cm.RehydrateDone(now=now, head=EventId(0, head)))
        else:
            self.feed(cm.RehydrateFailed(now=now, reason=reason, u=fleet.rng.random()))
        self.reschedule()
        fleet.judge(self)

    def frames(self, conn: Conn, frames: list[tuple[Any, ...]]) -> None:
        """A batch of frames reached the client's end of ``conn``."""
        if conn is not self.conn or conn.dead or self.asleep:
            return
        if conn.stalled:
            conn.held.extend(frames)
            return
        fleet = self.fleet
        now = fleet.env.now
        feed = self.feed
        for frame in frames:
            if conn is not self.conn:
                break  # the machine closed this stream part-way through the batch
            code = frame[0]
            if code == EVENT:
                conn.wire.popleft()
                if not conn.stable_seen:
                    conn.stable_seen = True
                    self.real_attempts = 0
                feed(_EventReceived(now=now, event_id=EventId(0, frame[1])))
            elif code == HEARTBEAT:
                if not conn.stable_seen:
                    conn.stable_seen = True
                    self.real_attempts = 0
                feed(cm.HeartbeatReceived(now=now))
            elif code == OPENED:
                conn.opened = True
                feed(cm.StreamOpened(now=now))
            elif code == TRUNCATED:
                conn.signals -= 1
                if not conn.stable_seen:
                    conn.stable_seen = True
                    self.real_attempts = 0
                feed(cm.ReplayTruncated(now=now, head=EventId(0, frame[1]), reason=frame[2]))
            elif code == REPLAY_FAILED:
                conn.signals -= 1
                if not conn.stable_seen:
                    conn.stable_seen = True
                    self.real_attempts = 0
                feed(cm.ReplayFailed(now=now, reason=frame[1]))
            else:  # REFUSED: the attempt failed before the stream opened
                self.conn = None
                conn.dead = True
                feed(cm.StreamFailed(now=now, reason=frame[1], u=fleet.rng.random()))
        if conn is self.conn:
            st = self.state
            conn.virtual = st.stable and st.status is _C_CONNECTED and not conn.stalled
        self.reschedule()
        if (self.cls == 0 and self.watches is None and not self.beyond
                and fleet.head[self.topic] == self.applied and _NOTHING_MISSING_ALWAYS_OK):
            return  # nothing missing, nothing followed: the judgement cannot change
        fleet.judge(self)


class Link:
    """A replica's Redis pub/sub connection: its own process; drops, deaths are interrupts."""

    __slots__ = ("blocked_until", "connected", "dead", "fleet", "idle", "proc", "replica")

    def __init__(self, fleet: Fleet, replica: Replica) -> None:
        self.fleet = fleet
        self.replica = replica
        self.connected = False
        self.dead = False  #: subscribed, but silently receiving nothing
        self.blocked_until = 0.0
        self.idle = fleet.env.event()
        self.proc = fleet.env.process(self._run())

    def _run(self) -> Generator[Any, Any, None]:
        env = self.fleet.env
        while True:
            try:
                if self.connected:
                    yield self.idle
                else:
                    self._try_connect()
                    if not self.connected:
                        yield env.timeout(self.fleet.settings.redis_reconnect)
            except simpy.Interrupt as interrupt:
                self._on(cast(tuple[Any, ...], interrupt.cause))

    def _try_connect(self) -> None:
        fleet = self.fleet
        now = fleet.env.now
        if fleet.redis_up and self.replica.up and now >= self.blocked_until:
            self.connected = True
            self.dead = False
            self.replica.subscriber(subm.Ready(now=now))

    def request(self, cause: tuple[Any, ...]) -> None:
        """Hand the link a fault or an order: inline if it is running, else as an interrupt."""
        if self.fleet.env.active_process is self.proc:
            self._on(cause)
        else:
            self.proc.interrupt(cause)

    def _on(self, cause: tuple[Any, ...]) -> None:
        fleet = self.fleet
        now = fleet.env.now
        kind = cause[0]
        if kind == "drop":  # visible: the client library reports it and retries
            self.blocked_until = max(self.blocked_until, float(cause[2]))
            if self.connected:
                self.connected = False
                self.dead = False
                self.replica.subscriber(subm.Reconnecting(now=now, reason=str(cause[1])))
        elif kind == "die":  # silent: subscribed, but nothing arrives and nothing is said
            if self.connected:
                self.dead = True
                fleet.judge_replica(self.replica)
        elif kind == "resubscribe":  # the subscriber machine's order
            if self.connected:
                self.connected = False
                self.dead = False
                self.replica.subscriber(subm.Reconnecting(now=now, reason=str(cause[1])))
        elif kind == "replica-down":
            self.connected = False
            self.dead = False
        elif kind == "replica-up":
            self._try_connect()


class Replica:
    """An API replica: its sessions, its subscriber machine, its link and its pool."""

    __slots__ = ("by_topic", "detect", "down_until", "fleet", "gen", "idle", "idx", "inflight",
                 "link", "next_sid", "pool", "proc", "resyncing", "sessions", "sub", "sub_armed",
                 "sub_gen", "up")

    def __init__(self, fleet: Fleet, idx: int) -> None:
        self.fleet = fleet
        self.idx = idx
        self.up = True
        self.gen = 0  #: bumped at every restart, to ignore answers for the old process
        self.down_until = 0.0
        self.sessions: dict[int, Session] = {}
        self.by_topic: dict[int, dict[int, Session]] = {}
        #: (topic, seq) of the messages on their way from Redis, in order (one latency: FIFO)
        self.inflight: collections.deque[tuple[int, int]] = collections.deque()
        self.next_sid = 0
        self.sub = subm.initial()
        self.sub_gen: dict[str, int] = {subm.SENTINEL: 0, subm.SENTINEL_TIMEOUT: 0}
        self.sub_armed: dict[str, bool] = {subm.SENTINEL: False, subm.SENTINEL_TIMEOUT: False}
        self.resyncing = False
        self.detect: list[list[Any]] = []  #: detection rows waiting for a health change
        self.pool = simpy.Resource(fleet.env, capacity=fleet.settings.pool_size)
        self.idle = fleet.env.event()
        self.link = Link(fleet, self)
        self.proc = fleet.env.process(self._run())

    def _run(self) -> Generator[Any, Any, None]:
        env = self.fleet.env
        while True:
            try:
                if self.up:
                    yield self.idle
                else:
                    yield env.timeout(max(0.0, self.down_until - env.now))
                    self._boot()
            except simpy.Interrupt as interrupt:
                _, duration = cast(tuple[Any, ...], interrupt.cause)
                now = env.now
                if self.up:
                    self.down_until = now + float(duration)
                    self._crash()
                else:
                    self.down_until = max(self.down_until, now + float(duration))

    def _crash(self) -> None:
        fleet = self.fleet
        self.up = False
        self.gen += 1
        self.resyncing = False
        for row in self.detect:  # the restart cured it before anything had to notice
            row[6] = "replica restarted before detection"
        self.detect.clear()
        for name in self.sub_gen:
            self.sub_gen[name] += 1
            self.sub_armed[name] = False
        self.link.request(("replica-down",))
        for session in list(self.sessions.values()):
            fleet.sever(session.conn, "replica restarting", tell_client=True)

    def _boot(self) -> None:
        self.up = True
        self.sub = subm.initial()
        self.link.request(("replica-up",))

    # ------------------------------------------------------------ subscriber

    def subscriber(self, inp: subm.SubscriberInput) -> None:
        """Apply one input to the replica's subscriber machine and carry out its actions."""
        fleet = self.fleet
        fleet.subscriber_steps += 1
        self.sub, actions = _subscriber_step(fleet.subcfg, self.sub, inp)
        now = fleet.env.now
        changed = False
        for a in actions:
            if isinstance(a, StartTimer):
                self._arm(a.timer, a.at)
            elif isinstance(a, CancelTimer):
                self.sub_gen[a.timer] += 1
                self.sub_armed[a.timer] = False
            elif isinstance(a, subm.PublishSentinel):
                fleet.publish_sentinel(self, a.token)
            elif isinstance(a, subm.Resubscribe):
                self.link.request(("resubscribe", a.reason))
            elif isinstance(a, subm.ResyncStreams):
                self._resync()
            elif isinstance(a, subm.HealthChanged):
                fleet.rec.health.append((self.idx, now, a.health.value, a.reason))
                if a.health is not _H_HEALTHY and self.detect:
                    for row in self.detect:
                        row[5] = now
                    self.detect.clear()
                changed = True
            elif isinstance(a, Log):
                fleet.log(a)
            else:  # pragma: no cover
                raise TypeError(f"the DES cannot carry out subscriber action {a!r}")
        if changed:  # judged once every action is under way (a resync covers what it will bring)
            fleet.judge_replica(self)

    def _arm(self, timer: str, at: float) -> None:
        self.sub_gen[timer] += 1
        self.sub_armed[timer] = True
        gen = self.sub_gen[timer]
        ev = self.fleet.env.timeout(max(0.0, at - self.fleet.env.now))
        ev.callbacks.append(lambda _e: self._timer(timer, gen))

    def _timer(self, timer: str, gen: int) -> None:
        if self.sub_gen[timer] != gen:
            return
        self.sub_armed[timer] = False
        self.subscriber(subm.TimerFired(now=self.fleet.env.now, timer=timer))

    def detector(self) -> bool:
        """Whether a dead subscriber is covered: sentinel armed, or known down and resyncing."""
        if self.resyncing:
            return True
        if self.link.dead and self.sub_armed[subm.SENTINEL]:
            return True
        sub = self.sub
        return (sub.health is not _H_HEALTHY and sub.health is not _H_STARTING and sub.was_down
                and self.fleet.settings.fixes.resync_after_recovery)

    def _resync(self) -> None:
        fleet = self.fleet
        self.resyncing = True
        gen = self.gen
        topics = len(self.by_topic)

        def done(ok: bool, rows: int, payload: Any, reason: str) -> None:
            if gen != self.gen:
                return
            if not ok:  # carry the order out: read the heads again in a second
                ev = fleet.env.timeout(1.0)
                ev.callbacks.append(lambda _e: self._resync() if gen == self.gen else None)
                return
            now = fleet.env.now
            head, floor = fleet.head, fleet.floor
            for session in list(self.sessions.values()):
                if session.closed or session.state.phase is _P_NEW:
                    continue
                t = session.topic
                fleet.session_feed(session, sm.Resync(now=now, topic=sm.TopicHead(0, head[t], floor[t])))
            self.resyncing = False
            fleet.judge_replica(self)

        fleet.db.query(self, "heads", lambda: (topics, None), done)

    # ------------------------------------------------------------ sessions

    def accept(self, conn: Conn) -> None:
        """A stream attempt reached this replica: subscribe it, then read the topic row."""
        fleet = self.fleet
        sid = self.next_sid
        self.next_sid += 1
        session = Session(self, conn, sid)
        conn.session = session
        self.sessions[sid] = session
        topic = session.topic
        subs = self.by_topic.get(topic)
        if subs is None:
            self.by_topic[topic] = {sid: session}
            fleet.interest[topic].append(self)
        else:
            subs[sid] = session

        def done(ok: bool, rows: int, payload: Any, reason: str) -> None:
            if session.closed:
                return
            if not ok:
                self.end(session)
                fleet.send(conn, [(REFUSED, f"500 {reason}")])
                return
            head, floor = payload
            now = fleet.env.now
            fleet.session_feed(session, sm.Open(now=now, last_event_id=conn.last_event_id,
                                                topic=sm.TopicHead(0, head, floor)),
                               opened=True)
            pending = session.pending
            session.pending = []
            for seq in pending:
                if session.closed:
                    break
                fleet.session_feed(session, sm.LiveEvent(now=now, seq=seq))

        fleet.db.query(self, "head", lambda: (1, (fleet.head[topic], fleet.floor[topic])), done)

    def end(self, session: Session) -> None:
        """Close a session and unsubscribe it."""
        if session.closed:
            return
        session.closed = True
        session.hb_gen += 1
        if session.conn.session is session:
            session.conn.session = None  # no conn <-> session cycle left for the GC
        del self.sessions[session.sid]
        subs = self.by_topic[session.topic]
        del subs[session.sid]
        if not subs:
            del self.by_topic[session.topic]
            self.fleet.interest[session.topic].remove(self)
        if session.state.phase is not _P_CLOSED:
            fleet = self.fleet
            fleet.session_steps += 1
            session.state, _ = _session_step(fleet.scfg, session.state, sm.Close(now=fleet.env.now))


class Query:
    """One query on a replica's pool: waits for a connection, runs, answers."""

    __slots__ = ("db", "done", "finished", "granted", "kind", "replica", "req", "rows_fn", "t0")

    def __init__(self, db: Database, replica: Replica, kind: str,
                 rows_fn: Callable[[], tuple[int, Any]],
                 done: Callable[[bool, int, Any, str], None]) -> None:
        self.db = db
        self.replica = replica
        self.kind = kind
        self.rows_fn = rows_fn
        self.done = done
        self.t0 = db.env.now
        self.granted = False
        self.finished = False
        self.req: Any = None

    def start(self, _ev: Any = None) -> None:
        """A pool connection is ours: read the rows, then answer after the query time."""
        db = self.db
        if self.finished:  # timed out in the queue at the same instant
            self.replica.pool.release(self.req)
            return
        self.granted = True
        env = db.env
        now = env.now
        wait = now - self.t0
        rows, payload = self.rows_fn()
        s = db.settings
        duration = s.query_base + s.query_row * rows
        error = db.error(self.kind)
        if error:
            duration = s.query_base
            rows = 0
        remaining = s.query_timeout - wait
        if duration > remaining:  # the rows were being read when it was cancelled
            duration = max(0.0, remaining)
            error = "statement timeout"
        ev = env.timeout(duration)
        ev.callbacks.append(lambda _e: self._finish(wait, duration, rows, payload, error))

    def _finish(self, wait: float, duration: float, rows: int, payload: Any, error: str) -> None:
        db = self.db
        self.finished = True
        self.replica.pool.release(self.req)
        db.rec.queries.append((self.t0, self.replica.idx, self.kind, wait, duration, rows, error))
        self.done(not error, rows, payload, error)

    def expire(self, _ev: Any) -> None:
        """Still queued for a connection at the timeout: give up."""
        if self.granted or self.finished:
            return
        self.finished = True
        if not self.req.triggered:
            self.req.cancel()
            self.req = None  # its callbacks still point here: no cycle left for the GC
        # else the grant is already on its way: start() sees `finished` and releases it
        db = self.db
        db.rec.queries.append((self.t0, self.replica.idx, self.kind, db.settings.query_timeout,
                               0.0, 0, "pool timeout"))
        self.done(False, 0, None, "pool timeout")


class Database:
    """Postgres: topic heads and floors, pools per replica, error windows."""

    __slots__ = ("env", "errors", "fail_incident", "fleet", "rec", "replay_fails", "settings")

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.env = fleet.env
        self.settings = fleet.settings
        self.rec = fleet.rec
        self.errors: list[tuple[float, float, int]] = []  #: (end, rate, incident)
        self.replay_fails: list[int] = []  #: incidents, one per replay that must fail
        self.fail_incident: int | None = None  #: the incident behind the last error

    def query(self, replica: Replica, kind: str, rows_fn: Callable[[], tuple[int, Any]],
              done: Callable[[bool, int, Any, str], None]) -> None:
        """Run a query on ``replica``'s pool; ``rows_fn`` reads the data when it starts."""
        q = Query(self, replica, kind, rows_fn, done)
        req = replica.pool.request()
        q.req = req
        if req.triggered:
            q.start()
        else:
            req.callbacks.append(q.start)
            wd = self.env.timeout(self.settings.query_timeout)
            wd.callbacks.append(q.expire)

    def error(self, kind: str) -> str:
        """The error this query meets, drawn from the active fault windows ('' for none)."""
        self.fail_incident = None
        if kind == "replay" and self.replay_fails:
            self.fail_incident = self.replay_fails.pop(0)
            return "replay query failed (postgres.replay_fails)"
        if self.errors:
            now = self.env.now
            self.errors = [w for w in self.errors if w[0] > now]
            for _end, rate, incident in self.errors:
                if self.fleet.rng.random() < rate:
                    self.fail_incident = incident
                    return "query failed (postgres.errors)"
        return ""

    def replay(self, session: Session, q: sm.QueryReplay) -> None:
        """Carry out a session's QueryReplay."""
        fleet = self.fleet
        topic = session.topic
        after, upto, limit = q.after, q.upto, q.limit

        def rows() -> tuple[int, Any]:
            head = fleet.head[topic]
            floor = fleet.floor[topic]
            lo = after if after > floor else floor
            hi = head if upto is None or upto > head else upto
            n = hi - lo if hi > lo else 0
            if limit is not None and n > limit:
                n = limit
            return n, (lo, n, floor)

        def done(ok: bool, n: int, payload: Any, reason: str) -> None:
            if session.closed:
                return
            now = fleet.env.now
            if ok:
                lo, n, floor = payload
                fleet.session_feed(session, sm.ReplayRows(now=now, seqs=tuple(range(lo + 1, lo + n + 1)),
                                                          floor=floor))
            else:
                if self.fail_incident is not None:
                    row = fleet.rec.detection(self.fail_incident, fleet.faults[self.fail_incident][1],
                                              "replay-failed", f"client {session.client.idx}", now)
                    fleet.pg_detect.setdefault(session.client.idx, []).append(row)
                fleet.session_feed(session, sm.ReplayError(now=now, reason=reason))

        self.query(session.replica, "replay", rows, done)


class Fleet:
    """The whole simulated world for one scenario; :meth:`run` it, then read ``rec``."""

    def __init__(self, scenario: Scenario, rec: Recorder | None = None) -> None:
        s = scenario.settings
        self.scenario = scenario
        self.settings = s
        self.env = simpy.Environment()
        self.rng = random.Random(s.seed)
        self.rec = rec if rec is not None else Recorder()
        self.ccfg = s.client_config()
        self.scfg = s.session_config()
        self.subcfg = s.subscriber_config()
        self.latency = s.network_latency
        self.redis_latency = s.redis_latency
        self.retention_rows = s.retention_rows
        self.client_steps = 0
        self.session_steps = 0
        self.subscriber_steps = 0
        topics = s.topic_count
        self.head = [0] * topics
        self.floor = [0] * topics
        #: per topic, the replicas subscribed to it (with a stream of that topic), in order
        self.interest: list[list[Replica]] = [[] for _ in range(topics)]
        self.redis_up = True
        self.db = Database(self)
        self.replicas = [Replica(self, i) for i in range(s.replicas)]
        for replica in self.replicas:  # subscribed before the first client connects
            replica.link._try_connect()
        rng = self.rng
        self.clients = [Client(self, i, i % topics, rng.uniform(0.0, s.startup))
                        for i in range(s.clients)]
        self.topic_clients: list[list[Client]] = [[] for _ in range(topics)]
        for c in self.clients:
            self.topic_clients[c.topic].append(c)
        #: (Fault, its str) per incident index
        self.faults: list[tuple[Fault, str]] = [(f, str(f)) for f in scenario.faults]
        self.pg_detect: dict[int, list[list[Any]]] = {}
        self.open_failed: dict[int, list[Any]] = {}
        self.watches: list[tuple[Client, Watch]] = []
        self._sleep_incident: dict[int, int] = {}
        self.env.process(self._publisher())
        self.env.process(self._faults())
        if s.drop_rate_per_h > 0:
            self.env.process(self._background(s.drop_rate_per_h, self._background_drop))
        if s.sleep_rate_per_h > 0:
            self.env.process(self._background(s.sleep_rate_per_h, self._background_sleep))

    # ------------------------------------------------------------ running

    def run(self, progress: Callable[[float], None] | None = None, chunks: int = 100) -> int:
        """Run to the end of the scenario; return the number of SimPy events processed.

        The cyclic garbage collector is paused while the events run (and restored
        after): its full passes walk the whole fleet, so with it on the cost per
        event grows with the fleet. The run makes no lasting reference cycles --
        a session lets go of its stream when it ends, a cancelled query of its
        request -- so reference counting frees what the run drops.
        """
        env = self.env
        step = env.step
        peek = env.peek
        until = self.settings.duration
        events = 0
        t = 0.0
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(1, chunks + 1):
                t = until * i / chunks
                while peek() < t:
                    step()
                    events += 1
                if progress is not None:
                    progress(t)
        finally:
            if collecting:
                gc.enable()
        self._finish(until)
        return events

    def _finish(self, end: float) -> None:
        rec = self.rec
        for c in self.clients:
            if c.cls:
                rec.stale.append((c.idx, c.cls_since, end, c.cls == 2))
            st = c.state
            in_sync = st.status is _C_CONNECTED and st.rehydration is _R_NONE and c.cls == 0
            rec.counters.append((c.idx, c.topic, c.max_attempts, c.connects, c.mismatch,
                                 st.status.value, in_sync))
        for c, w in self.watches:
            if w.disturbed_at is not None and not w.done:
                rec.resync.append((w.incident, w.fault, c.idx, w.end, w.disturbed_at, None))

    # ------------------------------------------------------------ judging staleness

    def judge(self, c: Client) -> None:
        """Gather the client's StaleFacts, ask covered(), and track its stale intervals."""
        st = c.state
        live = st.status is _C_CONNECTED and st.rehydration is _R_NONE
        head = self.head[c.topic]
        missing = head - c.applied - len(c.beyond)
        if missing <= 0:
            cls = 0 if _NOTHING_MISSING_OK[live] else 2
        else:
            conn = c.conn
            session = conn.session if conn is not None else None
            facts = StaleFacts(
                live=live,
                missing=missing,
                in_flight=self._in_flight(c, conn, session, head),
                signal_pending=conn is not None and conn.signals > 0,
                stream_detector=conn is not None and (conn.stalled or conn.dead) and st.monitor,
                subscriber_detector=session is not None and session.replica.detector(),
            )
            bare = facts._replace(signal_pending=False, stream_detector=False,
                                  subscriber_detector=False)
            cls = 0 if covered(bare) else 1 if covered(facts) else 2
        if cls != c.cls:
            now = self.env.now
            if c.cls:
                self.rec.stale.append((c.idx, c.cls_since, now, c.cls == 2))
            c.cls = cls
            c.cls_since = now
        if c.watches is not None:
            self._watch(c, live and cls == 0)

    def _in_flight(self, c: Client, conn: Conn | None, session: Session | None, head: int) -> int:
        """How many of the events the client misses are on their way to it."""
        applied = c.applied
        lo = hi = 0
        seen: set[int] = set()
        if conn is not None:
            seen.update(s for s in conn.wire if s > applied)
        if session is not None:
            ss = session.state
            seen.update(s for s in session.pending if s > applied)
            seen.update(s for s in ss.buffer if s > applied)
            if ss.phase is _P_REPLAYING:
                top = head if ss.upto is None else ss.upto
                if self.settings.fixes.resync_after_recovery and ss.head > top:
                    top = ss.head
                lo = max(ss.cursor, applied)
                hi = min(top, head)
            topic = session.topic
            for t, s in session.replica.inflight:
                if t == topic and s > applied:
                    seen.add(s)
        if c.beyond:
            seen.difference_update(c.beyond)
            inside = sum(1 for s in range(lo + 1, hi + 1) if s not in c.beyond) if hi > lo else 0
        else:
            inside = hi - lo if hi > lo else 0
        outside = sum(1 for s in seen if s <= head and not lo < s <= hi)
        return inside + outside

    def judge_replica(self, replica: Replica) -> None:
        """Judge every client with a stream on ``replica`` (its subscriber's facts changed)."""
        for session in list(replica.sessions.values()):
            self.judge(session.client)

    def _watch(self, c: Client, good: bool) -> None:
        now = self.env.now
        keep: list[Watch] = []
        for w in c.watches or ():
            if w.disturbed_at is None:
                if not good:
                    w.disturbed_at = now
                    if now >= w.end:
                        w.target = max(w.target or 0, self.head[c.topic])
                elif now > w.end + WATCH_HORIZON_S:
                    continue  # untouched: not affected
                keep.append(w)
            elif good and w.target is not None and c.applied >= w.target:
                w.done = True
                self.rec.resync.append((w.incident, w.fault, c.idx, w.end, w.disturbed_at, now))
            else:
                keep.append(w)
        c.watches = keep or None

    def watch(self, incident: int, targets: list[Client]) -> None:
        """Follow ``targets`` until the incident's disturbance of them is over."""
        fault, text = self.faults[incident]
        end = fault.end
        watches = []
        for c in targets:
            w = Watch(incident, text, end)
            if c.watches is None:
                c.watches = [w]
            else:
                c.watches.append(w)
            self.watches.append((c, w))
            watches.append((c, w))
            self.judge(c)
        ev = self.env.timeout(max(0.0, end - self.env.now))
        ev.callbacks.append(functools.partial(self._fault_end, watches))

    def _fault_end(self, watches: list[tuple[Client, Watch]], _ev: Any) -> None:
        """The fault is over: fix what each client must hold to be back in sync."""
        head = self.head
        for c, w in watches:
            if not w.done:
                w.target = max(w.target or 0, head[c.topic])
                self.judge(c)

    # ------------------------------------------------------------ clients

    def status_changed(self, c: Client, status: cm.Status, attempts: int) -> None:
        """Record a status change; a user presses Retry some time after 'failed'."""
        now = self.env.now
        rec = self.rec
        rec.status.append((c.idx, now, status.value, attempts))
        if status is _C_FAILED:
            row: list[Any] = [c.idx, now, None]
            rec.failed.append(row)
            self.open_failed[c.idx] = row
            c.retry_gen += 1
            gen = c.retry_gen
            ev = self.env.timeout(self.rng.expovariate(1.0 / self.settings.user_retry))
            ev.callbacks.append(lambda _e: self._user_retry(c, gen))
        elif self.open_failed:
            open_row = self.open_failed.pop(c.idx, None)
            if open_row is not None:
                open_row[2] = now

    def _user_retry(self, c: Client, gen: int) -> None:
        if gen != c.retry_gen or c.asleep or c.state.status is not _C_FAILED:
            return
        c.feed(cm.Recover(now=self.env.now))
        c.reschedule()
        self.judge(c)

    def rehydration_started(self, c: Client) -> None:
        """A re-hydration is a reaction to a replay failure the client was told about."""
        rows = self.pg_detect.pop(c.idx, None)
        if rows:
            now = self.env.now
            for row in rows:
                row[5] = now

    def log(self, action: Log) -> None:
        """Count a machine's log line by level."""
        logs = self.rec.logs
        logs[action.level] = logs.get(action.level, 0) + 1

    # ------------------------------------------------------------ the network

    def route(self, ev: Any) -> None:
        """A stream attempt reached the load balancer: least connections among ready replicas."""
        conn: Conn = ev.value
        if conn.dead:
            return
        replica = self._pick()
        if replica is None:
            self.send(conn, [(REFUSED, "503 no healthy replica")])
        else:
            replica.accept(conn)

    def _pick(self) -> Replica | None:
        """Least connections among the replicas whose readiness (``subscriber.view``) is ready."""
        best: Replica | None = None
        now = self.env.now
        for replica in self.replicas:
            if (replica.up and (best is None or len(replica.sessions) < len(best.sessions))
                    and subm.view(self.subcfg, replica.sub, now).ready):
                best = replica
        return best

    def route_snapshot(self, ev: Any) -> None:
        """A snapshot request reached the load balancer."""
        c, token, head_first = ev.value
        replica = self._pick()
        latency = self.latency

        def answer(ok: bool, head: int, covers: int, reason: str) -> None:
            back = self.env.timeout(latency)
            back.callbacks.append(lambda _e: c.rehydrated(token, ok, head, covers, reason))

        if replica is None:
            answer(False, 0, 0, "503 no healthy replica")
            return
        topic = c.topic
        rows = self.settings.snapshot_rows + 1
        gen = replica.gen

        def read() -> tuple[int, Any]:
            return rows, self.head[topic]

        def done(ok: bool, n: int, at_start: Any, reason: str) -> None:
            if gen != replica.gen:
                answer(False, 0, 0, "replica restarted")
                return
            if not ok:
                answer(False, 0, 0, reason)
                return
            at_end = self.head[topic]
            # head first: the head is read before the snapshot, which may cover more;
            # snapshot first: events committed between the two reads are skipped.
            if head_first:
                answer(True, at_start, at_end, "")
            else:
                answer(True, at_end, at_start, "")

        self.db.query(replica, "snapshot", read, done)

    def connect_deadline(self, ev: Any) -> None:
        """The HTTP client's timeout: an attempt still unanswered fails (``StreamFailed``)."""
        conn: Conn = ev.value
        c = conn.client
        if conn is not c.conn or conn.opened or conn.dead or c.asleep:
            return
        c.conn = None
        self.sever(conn, "connect timeout", tell_client=False)
        c.feed(cm.StreamFailed(now=self.env.now, reason="connect timeout", u=self.rng.random()))
        c.reschedule()
        self.judge(c)

    def send(self, conn: Conn, frames: list[tuple[Any, ...]]) -> None:
        """Put frames on the wire towards the client."""
        ev = self.env.timeout(self.latency, (conn, frames))
        ev.callbacks.append(self._arrive)

    @staticmethod
    def _arrive(ev: Any) -> None:
        conn, frames = ev.value
        conn.client.frames(conn, frames)

    def sever(self, conn: Conn, reason: str, *, tell_client: bool) -> None:
        """Close a stream at both ends at once."""
        if conn.dead:
            return
        conn.dead = True
        conn.virtual = False
        if conn.detect is not None:
            conn.detect[6] = f"stream closed first ({reason})"
            conn.detect = None
        conn.wire.clear()
        conn.held.clear()
        conn.signals = 0
        session = conn.session
        if session is not None:
            session.replica.end(session)
        c = conn.client
        if tell_client and c.conn is conn and not c.asleep:
            c.conn = None
            now = self.env.now
            if conn.opened:
                c.feed(cm.StreamClosed(now=now, reason=reason, u=self.rng.random()))
            else:
                c.feed(cm.StreamFailed(now=now, reason=reason, u=self.rng.random()))
            c.reschedule()
            self.judge(c)

    def silence(self, conn: Conn, now: float) -> None:
        """The stream goes quiet: feed the last heartbeat it carried, run real heartbeats again."""
        c = conn.client
        if conn.virtual and c.conn is conn:
            session = conn.session
            if session is not None:
                interval = self.settings.heartbeat_interval
                k = math.floor((now - self.latency - session.anchor) / interval)
                if k >= 0:
                    arrived = session.anchor + k * interval + self.latency
                    if arrived > c.last_input_at:
                        c.feed(cm.HeartbeatReceived(now=arrived))
        conn.virtual = False
        session = conn.session
        if session is not None and not session.closed:
            self._resume_heartbeats(session)
        c.reschedule()

    def stall(self, conn: Conn, duration: float, incident: int) -> None:
        """A half-open stream: frames are held; with a duration, they flow again after it."""
        if conn.dead or conn.stalled:
            return
        now = self.env.now
        conn.stalled = True
        conn.detect = self.rec.detection(incident, self.faults[incident][1], "network.stall",
                                         f"client {conn.client.idx}", now)
        self.silence(conn, now)
        self.judge(conn.client)
        if duration > 0:
            ev = self.env.timeout(duration)
            ev.callbacks.append(lambda _e: self._unstall(conn))

    def _unstall(self, conn: Conn) -> None:
        if conn.dead or not conn.stalled:
            return
        conn.stalled = False
        if conn.detect is not None:
            conn.detect[6] = "healed before detection"
            conn.detect = None
        held = conn.held
        conn.held = []
        c = conn.client
        if held:
            c.frames(conn, held)
        else:
            c.reschedule()
            self.judge(c)

    # ------------------------------------------------------------ sessions

    def session_feed(self, session: Session, inp: sm.SessionInput, *, opened: bool = False) -> None:
        """Apply one input to a session and carry out its actions."""
        self.session_steps += 1
        st, actions = _session_step(self.scfg, session.state, inp)
        session.state = st
        conn = session.conn
        frames: list[tuple[Any, ...]] = [(OPENED,)] if opened else []
        dead = conn.dead
        for a in actions:
            if isinstance(a, _Send):
                if not dead:
                    seq = a.event_id.seq
                    frames.append((EVENT, seq))
                    conn.wire.append(seq)
            elif isinstance(a, _StartTimer):
                if opened:
                    session.anchor = a.at
                self._session_timer(session, a.at)
            elif isinstance(a, sm.QueryReplay):
                self.db.replay(session, a)
            elif isinstance(a, sm.SendTruncated):
                if not dead:
                    frames.append((TRUNCATED, a.head.seq, a.reason.value))
                    conn.signals += 1
            elif isinstance(a, sm.SendFailed):
                if not dead:
                    frames.append((REPLAY_FAILED, a.reason))
                    conn.signals += 1
            elif isinstance(a, sm.SendHeartbeat):
                frames.append((HEARTBEAT,))
            elif isinstance(a, CancelTimer):
                session.hb_gen += 1
            elif isinstance(a, Log):
                self.log(a)
            else:  # pragma: no cover
                raise TypeError(f"the DES cannot carry out session action {a!r}")
        if frames and not dead:
            self.send(conn, frames)
        c = session.client
        if c.cls:
            self.judge(c)

    def _session_timer(self, session: Session, at: float) -> None:
        session.hb_gen += 1
        if session.conn.virtual:
            return  # coalesced: the client is stable and its stream healthy
        gen = session.hb_gen
        ev = self.env.timeout(max(0.0, at - self.env.now))
        ev.callbacks.append(lambda _e: self._session_tick(session, gen))

    def _session_tick(self, session: Session, gen: int) -> None:
        if gen != session.hb_gen or session.closed:
            return
        if session.conn.virtual:
            return  # coalesced from here on
        self.session_feed(session, sm.TimerFired(now=self.env.now, timer=sm.HEARTBEAT))

    def _resume_heartbeats(self, session: Session) -> None:
        interval = self.settings.heartbeat_interval
        now = self.env.now
        k = math.floor((now - session.anchor) / interval) + 1
        self._session_timer(session, session.anchor + max(k, 0) * interval)

    # ------------------------------------------------------------ Redis

    def _publisher(self) -> Generator[Any, Any, None]:
        s = self.settings
        topics = s.topic_count
        rate = s.publish_rate * topics
        if rate <= 0:
            return
        env = self.env
        rng = self.rng
        while True:
            yield env.timeout(rng.expovariate(rate))
            self.publish(int(rng.random() * topics))

    def publish(self, topic: int) -> None:
        """Commit an event to ``topic`` and publish it on Redis."""
        seq = self.head[topic] + 1
        self.head[topic] = seq
        if seq - self.floor[topic] > self.retention_rows:
            self.floor[topic] = seq - self.retention_rows
        rec = self.rec
        rec.publishes += 1
        sent: int = 0  # bit mask of replicas the message is on its way to
        if self.redis_up:
            for replica in self.interest[topic]:
                link = replica.link
                if not link.connected:
                    continue
                if link.dead:
                    rec.lost_messages += 1
                    continue
                replica.inflight.append((topic, seq))
                self.env.timeout(self.redis_latency, replica).callbacks.append(self._redis_deliver)
                sent |= 1 << replica.idx
        for c in self.topic_clients[topic]:
            conn = c.conn
            if c.cls == 0 and conn is not None:
                session = conn.session
                if session is not None and not session.closed and sent >> session.replica.idx & 1:
                    continue  # one more missing, one more on its way: nothing changes
            self.judge(c)

    def _redis_deliver(self, ev: Any) -> None:
        replica: Replica = ev.value
        topic, seq = replica.inflight.popleft()
        subs = replica.by_topic.get(topic)
        link = replica.link
        if not link.connected or link.dead:
            self.rec.lost_messages += 1
            if subs:
                for session in list(subs.values()):
                    self.judge(session.client)
            return
        if not subs:
            return
        now = self.env.now
        for session in list(subs.values()) if len(subs) > 1 else subs.values():
            if session.closed:
                continue
            if session.state.phase is _P_NEW:
                session.pending.append(seq)
            else:
                self.session_feed(session, sm.LiveEvent(now=now, seq=seq))

    def publish_sentinel(self, replica: Replica, token: int) -> None:
        """PublishSentinel: a round trip through Redis to the replica's own channel."""
        link = replica.link
        if not self.redis_up or not link.connected or link.dead:
            return  # lost; the sentinel timeout will tell
        gen = replica.gen
        ev = self.env.timeout(2 * self.settings.redis_latency)

        def back(_e: Any) -> None:
            if gen == replica.gen and link.connected and not link.dead:
                replica.subscriber(subm.SentinelReceived(now=self.env.now, token=token))

        ev.callbacks.append(back)

    # ------------------------------------------------------------ faults

    def _faults(self) -> Generator[Any, Any, None]:
        env = self.env
        for incident, (fault, _text) in enumerate(self.faults):
            if fault.at > env.now:
                yield env.timeout(fault.at - env.now)
            self._apply(incident, fault)

    def _sample(self, fraction: float) -> list[Client]:
        k = round(fraction * len(self.clients))
        return [self.clients[i] for i in self.rng.sample(range(len(self.clients)), k)]

    def _replicas(self, fault: Fault) -> list[Replica]:
        which = int(fault.get("replica"))
        return self.replicas if which < 0 else [self.replicas[which]]

    def _on_replicas(self, replicas: list[Replica]) -> list[Client]:
        out: list[Client] = []
        for replica in replicas:
            out.extend(s.client for s in replica.sessions.values())
        return out

    def _apply(self, incident: int, fault: Fault) -> None:
        kind = fault.kind
        text = self.faults[incident][1]
        now = self.env.now
        rec = self.rec
        if kind == "network.drop":
            targets = self._sample(float(fault.get("fraction")))
            self.watch(incident, targets)
            for c in targets:
                if c.conn is not None:
                    self.sever(c.conn, "network drop", tell_client=True)
        elif kind == "network.stall":
            targets = self._sample(float(fault.get("fraction")))
            self.watch(incident, targets)
            for c in targets:
                if c.conn is not None and not c.asleep:
                    self.stall(c.conn, float(fault.get("duration") or 0.0), incident)
        elif kind == "clients.sleep":
            targets = self._sample(float(fault.get("fraction")))
            duration = float(fault.get("duration"))
            self.watch(incident, targets)
            for c in targets:
                self._sleep_incident[c.idx] = incident
                c.proc.interrupt(("sleep", duration))
        elif kind in ("redis.subscriber_dies", "redis.disconnect"):
            replicas = self._replicas(fault)
            self.watch(incident, self._on_replicas(replicas))
            for replica in replicas:
                if replica.link.connected and not replica.link.dead:
                    replica.detect.append(rec.detection(incident, text, kind, f"replica {replica.idx}", now))
                if kind == "redis.disconnect":
                    until = now + float(fault.get("duration"))
                    replica.link.request(("drop", "redis: connection lost", until))
                else:
                    replica.link.request(("die",))
        elif kind == "redis.outage":
            self.redis_up = False
            self.watch(incident, list(self.clients))
            end = fault.end
            for replica in self.replicas:
                if replica.link.connected:
                    replica.detect.append(rec.detection(incident, text, kind, f"replica {replica.idx}", now))
                replica.link.request(("drop", "redis: server down", end))
            ev = self.env.timeout(end - now)
            ev.callbacks.append(lambda _e: setattr(self, "redis_up", True))
        elif kind == "postgres.replay_fails":
            self.db.replay_fails.extend([incident] * int(fault.get("count")))
            self.watch(incident, list(self.clients))
        elif kind == "postgres.errors":
            self.db.errors.append((fault.end, float(fault.get("rate")), incident))
            self.watch(incident, list(self.clients))
        elif kind == "postgres.prune":
            keep = int(fault.get("keep"))
            for t, head in enumerate(self.head):
                if head - keep > self.floor[t]:
                    self.floor[t] = head - keep
            self.watch(incident, list(self.clients))
        elif kind == "replicas.down":
            replicas = self._replicas(fault)
            self.watch(incident, self._on_replicas(replicas))
            for replica in replicas:
                replica.proc.interrupt(("down", float(fault.get("duration"))))
        elif kind == "replicas.restart":
            stagger = float(fault.get("stagger"))
            for j, replica in enumerate(self._replicas(fault)):
                if j == 0 or stagger <= 0:
                    self._restart(replica, incident)
                else:
                    ev = self.env.timeout(j * stagger)
                    ev.callbacks.append(functools.partial(self._restart_at, replica, incident))
        else:  # pragma: no cover - a fault the vocabulary gained and the DES has not
            raise NotImplementedError(f"the DES does not simulate {kind!r} yet")

    def _restart_at(self, replica: Replica, incident: int, _ev: Any) -> None:
        self._restart(replica, incident)

    def _restart(self, replica: Replica, incident: int) -> None:
        self.watch(incident, self._on_replicas([replica]))
        replica.proc.interrupt(("down", self.settings.replica_boot))

    def sleep_incident(self, c: Client) -> int:
        """The incident that put ``c`` to sleep (-1: a background sleep)."""
        return self._sleep_incident.pop(c.idx, -1)

    def _background(self, per_hour: float, hit: Callable[[Client], None]
                    ) -> Generator[Any, Any, None]:
        rate = per_hour / 3600.0 * len(self.clients)
        env = self.env
        rng = self.rng
        while True:
            yield env.timeout(rng.expovariate(rate))
            hit(self.clients[int(rng.random() * len(self.clients))])

    def _background_drop(self, c: Client) -> None:
        if c.conn is not None and not c.asleep:
            self.sever(c.conn, "network drop", tell_client=True)

    def _background_sleep(self, c: Client) -> None:
        s = self.settings
        duration = self.rng.lognormvariate(math.log(s.sleep_median), s.sleep_sigma)
        if not c.asleep:
            c.proc.interrupt(("sleep", duration))
