"""The Postgres store: topics, events, publish, bounded replay, snapshot, retention.

Tables (in the schema named by ``SSELAB_DB_SCHEMA``; created idempotently at
start-up under an advisory lock, so replicas may start together):

* ``topics(topic, epoch, head, floor)`` -- one row per user. ``epoch`` comes from
  a sequence and is unique, so an epoch names exactly one topic; ``head`` is the
  highest committed seq; ``floor`` the highest seq no longer kept.
* ``events(topic, seq, type, data, created_at)`` -- keyed by ``(topic, seq)``.

With ``topic-sequence`` on, a publish takes the next seq with ``UPDATE topics SET
head = head + 1 ... RETURNING`` inside its own transaction: seqs are contiguous
per topic and commit in order. Off (the seed's code), seqs come from one shared
SEQUENCE before the row lock, so a topic's seqs have holes and two publishes can
commit out of order.

The store performs queries; it decides nothing about replays: the session machine
chose ``after``, ``upto`` and ``limit``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from model.core import EventId
from model.session import TopicHead

__all__ = ["REPLAY_APPLICATION", "OpenInfo", "ReplayResult", "Snapshot", "Store", "StoredEvent"]

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
"""


class Store:
    """Postgres access through two pools: general work, and replays (own name, timeout)."""

    def __init__(self, database_url: str, schema: str, *, replay_timeout_ms: int = 5000,
                 topic_sequence: bool = True, min_size: int = 1, max_size: int = 10) -> None:
        self.schema = schema
        self.replay_timeout_ms = replay_timeout_ms
        self.topic_sequence = topic_sequence
        self._s = sql.Identifier(schema)
        self.pool = AsyncConnectionPool(
            database_url, min_size=min_size, max_size=max_size, open=False,
            kwargs={"autocommit": True, "application_name": "sselab"})
        self.replay_pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=max_size, open=False,
            kwargs={"autocommit": True, "application_name": REPLAY_APPLICATION},
            check=AsyncConnectionPool.check_connection)

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    async def open(self) -> None:
        """Open the pools and create the schema if it is missing."""
        await self.pool.open(wait=True, timeout=10)
        await self.replay_pool.open(wait=True, timeout=10)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sselab-schema'))")
            await conn.execute(self._q(_SCHEMA))

    async def close(self) -> None:
        """Close both pools."""
        await self.replay_pool.close()
        await self.pool.close()

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
        payload = json.dumps(data, separators=(",", ":"))
        if self.topic_sequence:
            take = self._q("UPDATE {s}.topics SET head = head + 1 WHERE topic = %s "
                           "RETURNING epoch, head")
        else:
            # The seed's code: one shared sequence, drawn before the topic row is locked.
            take = self._q("WITH n AS (SELECT nextval('{s}.shared_seq') AS seq) "
                           "UPDATE {s}.topics SET head = GREATEST(head, n.seq) FROM n "
                           "WHERE topic = %s RETURNING epoch, n.seq")
        async with self.pool.connection() as conn:
            async with conn.transaction():
                row = await (await conn.execute(take, (topic,))).fetchone()
                if row is None:  # the topic's first event: create its row, then take again
                    await self._ensure_topic(conn, topic)
                    row = await (await conn.execute(take, (topic,))).fetchone()
                assert row is not None
                epoch, seq = int(row[0]), int(row[1])
                cur = await conn.execute(self._q(
                    "INSERT INTO {s}.events (topic, seq, type, data) VALUES (%s, %s, %s, %s) "
                    "RETURNING extract(epoch FROM created_at)::float8"),
                    (topic, seq, type_, payload))
                row = await cur.fetchone()
                assert row is not None
                created = float(row[0])
        return EventId(epoch, seq), created

    async def open_info(self, topic: str, cursor_epoch: int | None) -> OpenInfo:
        """The topic row (created if missing) and the owner of ``cursor_epoch``, if any."""
        async with self.pool.connection() as conn:
            await self._ensure_topic(conn, topic)
            cur = await conn.execute(self._q(
                "SELECT epoch, head, floor, "
                "(SELECT topic FROM {s}.topics WHERE epoch = %s) "
                "FROM {s}.topics WHERE topic = %s"), (cursor_epoch, topic))
            row = await cur.fetchone()
        assert row is not None
        return OpenInfo(TopicHead(epoch=int(row[0]), head=int(row[1]), floor=int(row[2])), row[3])

    async def topic_head(self, topic: str) -> TopicHead:
        """The topic row as it is now (created if missing)."""
        return (await self.open_info(topic, None)).topic

    async def replay(self, topic: str, after: int, upto: int | None, limit: int | None
                     ) -> ReplayResult:
        """Run ``QueryReplay``: rows ``after < seq [<= upto]`` in order, at most ``limit``.

        The floor is read in the same REPEATABLE READ transaction, so it describes
        exactly the rows returned.
        """
        query = "SELECT seq, type, data::text, extract(epoch FROM created_at)::float8 " \
                "FROM {s}.events WHERE topic = %s AND seq > %s"
        params: list[Any] = [topic, after]
        if upto is not None:
            query += " AND seq <= %s"
            params.append(upto)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        async with self.replay_pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(self.replay_timeout_ms)))
            cur = await conn.execute(self._q(query), params)
            rows = tuple(StoredEvent(int(r[0]), r[1], r[2], float(r[3]))
                         for r in await cur.fetchall())
            cur = await conn.execute(self._q("SELECT floor FROM {s}.topics WHERE topic = %s"),
                                     (topic,))
            floor_row = await cur.fetchone()
        return ReplayResult(rows, int(floor_row[0]) if floor_row else 0)

    async def snapshot(self, topic: str, limit: int, *, head_first: bool = True) -> Snapshot:
        """The head and the ``limit`` latest events, read in the order the client asked.

        Deliberately two statements, not one transaction: ``head_first=False`` is
        the seed's order (snapshot, then head), kept so the bug can be shown.
        """
        async with self.pool.connection() as conn:
            await self._ensure_topic(conn, topic)
            head_q = self._q("SELECT epoch, head FROM {s}.topics WHERE topic = %s")
            rows_q = self._q(
                "SELECT seq, type, data::text, extract(epoch FROM created_at)::float8 "
                "FROM {s}.events WHERE topic = %s ORDER BY seq DESC LIMIT %s")
            if head_first:
                head_row = await (await conn.execute(head_q, (topic,))).fetchone()
                rows = await (await conn.execute(rows_q, (topic, limit))).fetchall()
            else:
                rows = await (await conn.execute(rows_q, (topic, limit))).fetchall()
                head_row = await (await conn.execute(head_q, (topic,))).fetchone()
        assert head_row is not None
        events = tuple(StoredEvent(int(r[0]), r[1], r[2], float(r[3])) for r in reversed(rows))
        return Snapshot(EventId(int(head_row[0]), int(head_row[1])), events)

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
