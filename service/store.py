"""The Postgres store: topics, events, publish, bounded replay, snapshot, retention.

Tables (in the schema named by ``SSELAB_DB_SCHEMA``; created idempotently at
start-up under an advisory lock, so replicas may start together):

* ``topics(topic, epoch, head, floor)`` -- one row per user. ``epoch`` comes from
  a sequence and is unique, so an epoch names exactly one topic; ``head`` is the
  highest committed seq; ``floor`` the highest seq no longer kept.
* ``events(topic, seq, type, data, created_at)`` -- keyed by ``(topic, seq)``.

With ``topic-sequence`` on, a publish takes the next seq with ``UPDATE topics SET
head = head + 1 ... RETURNING`` inside its own transaction (one statement that
also inserts the row, or, with an idempotency key, a transaction that claims the
key too): seqs are contiguous per topic and commit in order. Off (the seed's code), seqs come from one shared
SEQUENCE before the row lock, so a topic's seqs have holes and two publishes can
commit out of order.

* ``idempotency(owner, key, request, topic, epoch, seq, created_at)`` -- a publish's
  ``Idempotency-Key``, written in the publish's own transaction, so a retried
  publish after an ambiguous error answers the first one's id instead of a copy.

Three pools, so a reconnect storm cannot starve publishes: ``publish_pool``,
``pool`` (stream opens, head reads, snapshots, maintenance) and ``replay_pool``
(its own ``application_name`` and ``statement_timeout``). Each checks a connection
before handing it out, waits at most ``acquire_timeout`` seconds and queues at
most ``max_waiting`` callers; past that it raises :class:`Unavailable`, which the
endpoints answer with 503 and ``Retry-After``.

Bytes are bounded too: a replay that would read more than ``replay_max_bytes``
raises :class:`ReplayTooLarge` (the session says ``replay-failed`` and the client
re-hydrates from the paginated snapshot), and a snapshot page stops at its byte cap.

The store performs queries; it decides nothing about replays: the session machine
chose ``after``, ``upto`` and ``limit``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from model.core import EventId
from model.session import TopicHead

__all__ = ["REPLAY_APPLICATION", "IdempotencyConflict", "OpenInfo", "RecentCheck", "ReplayResult",
           "ReplayTooLarge", "Snapshot", "Store", "StoredEvent", "Unavailable"]

#: ``application_name`` of replay connections (operators and tests find them by it).
REPLAY_APPLICATION = "sselab-replay"


class StoredEvent(NamedTuple):
    """One event row; ``data`` is its JSON text."""

    seq: int
    type: str
    data: str
    created_at: float


class ReplayResult(NamedTuple):
    """Rows of a replay query and the retention floor read in the same transaction."""

    rows: tuple[StoredEvent, ...]
    floor: int


class OpenInfo(NamedTuple):
    """What a stream needs at open: its topic row, and who owns the cursor's epoch."""

    topic: TopicHead
    cursor_owner: str | None


class Snapshot(NamedTuple):
    """A user's head cursor and most recent events (oldest first)."""

    head: EventId
    events: tuple[StoredEvent, ...]
    more: bool = False  #: older events exist before ``events[0]`` (ask with ``before``)


class Unavailable(Exception):
    """No connection within the acquire timeout, or too many callers already waiting."""

    client_reason = "database busy"


