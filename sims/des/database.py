"""Postgres: the topics' event logs, a connection pool per replica, and error windows.

What it owns. Per topic, the head (the last committed seq) and the floor
(retention keeps ``head - floor`` rows). Publishers commit on their own
connections (:meth:`Database.commit`: commits never queue in the replicas' pools
and always succeed). Reads -- the topic row, replays, snapshots, resync heads --
run as a :class:`Query` on the reading replica's pool: they wait for a
connection, take ``QUERY_BASE_S + QUERY_ROW_S * rows``, and fail by the active
``postgres.errors`` windows, by ``postgres.replay_fails`` and
``postgres.snapshot_fails``, or by
``QUERY_TIMEOUT_S`` (in the queue or while running).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from model import session as sm
from sims.des.context import Context
from sims.des.observer import Observer

if TYPE_CHECKING:
    from sims.des.replica import Replica, Session, Sessions

__all__ = ["Database", "Query"]


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

    __slots__ = ("env", "errors", "fail_incident", "floor", "head", "observer", "rec",
                 "replay_fails", "retention_rows", "rng", "sessions", "settings", "snapshot_fails")

    def __init__(self, ctx: Context, observer: Observer) -> None:
        self.env = ctx.env
        self.rng = ctx.rng
        self.settings = ctx.settings
        self.rec = ctx.rec
        self.observer = observer
        self.sessions: Sessions  #: set when the fleet is wired
        topics = ctx.settings.topic_count
        self.head = [0] * topics  #: per topic, the last committed seq
        self.floor = [0] * topics  #: per topic, the last seq retention removed
        self.retention_rows = ctx.settings.retention_rows
        self.errors: list[tuple[float, float, int]] = []  #: (end, rate, incident)
        self.replay_fails: list[int] = []  #: incidents, one per replay that must fail
        self.snapshot_fails: list[int] = []  #: incidents, one per snapshot load that must fail
        self.fail_incident: int | None = None  #: the incident behind the last error

    def commit(self, topic: int) -> int:
        """Commit one event to ``topic`` (a publisher's own connection); return its seq."""
        seq = self.head[topic] + 1
        self.head[topic] = seq
        if seq - self.floor[topic] > self.retention_rows:
            self.floor[topic] = seq - self.retention_rows
        return seq

    def prune(self, keep: int) -> None:
        """Retention removes every event but the last ``keep`` of each topic."""
        floor = self.floor
        for t, head in enumerate(self.head):
            if head - keep > floor[t]:
                floor[t] = head - keep

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
        if kind == "snapshot" and self.snapshot_fails:
            self.fail_incident = self.snapshot_fails.pop(0)
            return "snapshot load failed (postgres.snapshot_fails)"
        if self.errors:
            now = self.env.now
            self.errors = [w for w in self.errors if w[0] > now]
            for _end, rate, incident in self.errors:
                if self.rng.random() < rate:
                    self.fail_incident = incident
                    return "query failed (postgres.errors)"
        return ""

    def replay(self, session: Session, q: sm.QueryReplay) -> None:
        """Carry out a session's QueryReplay."""
        topic = session.topic
        after, upto, limit = q.after, q.upto, q.limit
        heads, floors = self.head, self.floor
        env = self.env

        def rows() -> tuple[int, Any]:
            head = heads[topic]
            floor = floors[topic]
            lo = after if after > floor else floor
            hi = head if upto is None or upto > head else upto
            n = hi - lo if hi > lo else 0
            if limit is not None and n > limit:
                n = limit
            return n, (lo, n, floor)

        def done(ok: bool, n: int, payload: Any, reason: str) -> None:
            if session.closed:
                return
            now = env.now
            if ok:
                lo, n, floor = payload
                self.sessions.feed(session, sm.ReplayRows(now=now, seqs=tuple(range(lo + 1, lo + n + 1)),
                                                          floor=floor))
            else:
                if self.fail_incident is not None:
                    self.observer.replay_failed(session.client.idx, self.fail_incident, now)
                self.sessions.feed(session, sm.ReplayError(now=now, reason=reason))

        self.query(session.replica, "replay", rows, done)
