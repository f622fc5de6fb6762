"""The replicas: their sessions, their subscriber machine, their Redis link and their pool.

What it owns. A :class:`Replica` is one API replica: the streams it serves (a
:class:`Session` each, driving :mod:`model.session`), its :mod:`model.subscriber`
machine with its sentinel timers, its Redis pub/sub :class:`Link` and its
Postgres pool (a ``simpy.Resource``). It is a SimPy process; a restart is an
interrupt carrying the downtime. The link is a process too; drops, silent
deaths and the subscriber's ``Resubscribe`` orders reach it as requests.

:class:`Sessions` is the shell every session shares: it carries out the session
machine's actions through the ``{action class: handler}`` table
:data:`SESSION_ACTIONS` (run by :func:`model.core.dispatch`; an action without a
handler raises), turning them into frames on the wire, replay queries and
heartbeat timers. A replica carries out its subscriber's actions through
:data:`SUBSCRIBER_ACTIONS`.

Deliberate divergences, for speed, each exact for the machines' inputs:

* **Heartbeats are coalesced.** Once a client's stream is stable (it has had its
  first message) and healthy, the server's heartbeats (due ``HEARTBEAT_INTERVAL_S``
  after the last frame, then every interval) would only re-arm the client's
  heartbeat timer, so
  neither the session's heartbeat timer nor the client's monitor is simulated:
  a quiet connection costs no wake-ups. When the stream goes silent (a stall, a
  laptop lid) the last heartbeat it would have carried is fed to the client at
  its own time (:meth:`sims.des.wire.Network.silence`), the monitor's deadline is
  armed from it, and the session's timer runs for real again.
* **Server-side closes are seen by both ends at once** (a replica restart, a
  drop, a session's ``EndStream``), as in the checker's world; a client's own
  close reaches the replica at once too.

A failed resync. When the subscriber recovers, the replica reads every topic's
head (one query on its pool) and feeds each open session ``Resync``. When that
read fails (an error window, a statement or pool timeout), each such session is
fed :class:`model.session.ResyncFailed` and carries out the ``EndStream`` it
answers with: the stream closes at both ends, the client reconnects with backoff
from its cursor, and that replay (bounded, with its own failure signal) catches
it up. This is what ``service/`` does. (Until the session machine had that
input, the fleet retried the head read every second instead: two engines, two
behaviours.)

The head probe (fix ``head-probe``). Every ``PROBE_INTERVAL_S`` each replica
that is up and holds streams reads the head of every topic it serves -- one row
per topic, at most :data:`PROBE_BATCH` topics per query on its own pool, as
``service/app.py`` batches them -- and feeds each open session of that topic
``HeadProbed``; the session decides whether to catch up. This is what brings a
publish lost after its commit (``redis.publish_lost``). A failed read feeds
nothing (the machine has no input for it) and the next period reads again, as
in the service. With ``head-probe`` off no probe runs and no query is made.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

import simpy

from model import session as sm
from model import subscriber as subm
from model.core import CancelTimer, Log, StartTimer, dispatch
from model.delivery import sent_out_of_order
from model.invariants import ORDERED_DELIVERY, REVOKED_STREAM_ENDS
from sims.des.context import Context
from sims.des.observer import FINE
from sims.des.wire import ANNOUNCED, EVENT, HEARTBEAT, OPENED, REFUSED, REPLAY_FAILED, TRUNCATED, Conn

if TYPE_CHECKING:
    from sims.des.client import Client
    from sims.des.database import Database
    from sims.des.observer import Observer
    from sims.des.pubsub import Redis
    from sims.des.wire import Network

__all__ = ["PROBE_BATCH", "SESSION_ACTIONS", "SUBSCRIBER_ACTIONS", "Link", "Replica", "Session",
           "Sessions"]

#: Topics whose heads one probe query reads (``service/app.py`` reads 500 per query).
PROBE_BATCH = 500

_P_NEW = sm.Phase.NEW
_P_CLOSED = sm.Phase.CLOSED
_H_HEALTHY = subm.Health.HEALTHY

_session_step = sm.step
_subscriber_step = subm.step


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
        self.anchor = 0.0  #: the heartbeat last armed: later ones follow every interval


class Sessions:
    """The shell every session shares: the session machine's actions, carried out."""

    def __init__(self, ctx: Context, net: Network, db: Database, observer: Observer) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.cfg = ctx.scfg
        self.net = net
        self.db = db
        self.observer = observer
        self.verdict = observer.verdict
        self.judge: Callable[[Client], None]  #: set when the fleet is wired

    def feed(self, session: Session, inp: sm.SessionInput, *, opened: bool = False) -> None:
        """Apply one input to a session and carry out its actions."""
        self.ctx.session_steps += 1
        st, actions = _session_step(self.cfg, session.state, inp)
        session.state = st
        conn = session.conn
        frames: list[tuple[Any, ...]] = [(OPENED,)] if opened else []
        if actions:
            dispatch(SESSION_ACTIONS, actions, self, session, frames,
                     shell="the fleet's session shell")
        if frames and not conn.dead:
            self.net.send(conn, frames)
        c = session.client
        if self.verdict[c.idx] != FINE:
            self.judge(c)

    # ------------------------------------------------------------ heartbeat timer

    def arm(self, session: Session, at: float) -> None:
        """Arm the session's heartbeat timer at ``at`` (not while heartbeats are coalesced)."""
        session.hb_gen += 1
        if session.conn.virtual:
            return  # coalesced: the client is stable and its stream healthy
        gen = session.hb_gen
        ev = self.env.timeout(max(0.0, at - self.env.now))
        ev.callbacks.append(lambda _e: self._tick(session, gen))

    def _tick(self, session: Session, gen: int) -> None:
        if gen != session.hb_gen or session.closed:
            return
        if session.conn.virtual:
            return  # coalesced from here on
        self.feed(session, sm.TimerFired(now=self.env.now, timer=sm.HEARTBEAT))

    def resume_heartbeats(self, session: Session) -> None:
        """The stream went quiet: run the session's heartbeat timer for real again."""
        interval = self.ctx.settings.heartbeat_interval
        now = self.env.now
        k = math.floor((now - session.anchor) / interval) + 1
        self.arm(session, session.anchor + max(k, 0) * interval)


