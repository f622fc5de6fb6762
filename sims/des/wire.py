"""The network between tabs and replicas: streams on the wire, the load balancer, timeouts.

What it owns. A :class:`Conn` is one stream attempt: the client's end, the
frames in flight, and the replica's session once it is accepted. The
:class:`Network` carries a stream attempt to the load balancer (least streams
among the replicas whose ``/health/ready`` says ready, else a 503), snapshot
requests to a replica's pool, frames to the client after ``NETWORK_LATENCY_S``,
and the HTTP client's connect timeout. It closes streams at both ends at once
(:meth:`Network.sever`), makes them go quiet (:meth:`Network.silence`) and
stalls them half-open (:meth:`Network.stall`).

Frames on the wire (server -> client) are tuples whose first item is a code:
``OPENED``, ``EVENT``, ``HEARTBEAT``, ``TRUNCATED``, ``REPLAY_FAILED``,
``ANNOUNCED`` (an id-only message: the head, for a stream opened without a
cursor) and ``REFUSED`` (the attempt failed before the stream opened).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from model import client as cm
from model import subscriber as subm
from model.core import EventId
from sims.des.context import Context

if TYPE_CHECKING:
    from sims.des.client import Client
    from sims.des.database import Database
    from sims.des.observer import Observer
    from sims.des.replica import Replica, Session, Sessions

__all__ = ["ANNOUNCED", "EVENT", "HEARTBEAT", "OPENED", "REFUSED", "REPLAY_FAILED", "TRUNCATED", "Conn",
           "Network"]

# frame codes on the wire (server -> client)
OPENED, EVENT, HEARTBEAT, TRUNCATED, REPLAY_FAILED, REFUSED, ANNOUNCED = range(7)


class Conn:
    """One stream attempt: the client's end, the wire, and the replica's session."""

    __slots__ = ("client", "cursorless", "dead", "detect", "head_read", "heard", "held",
                 "last_event_id", "last_sent", "opened", "session", "signals", "stalled", "virtual", "wire")

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
        self.virtual = False  #: heartbeats are coalesced (stable, healthy, connected)
        self.detect: list[Any] | None = None  #: detection row of a silent fault
        self.last_sent = -1  #: the highest id the session sent on it (an event or the head)
        self.heard = False  #: a message (not the open itself) reached the client
        self.head_read = 0  #: the topic head its session opened at
        self.cursorless = False  #: no-stream-without-cursor already recorded for it


class Network:
    """Streams and snapshot requests between tabs and replicas, and the load balancer."""

    def __init__(self, ctx: Context, db: Database, observer: Observer) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.rng = ctx.rng
        self.latency = ctx.latency
        self.db = db
        self.head = db.head
        self.observer = observer
        self.replicas: list[Replica] = []  #: set when the fleet is wired
        self.sessions: Sessions  #: set when the fleet is wired
        self.judge: Callable[[Client], None]  #: set when the fleet is wired

    # ------------------------------------------------------------ stream attempts

    def connect(self, conn: Conn) -> None:
        """Carry a stream attempt to the load balancer, and arm the HTTP client's timeout."""
        env = self.env
        ev = env.timeout(self.latency, conn)
        ev.callbacks.append(self.route)
        deadline = env.timeout(self.ctx.settings.connect_timeout, conn)
        deadline.callbacks.append(self.connect_deadline)

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
        subcfg = self.ctx.subcfg
        for replica in self.replicas:
            if (replica.up and (best is None or len(replica.sessions) < len(best.sessions))
                    and subm.view(subcfg, replica.sub, now).ready):
                best = replica
        return best

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

    # ------------------------------------------------------------ snapshots

    def snapshot(self, c: Client, token: int, head_first: bool) -> None:
        """Carry a snapshot request to the load balancer."""
        ev = self.env.timeout(self.latency, (c, token, head_first))
        ev.callbacks.append(self._route_snapshot)

    def _route_snapshot(self, ev: Any) -> None:
        c, token, head_first = ev.value
        replica = self._pick()
        latency = self.latency
        env = self.env

        def answer(ok: bool, head: int, covers: int, reason: str) -> None:
            back = env.timeout(latency)
            back.callbacks.append(lambda _e: c.rehydrated(token, ok, head, covers, reason))

        if replica is None:
            answer(False, 0, 0, "503 no healthy replica")
            return
        topic = c.topic
        rows = self.ctx.settings.snapshot_rows + 1
        gen = replica.gen
        heads = self.head

        def read() -> tuple[int, Any]:
            return rows, heads[topic]

        def done(ok: bool, n: int, at_start: Any, reason: str) -> None:
            if gen != replica.gen:
                answer(False, 0, 0, "replica restarted")
                return
            if not ok:
                answer(False, 0, 0, reason)
                return
            at_end = heads[topic]
            # head first: the head is read before the snapshot, which may cover more;
            # snapshot first: events committed between the two reads are skipped.
            if head_first:
                answer(True, at_start, at_end, "")
            else:
                answer(True, at_end, at_start, "")

        self.db.query(replica, "snapshot", read, done)

    # ------------------------------------------------------------ frames

    def send(self, conn: Conn, frames: list[tuple[Any, ...]]) -> None:
        """Put frames on the wire towards the client."""
        ev = self.env.timeout(self.latency, (conn, frames))
        ev.callbacks.append(self._arrive)

    @staticmethod
    def _arrive(ev: Any) -> None:
        conn, frames = ev.value
        conn.client.frames(conn, frames)

    # ------------------------------------------------------------ closing, silence, stalls

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
                interval = self.ctx.settings.heartbeat_interval
                k = math.floor((now - self.latency - session.anchor) / interval)
                if k >= 0:
                    arrived = session.anchor + k * interval + self.latency
                    if arrived > c.last_input_at:
                        c.feed(cm.HeartbeatReceived(now=arrived))
        conn.virtual = False
        session = conn.session
        if session is not None and not session.closed:
            self.sessions.resume_heartbeats(session)
        c.reschedule()

    def stall(self, conn: Conn, duration: float, incident: int) -> None:
        """A half-open stream: frames are held; with a duration, they flow again after it."""
        if conn.dead or conn.stalled:
            return
        now = self.env.now
        conn.stalled = True
        conn.detect = self.observer.detection(incident, "network.stall",
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