class ReplayTooLarge(Exception):
    """A replay would read more than the byte cap."""

    client_reason = "replay over the byte limit; re-hydrate from the snapshot"


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` was used before for a different request."""


_POOL_ERRORS = (PoolTimeout, TooManyRequests)


_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE SEQUENCE IF NOT EXISTS {s}.epochs;
CREATE SEQUENCE IF NOT EXISTS {s}.shared_seq;
CREATE TABLE IF NOT EXISTS {s}.topics (
    topic text PRIMARY KEY,
    epoch bigint NOT NULL UNIQUE,
    head bigint NOT NULL DEFAULT 0,
    floor bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {s}.events (
    topic text NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (topic, seq)
);
CREATE INDEX IF NOT EXISTS events_created_at ON {s}.events (created_at);
CREATE TABLE IF NOT EXISTS {s}.idempotency (
    owner text NOT NULL,
    key text NOT NULL,
    request text NOT NULL,
    topic text,
    epoch bigint,
    seq bigint,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (owner, key)
);
"""


class RecentCheck:
    """A pool's connection check that skips connections back from work within ``recent_s``.

    psycopg-pool's ``check_connection`` costs a round trip on every checkout, which
    is a third of a publish's database time. A connection that finished a command
    under a second ago and came back to the pool in a good state is used as it is;
    an older one is checked. Safe: if such a connection did break meanwhile (a
    terminated backend, a restart), its first statement fails before anything
    commits, and the caller answers 503 with ``Retry-After`` (a publish is retried
    with its Idempotency-Key); the pool drops the broken connection.
    """

    def __init__(self, recent_s: float = 1.0) -> None:
        self.recent_s = recent_s
        self.checks = 0  #: round trips spent on checks
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._stale: weakref.WeakSet[Any] = weakref.WeakSet()

    async def check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Check ``conn`` unless it came back from work within ``recent_s``."""
        returned = self._returned.pop(conn, None)
        if returned is not None and time.monotonic() - returned < self.recent_s:
            return
        self.checks += 1
        await AsyncConnectionPool.check_connection(conn)

    async def returned(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's ``reset`` hook: ``conn`` came back in a good state, now."""
        if conn in self._stale:
            self._stale.discard(conn)  # back, but its last statement was long ago
            self._returned.pop(conn, None)
            return
        self._returned[conn] = time.monotonic()

    def stale(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Check ``conn`` at its next checkout: call before giving back one idle too long."""
        self._stale.add(conn)


class HeldConnections:
    """Connections held out of a pool for back-to-back statements, at most ``cap``.

    A checkout from psycopg-pool (its lock, the check hook, the reset hook, stats)
    cost a third as much as a publish's statement. A connection that just finished
    a statement in a good state stays here instead, for the next one. One idle here
    longer than ``recent_s`` goes back to the pool, whose check runs before its next
    use, exactly as :class:`RecentCheck` would have; any error, or a connection not
    idle after its statement, goes back to the pool too, which drops a broken one.
    Only idle connections are held: a caller that finds none waits in the pool as
    before, with its timeout and its bounded queue.
    """

    def __init__(self, pool: AsyncConnectionPool, recent: RecentCheck, *, cap: int = 4) -> None:
        self._pool, self._recent, self.cap = pool, recent, cap
        self.recent_s = recent.recent_s
        self._idle: collections.deque[tuple[psycopg.AsyncConnection[Any], float]] = \
            collections.deque()
        self._held: set[psycopg.AsyncConnection[Any]] = set()  #: idle or in use
        self.closing = False

    async def get(self) -> psycopg.AsyncConnection[Any]:
        """A held connection used within ``recent_s``, else one from the pool."""
        if self._idle:
            conn, since = self._idle.pop()  # the freshest
            if time.monotonic() - since < self.recent_s:
                return conn
            await self._give_back(conn, stale=True)
        conn = await self._pool.getconn()
        if len(self._held) < self.cap:
            self._held.add(conn)
        return conn

    async def put(self, conn: psycopg.AsyncConnection[Any], *, ok: bool) -> None:
        """Take ``conn`` back after a statement (``ok``: it succeeded)."""
        now = time.monotonic()
        if (ok and conn in self._held and not self.closing and not conn.closed
                and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
            self._idle.append((conn, now))
            while self._idle and now - self._idle[0][1] >= self.recent_s:
                await self._give_back(self._idle.popleft()[0], stale=True)
            return
        await self._give_back(conn)

    async def _give_back(self, conn: psycopg.AsyncConnection[Any], *, stale: bool = False) -> None:
        self._held.discard(conn)
        if stale:  # idle here too long: the pool checks it before its next use
            self._recent.stale(conn)
        await self._pool.putconn(conn)  # the reset hook runs later, in the pool's worker

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """:meth:`get` and :meth:`put` around a block (pool errors become :class:`Unavailable`)."""
        try:
            conn = await self.get()
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        ok = False
        try:
            yield conn
            ok = True
        finally:
            await self.put(conn, ok=ok)

    def stats(self) -> dict[str, int]:
        """How many connections the lane holds (``lane_held``), and of those are idle."""
        return {"lane_held": len(self._held), "lane_idle": len(self._idle)}

    async def close(self) -> None:
        """Give every idle connection back (the pool is about to close)."""
        self.closing = True
        while self._idle:
            await self._give_back(self._idle.pop()[0])


class Store:
    """Postgres access through two pools: general work, and replays (own name, timeout)."""

    def __init__(self, database_url: str, schema: str, *, replay_timeout_ms: int = 5000,
                 topic_sequence: bool = True, min_size: int = 1, max_size: int = 10,
                 acquire_timeout: float = 2.0, max_waiting: int = 1000,
                 replay_max_bytes: int = 2 * 1024 * 1024) -> None:
        self.schema = schema
        self.replay_timeout_ms = replay_timeout_ms
        self.topic_sequence = topic_sequence
        self.replay_max_bytes = replay_max_bytes
        self._s = sql.Identifier(schema)
        self._queries: dict[str, bytes] = {}

        self._recent: dict[str, RecentCheck] = {}

        def pool(name: str, application: str) -> AsyncConnectionPool:
            recent = self._recent[name] = RecentCheck()
            return AsyncConnectionPool(
                database_url, min_size=min_size, max_size=max_size, open=False, name=name,
                timeout=acquire_timeout, max_waiting=max_waiting,
                check=recent.check, reset=recent.returned,
                kwargs={"autocommit": True, "application_name": application,
                        "connect_timeout": max(2, int(acquire_timeout) + 1)})

        self.pool = pool("streams", "sselab")
        self.publish_pool = pool("publish", "sselab-publish")
        self.replay_pool = pool("replay", REPLAY_APPLICATION)
        self.publish_lane = HeldConnections(self.publish_pool, self._recent["publish"],
                                            cap=max(1, min(4, max_size - 1)))

    def _pools(self) -> tuple[AsyncConnectionPool, ...]:
        return (self.pool, self.publish_pool, self.replay_pool)

    def stats(self) -> dict[str, dict[str, int]]:
        """Each pool's psycopg-pool statistics (size, waiting, ...); the publish lane's too."""
        out = {p.name: p.get_stats() for p in self._pools()}
        # The lane's connections count as in use in the pool's own figures.
        out["publish"].update(self.publish_lane.stats())
        return out

    def _q(self, text: str) -> bytes:
        """``text`` with ``{s}`` as the quoted schema, rendered once per text (it is fixed)."""
        query = self._queries.get(text)
        if query is None:
            query = self._queries[text] = sql.SQL(text).format(s=self._s).as_bytes(None)
        return query

    async def open(self) -> None:
        """Open the pools and create the schema if it is missing."""
        for p in self._pools():
            await p.open(wait=True, timeout=10)
        async with self.pool.connection(timeout=10) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sselab-schema'))")
            await conn.execute(self._q(_SCHEMA))

    async def close(self) -> None:
        """Close the pools."""
        await self.publish_lane.close()
        for p in self._pools():
            await p.close()

    async def ping(self) -> None:
        """One ``SELECT 1`` on the streams pool (readiness); raises when it cannot."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute("SELECT 1")
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None

    async def drop_schema(self) -> None:
        """Drop the whole schema (tests and benchmarks clean up with it)."""
        async with self.pool.connection() as conn:
            await conn.execute(self._q("DROP SCHEMA IF EXISTS {s} CASCADE"))

    async def _ensure_topic(self, conn: psycopg.AsyncConnection[Any], topic: str) -> None:
        await conn.execute(self._q(
            "INSERT INTO {s}.topics (topic, epoch) SELECT %s, nextval('{s}.epochs') "
            "WHERE NOT EXISTS (SELECT 1 FROM {s}.topics WHERE topic = %s) "
            "ON CONFLICT (topic) DO NOTHING"), (topic, topic))

    async def publish(self, topic: str, type_: str, data: Any) -> tuple[EventId, float]:
        """Commit one event; return its id and commit time (Unix seconds)."""
        event_id, created, _ = await self.publish_once(topic, type_, data)
        return event_id, created

    async def publish_once(self, topic: str, type_: str, data: Any, *,
                           idempotency: tuple[str, str, str] | None = None,
                           text: str | None = None) -> tuple[EventId, float, bool]:
        """Commit one event; with ``(owner, key, request)`` at most once per key.

        Returns the id, the commit time and whether it was an earlier publish's
        answer (the key was seen before, for the same request). ``text``: ``data``
        already serialised as compact JSON, by a caller that needed it too.
        """
        payload = json.dumps(data, separators=(",", ":")) if text is None else text
        if self.topic_sequence:
            take = ("UPDATE {s}.topics SET head = head + 1 WHERE topic = %s "
                    "RETURNING epoch, head AS seq")
        else:
            # The seed's code: one shared sequence, drawn before the topic row is locked.
            take = ("WITH n AS (SELECT nextval('{s}.shared_seq') AS seq) "
                    "UPDATE {s}.topics SET head = GREATEST(head, n.seq) FROM n "
                    "WHERE topic = %s RETURNING epoch, n.seq")
        if idempotency is None:
            # One statement is one transaction (the pools are autocommit): the id is taken
            # and the row written atomically, in one round trip instead of four (BEGIN,
            # UPDATE, INSERT, COMMIT). No row back: the topic's first event.
            one = self._q(f"WITH t AS ({take}) INSERT INTO {{s}}.events (topic, seq, type, data) "
                          "SELECT %s, t.seq, %s, %s::jsonb FROM t "
                          "RETURNING (SELECT epoch FROM t), seq, "
                          "extract(epoch FROM created_at)::float8")
            async with self.publish_lane.connection() as conn:
                row = await (await conn.execute(one, (topic, topic, type_, payload))).fetchone()
                if row is None:  # create the topic's row, then take again
                    await self._ensure_topic(conn, topic)
                    row = await (await conn.execute(one, (topic, topic, type_, payload))
                                 ).fetchone()
            assert row is not None
            return EventId(int(row[0]), int(row[1])), float(row[2]), False
        take_q = self._q(take)
        # Pool errors come out of the lane as Unavailable.
        async with self.publish_lane.connection() as conn:
            async with conn.transaction():
                if idempotency is not None:
                    earlier = await self._claim_key(conn, *idempotency)
                    if earlier is not None:
                        return earlier[0], earlier[1], True
                row = await (await conn.execute(take_q, (topic,))).fetchone()
                if row is None:  # the topic's first event: create its row, then take again
                    await self._ensure_topic(conn, topic)
                    row = await (await conn.execute(take_q, (topic,))).fetchone()
                assert row is not None
                epoch, seq = int(row[0]), int(row[1])
                cur = await conn.execute(self._q(
                    "INSERT INTO {s}.events (topic, seq, type, data) VALUES (%s, %s, %s, %s) "
                    "RETURNING extract(epoch FROM created_at)::float8"),
                    (topic, seq, type_, payload))
                row = await cur.fetchone()
                assert row is not None
                created = float(row[0])
                if idempotency is not None:
                    await conn.execute(self._q(
                        "UPDATE {s}.idempotency SET topic = %s, epoch = %s, seq = %s "
                        "WHERE owner = %s AND key = %s"),
                        (topic, epoch, seq, idempotency[0], idempotency[1]))
        return EventId(epoch, seq), created, False

    async def _claim_key(self, conn: psycopg.AsyncConnection[Any], owner: str, key: str,
                         request: str) -> tuple[EventId, float] | None:
        """Claim an idempotency key in this transaction; an earlier answer if it was used."""
        cur = await conn.execute(self._q(
            "INSERT INTO {s}.idempotency (owner, key, request) VALUES (%s, %s, %s) "
            "ON CONFLICT (owner, key) DO NOTHING RETURNING 1"), (owner, key, request))
        if await cur.fetchone() is not None:
            return None
        # The key's first transaction has committed (the insert waited for it).
        cur = await conn.execute(self._q(
            "SELECT i.request, i.epoch, i.seq, extract(epoch FROM e.created_at)::float8 "
            "FROM {s}.idempotency i LEFT JOIN {s}.events e ON e.topic = i.topic AND e.seq = i.seq "
            "WHERE i.owner = %s AND i.key = %s"), (owner, key))
        row = await cur.fetchone()
        if row is None or row[0] != request or row[1] is None:
            raise IdempotencyConflict(key)
        return EventId(int(row[1]), int(row[2])), float(row[3] or 0.0)

    async def open_info(self, topic: str, cursor_epoch: int | None) -> OpenInfo:
        """The topic row (created if missing) and the owner of ``cursor_epoch``, if any."""
        try:
            async with self.pool.connection() as conn:
                await self._ensure_topic(conn, topic)
                cur = await conn.execute(self._q(
                    "SELECT epoch, head, floor, "
                    "(SELECT topic FROM {s}.topics WHERE epoch = %s) "
                    "FROM {s}.topics WHERE topic = %s"), (cursor_epoch, topic))
                row = await cur.fetchone()
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        assert row is not None
        return OpenInfo(TopicHead(epoch=int(row[0]), head=int(row[1]), floor=int(row[2])), row[3])

    async def topic_head(self, topic: str) -> TopicHead:
        """The topic row as it is now (created if missing)."""
        return (await self.open_info(topic, None)).topic

    async def topic_heads(self, topics: list[str]) -> dict[str, TopicHead]:
        """The rows of many topics in one query (a resync reads each topic's head once)."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(self._q(
                    "SELECT topic, epoch, head, floor FROM {s}.topics WHERE topic = ANY(%s)"),
                    (topics,))
                rows = await cur.fetchall()
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        return {r[0]: TopicHead(epoch=int(r[1]), head=int(r[2]), floor=int(r[3])) for r in rows}

    async def replay(self, topic: str, after: int, upto: int | None, limit: int | None
                     ) -> ReplayResult:
        """Run ``QueryReplay``: rows ``after < seq [<= upto]`` in order, at most ``limit``.

        The floor is read in the same REPEATABLE READ transaction, so it describes
        exactly the rows returned.
        """
        inner = "SELECT seq, type, data::text AS body, " \
                "extract(epoch FROM created_at)::float8 AS created, " \
                "sum(octet_length(data::text)) OVER (ORDER BY seq) AS running " \
                "FROM {s}.events WHERE topic = %s AND seq > %s"
        params: list[Any] = [topic, after]
        if upto is not None:
            inner += " AND seq <= %s"
            params.append(upto)
        inner += " ORDER BY seq"
        if limit is not None:
            inner += " LIMIT %s"
            params.append(limit)
        # Only the rows that start within the byte cap leave the server; the first row
        # past it tells us the replay is too large.
        query = "SELECT seq, type, body, created, running FROM (" + inner + ") r " \
                "WHERE running - octet_length(body) <= %s ORDER BY seq"
        params.append(self.replay_max_bytes)
        try:
            async with self.replay_pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(self.replay_timeout_ms)))
                cur = await conn.execute(self._q(query), params)
                fetched = await cur.fetchall()
                cur = await conn.execute(self._q("SELECT floor FROM {s}.topics WHERE topic = %s"),
                                         (topic,))
                floor_row = await cur.fetchone()
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        if fetched and int(fetched[-1][4]) > self.replay_max_bytes:
            raise ReplayTooLarge(f"over {self.replay_max_bytes} bytes")
        rows = tuple(StoredEvent(int(r[0]), r[1], r[2], float(r[3])) for r in fetched)
        return ReplayResult(rows, int(floor_row[0]) if floor_row else 0)

    async def snapshot(self, topic: str, limit: int, *, head_first: bool = True,
                       before: int | None = None, max_bytes: int = 1 << 30) -> Snapshot:
        """The head and the ``limit`` latest events (below seq ``before``), within ``max_bytes``.

        A page holds at least one event; ``more`` says older events remain (ask again
        with ``before`` = the first event's seq). Deliberately two statements, not one
        transaction: ``head_first=False`` is the seed's order (snapshot, then head),
        kept so the bug can be shown.
        """
        head_q = self._q("SELECT epoch, head FROM {s}.topics WHERE topic = %s")
        rows_q = self._q(
            "SELECT seq, type, body, created, running FROM ("
            "SELECT seq, type, data::text AS body, extract(epoch FROM created_at)::float8 "
            "AS created, sum(octet_length(data::text)) OVER (ORDER BY seq DESC) AS running "
            "FROM {s}.events WHERE topic = %s AND seq < %s ORDER BY seq DESC LIMIT %s) r "
            "WHERE running - octet_length(body) <= %s ORDER BY seq DESC")
        params = (topic, before if before is not None else 2**62, limit + 1, max_bytes)
        try:
            async with self.pool.connection() as conn:
                await self._ensure_topic(conn, topic)
                if head_first:
                    head_row = await (await conn.execute(head_q, (topic,))).fetchone()
                    rows = await (await conn.execute(rows_q, params)).fetchall()
                else:
                    rows = await (await conn.execute(rows_q, params)).fetchall()
                    head_row = await (await conn.execute(head_q, (topic,))).fetchone()
        except _POOL_ERRORS as exc:
            raise Unavailable(str(exc)) from None
        assert head_row is not None
        kept = [r for i, r in enumerate(rows[:limit]) if i == 0 or int(r[4]) <= max_bytes]
        more = len(kept) < len(rows)
        events = tuple(StoredEvent(int(r[0]), r[1], r[2], float(r[3])) for r in reversed(kept))
        return Snapshot(EventId(int(head_row[0]), int(head_row[1])), events, more)

    async def prune(self, *, older_than_s: float | None = None, topic: str | None = None,
                    upto_seq: int | None = None) -> int:
        """Retention: delete old rows (by age, or a topic's rows up to a seq) and raise floors."""
        if older_than_s is None and (topic is None or upto_seq is None):
            raise ValueError("prune needs older_than_s, or topic and upto_seq")
        params: list[Any]
        if older_than_s is not None:
            where, params = "created_at < now() - make_interval(secs => %s)", [older_than_s]
        else:
            where, params = "topic = %s AND seq <= %s", [topic, upto_seq]
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._q(
                "WITH gone AS (DELETE FROM {s}.events WHERE " + where + " RETURNING topic, seq), "
                "tops AS (SELECT topic, max(seq) AS top, count(*) AS n FROM gone GROUP BY topic), "
                "upd AS (UPDATE {s}.topics t SET floor = GREATEST(t.floor, tops.top) FROM tops "
                "WHERE t.topic = tops.topic RETURNING tops.n) "
                "SELECT coalesce(sum(n), 0) FROM upd"), params)
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def prune_idempotency(self, older_than_s: float) -> int:
        """Forget idempotency keys older than ``older_than_s`` seconds."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self._q(
                "DELETE FROM {s}.idempotency WHERE created_at < now() - "
                "make_interval(secs => %s)"), (older_than_s,))
            return cur.rowcount