# ---------------------------------------------------------------- the session machine's actions
# Each handler takes the shell, the session, the frames its step writes to the wire
# (they open with OPENED when the step answered the Open), then the action.


def _send(shell: Sessions, session: Session, frames: list[tuple[Any, ...]], a: sm.Send) -> None:
    conn = session.conn
    if not conn.dead:
        seq = a.event_id.seq
        if sent_out_of_order(conn.last_sent, seq):  # one rule: model.delivery
            shell.observer.breach(ORDERED_DELIVERY, session.client.idx,
                                  f"event {seq} sent after {conn.last_sent} on one stream")
        else:
            conn.last_sent = seq
        frames.append((EVENT, seq))
        conn.wire.append(seq)


def _send_truncated(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                    a: sm.SendTruncated) -> None:
    conn = session.conn
    if not conn.dead:
        frames.append((TRUNCATED, a.head.seq, a.reason.value))
        conn.signals += 1


def _send_failed(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                 a: sm.SendFailed) -> None:
    conn = session.conn
    if not conn.dead:
        frames.append((REPLAY_FAILED, a.reason))
        conn.signals += 1


def _announce_head(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                   a: sm.AnnounceHead) -> None:
    conn = session.conn
    if not conn.dead:
        conn.last_sent = max(conn.last_sent, a.head.seq)
        frames.append((ANNOUNCED, a.head.seq))


def _send_heartbeat(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                    a: sm.SendHeartbeat) -> None:
    frames.append((HEARTBEAT,))


def _end_stream(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                a: sm.EndStream) -> None:
    """The replica ends the stream cleanly; the client sees it close and reconnects."""
    shell.net.sever(session.conn, f"stream ended by the replica ({a.reason})", tell_client=True)


def _start_timer(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                 a: StartTimer) -> None:
    # Every re-arm (at open, after a heartbeat, after any frame) starts the grid of
    # heartbeats that follow while nothing else is written: its anchor.
    session.anchor = a.at
    shell.arm(session, a.at)


def _cancel_timer(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                  a: CancelTimer) -> None:
    session.hb_gen += 1


def _query_replay(shell: Sessions, session: Session, frames: list[tuple[Any, ...]],
                  a: sm.QueryReplay) -> None:
    shell.db.replay(session, a)


def _log(shell: Sessions, session: Session, frames: list[tuple[Any, ...]], a: Log) -> None:
    shell.ctx.log(a)


#: The session machine's actions, carried out: {action class: handler(shell, session, frames, action)}.
SESSION_ACTIONS: dict[type[Any], Callable[..., object]] = {
    sm.Send: _send,
    StartTimer: _start_timer,
    sm.QueryReplay: _query_replay,
    sm.SendTruncated: _send_truncated,
    sm.SendFailed: _send_failed,
    sm.SendHeartbeat: _send_heartbeat,
    sm.AnnounceHead: _announce_head,
    sm.EndStream: _end_stream,
    CancelTimer: _cancel_timer,
    Log: _log,
}


class Link:
    """A replica's Redis pub/sub connection: its own process; drops, deaths are interrupts."""

    __slots__ = ("blocked_until", "connected", "dead", "env", "idle", "proc", "redis", "replica")

    def __init__(self, env: simpy.Environment, replica: Replica, redis: Redis) -> None:
        self.env = env
        self.replica = replica
        self.redis = redis
        self.connected = False
        self.dead = False  #: subscribed, but silently receiving nothing
        self.blocked_until = 0.0
        self.idle = env.event()
        self.proc = env.process(self._run())

    def _run(self) -> Generator[Any, Any, None]:
        env = self.env
        reconnect = self.replica.ctx.settings.redis_reconnect
        while True:
            try:
                if self.connected:
                    yield self.idle
                else:
                    self.try_connect()
                    if not self.connected:
                        yield env.timeout(reconnect)
            except simpy.Interrupt as interrupt:
                self._on(cast(tuple[Any, ...], interrupt.cause))

    def try_connect(self) -> None:
        """Subscribe, if Redis and the replica are up and no drop blocks it."""
        now = self.env.now
        if self.redis.up and self.replica.up and now >= self.blocked_until:
            self.connected = True
            self.dead = False
            self.replica.subscriber(subm.Ready(now=now))

    def request(self, cause: tuple[Any, ...]) -> None:
        """Hand the link a fault or an order: inline if it is running, else as an interrupt."""
        if self.env.active_process is self.proc:
            self._on(cause)
        else:
            self.proc.interrupt(cause)

    def _on(self, cause: tuple[Any, ...]) -> None:
        now = self.env.now
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
                self.replica.judge_streams()
        elif kind == "resubscribe":  # the subscriber machine's order
            if self.connected:
                self.connected = False
                self.dead = False
                self.replica.subscriber(subm.Reconnecting(now=now, reason=str(cause[1])))
        elif kind == "replica-down":
            self.connected = False
            self.dead = False
        elif kind == "replica-up":
            self.try_connect()


class Replica:
    """An API replica: its sessions, its subscriber machine, its link and its pool."""

    __slots__ = ("by_topic", "ctx", "db", "detect", "down_until", "gen", "health_moved",
                 "idle", "idx", "inflight", "interest", "judge", "link", "net", "next_sid", "pool", "proc",
                 "redis", "resyncing", "sessions", "shell", "sub", "sub_armed", "sub_gen", "up")

    def __init__(self, ctx: Context, idx: int, *, net: Network, db: Database, redis: Redis,
                 shell: Sessions, interest: list[list[Replica]], judge: Callable[[Client], None]
                 ) -> None:
        self.ctx = ctx
        self.idx = idx
        self.net = net
        self.db = db
        self.redis = redis
        self.shell = shell
        self.interest = interest  #: per topic, the replicas with a stream of it (shared)
        self.judge = judge
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
        self.health_moved = False
        self.detect: list[list[Any]] = []  #: detection rows waiting for a health change
        env = ctx.env
        self.pool = simpy.Resource(env, capacity=ctx.settings.pool_size)
        self.idle = env.event()
        self.link = Link(env, self, redis)
        self.proc = env.process(self._run())
        if ctx.settings.fixes.head_probe:
            env.process(self._probe_every(ctx.settings.probe_interval))

    def _run(self) -> Generator[Any, Any, None]:
        env = self.ctx.env
        while True:
            try:
                if self.up:
                    yield self.idle
                else:
                    yield env.timeout(max(0.0, self.down_until - env.now))
                    self._boot()
            except simpy.Interrupt as interrupt:
                duration = float(cast(float, interrupt.cause))
                now = env.now
                if self.up:
                    self.down_until = now + duration
                    self._crash()
                else:
                    self.down_until = max(self.down_until, now + duration)

    def go_down(self, duration: float) -> None:
        """Stop the replica for ``duration`` seconds (an interrupt to its process)."""
        self.proc.interrupt(duration)

    def _crash(self) -> None:
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
            self.net.sever(session.conn, "replica restarting", tell_client=True)

    def _boot(self) -> None:
        self.up = True
        self.sub = subm.initial()
        self.link.request(("replica-up",))

    def judge_streams(self) -> None:
        """Judge every client with a stream here (the subscriber's facts changed)."""
        judge = self.judge
        for session in list(self.sessions.values()):
            judge(session.client)

    # ------------------------------------------------------------ subscriber

    def subscriber(self, inp: subm.SubscriberInput) -> None:
        """Apply one input to the replica's subscriber machine and carry out its actions."""
        ctx = self.ctx
        ctx.subscriber_steps += 1
        self.sub, actions = _subscriber_step(ctx.subcfg, self.sub, inp)
        self.health_moved = False
        dispatch(SUBSCRIBER_ACTIONS, actions, self, shell=f"the fleet's replica {self.idx} subscriber shell")
        if self.health_moved:  # judged once every action is under way (a resync covers what it brings)
            self.judge_streams()

    def _start_timer(self, a: StartTimer) -> None:
        timer = a.timer
        self.sub_gen[timer] += 1
        self.sub_armed[timer] = True
        gen = self.sub_gen[timer]
        env = self.ctx.env
        ev = env.timeout(max(0.0, a.at - env.now))
        ev.callbacks.append(lambda _e: self._timer(timer, gen))

    def _cancel_timer(self, a: CancelTimer) -> None:
        self.sub_gen[a.timer] += 1
        self.sub_armed[a.timer] = False

    def _timer(self, timer: str, gen: int) -> None:
        if self.sub_gen[timer] != gen:
            return
        self.sub_armed[timer] = False
        self.subscriber(subm.TimerFired(now=self.ctx.env.now, timer=timer))

    def _log(self, a: Log) -> None:
        self.ctx.log(a)

    def _publish_sentinel(self, a: subm.PublishSentinel) -> None:
        self.redis.sentinel(self, a.token)

    def _resubscribe(self, a: subm.Resubscribe) -> None:
        self.link.request(("resubscribe", a.reason))

    def _resync_streams(self, a: subm.ResyncStreams) -> None:
        self._resync()

    def _health_changed(self, a: subm.HealthChanged) -> None:
        now = self.ctx.env.now
        self.ctx.rec.health.append((self.idx, now, a.health.value, a.reason))
        if a.health is not _H_HEALTHY and self.detect:
            for row in self.detect:
                row[5] = now
            self.detect.clear()
        self.health_moved = True

    def detector(self) -> bool:
        """Whether a dead subscriber is covered: sentinel armed, or known down and resyncing."""
        if self.resyncing:
            return True
        if self.link.dead and self.sub_armed[subm.SENTINEL]:
            return True
        return subm.will_resync(self.ctx.subcfg, self.sub)

    def _resync(self) -> None:
        self.resyncing = True
        gen = self.gen
        topics = len(self.by_topic)
        env = self.ctx.env

        def done(ok: bool, rows: int, payload: Any, reason: str) -> None:
            if gen != self.gen:
                return
            now = env.now
            head, floor = self.db.head, self.db.floor
            feed = self.shell.feed
            for session in list(self.sessions.values()):
                if session.closed or session.state.phase is _P_NEW:
                    continue  # gone, or still to read its topic row (its Open brings the head)
                if ok:
                    t = session.topic
                    feed(session, sm.Resync(now=now, topic=sm.TopicHead(0, head[t], floor[t])))
                else:  # the session decides: it ends the stream (EndStream), as the service does
                    feed(session, sm.ResyncFailed(now=now, reason=reason))
            self.resyncing = False
            self.judge_streams()

        self.db.query(self, "heads", lambda: (topics, None), done)

    # ------------------------------------------------------------ head probe

    def _probe_every(self, interval: float) -> Generator[Any, Any, None]:
        """The head probe's process: every ``interval`` seconds, read the heads (if up)."""
        env = self.ctx.env
        while True:
            yield env.timeout(interval)
            if self.up and self.by_topic:
                self.probe()

    def probe(self) -> None:
        """Read the head of each topic with a stream here; feed ``HeadProbed`` to its sessions."""
        gen = self.gen
        env = self.ctx.env
        heads, floors = self.db.head, self.db.floor
        topics = sorted(self.by_topic)
        for i in range(0, len(topics), PROBE_BATCH):
            batch = topics[i:i + PROBE_BATCH]

            def read(batch: list[int] = batch) -> tuple[int, Any]:
                return len(batch), [(t, heads[t], floors[t]) for t in batch]

            def done(ok: bool, rows: int, payload: Any, reason: str) -> None:
                if gen != self.gen or not ok:
                    return  # restarted, or the read failed: the next period reads again
                now = env.now
                feed = self.shell.feed
                for topic, head, floor in payload:
                    subs = self.by_topic.get(topic)
                    if not subs:
                        continue
                    probed = sm.HeadProbed(now=now, topic=sm.TopicHead(0, head, floor))
                    for session in list(subs.values()):
                        phase = session.state.phase
                        if session.closed or phase is _P_NEW or phase is _P_CLOSED:
                            continue  # gone, or still to read its topic row (its Open brings the head)
                        feed(session, probed)

            self.db.query(self, "probe", read, done)

    # ------------------------------------------------------------ sessions

    def accept(self, conn: Conn) -> None:
        """A stream attempt reached this replica: subscribe it, then read the topic row."""
        sid = self.next_sid
        self.next_sid += 1
        session = Session(self, conn, sid)
        conn.session = session
        self.sessions[sid] = session
        topic = session.topic
        subs = self.by_topic.get(topic)
        if subs is None:
            self.by_topic[topic] = {sid: session}
            self.interest[topic].append(self)
        else:
            subs[sid] = session
        env = self.ctx.env
        feed = self.shell.feed
        heads, floors = self.db.head, self.db.floor

        def done(ok: bool, rows: int, payload: Any, reason: str) -> None:
            if session.closed:
                return
            if not ok:
                self.end(session)
                self.net.send(conn, [(REFUSED, f"500 {reason}")])
                return
            head, floor = payload
            now = env.now
            conn.head_read = head
            feed(session, sm.Open(now=now, last_event_id=conn.last_event_id,
                                  topic=sm.TopicHead(0, head, floor)), opened=True)
            pending = session.pending
            session.pending = []
            for seq in pending:
                if session.closed:
                    break
                feed(session, sm.LiveEvent(now=now, seq=seq))

        self.db.query(self, "head", lambda: (1, (heads[topic], floors[topic])), done)

    def revoke(self, session: Session, reason: str) -> None:
        """A re-check found the stream's token revoked: the session decides (``Revoked``)."""
        if session.state.phase is not _P_NEW and session.state.phase is not _P_CLOSED:
            self.shell.feed(session, sm.Revoked(now=self.ctx.env.now, reason=reason))
            if not session.closed:  # the re-check was fed: the stream must have ended by now
                self.shell.observer.breach(REVOKED_STREAM_ENDS, session.client.idx,
                                           f"stream on replica {self.idx} open after {reason}")

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
            self.interest[session.topic].remove(self)
        if session.state.phase is not _P_CLOSED:
            ctx = self.ctx
            ctx.session_steps += 1
            session.state, _ = _session_step(ctx.scfg, session.state, sm.Close(now=ctx.env.now))


#: The subscriber machine's actions, carried out: {action class: handler(replica, action)}.
SUBSCRIBER_ACTIONS: dict[type[Any], Callable[..., object]] = {
    StartTimer: Replica._start_timer,
    CancelTimer: Replica._cancel_timer,
    subm.PublishSentinel: Replica._publish_sentinel,
    subm.Resubscribe: Replica._resubscribe,
    subm.ResyncStreams: Replica._resync_streams,
    subm.HealthChanged: Replica._health_changed,
    Log: Replica._log,
}
