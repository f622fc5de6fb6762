"""The publish lane's held Postgres connections on a real database.

``Store.publish_lane`` keeps connections that just finished a publish out of the
pool, for the next one. These tests hold it to what the pool's own checkout gave:
back-to-back publishes skip the pool; a connection idle past ``recent_s`` goes back
and is checked before reuse; a backend terminated under a held connection fails
one publish (the 503 the endpoint answers) and the next publish succeeds on a fresh
connection; a failed statement's connection is not kept; a burst holds at most the
cap and every publish commits.
"""

from __future__ import annotations

import asyncio
import secrets

import psycopg
import pytest

from service.store import Store, Unavailable

from .conftest import DATABASE_URL, drop_schema

pytestmark = pytest.mark.integration


def _run(body: object) -> None:
    schema = f"sselab_lane_{secrets.token_hex(3)}"

    async def main() -> None:
        store = Store(DATABASE_URL, schema, max_size=5, acquire_timeout=2.0)
        await store.open()
        try:
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        drop_schema(schema)


def _requests(store: Store) -> int:
    return int(store.publish_pool.get_stats().get("requests_num", 0))


def test_back_to_back_publishes_skip_the_pool_and_a_stale_one_is_checked() -> None:
    async def body(store: Store) -> None:
        await store.publish("u-lane", "note", {"n": 0})
        recent = store._recent["publish"]
        before, checks = _requests(store), recent.checks
        for n in range(20):
            await store.publish("u-lane", "note", {"n": n + 1})
        assert _requests(store) == before  # twenty publishes, no checkout
        store.publish_lane.recent_s = 0.05  # the pool would skip its check (back just now)
        await asyncio.sleep(0.1)
        await store.publish("u-lane", "note", {"n": 21})  # held too long: through the pool
        assert _requests(store) == before + 1
        assert recent.checks == checks + 1  # a round trip before its reuse

    _run(body)


def test_a_terminated_backend_fails_one_publish_and_the_next_lands() -> None:
    async def body(store: Store) -> None:
        await store.publish("u-lane", "note", {"n": 1})
        (held,) = [c for c, _ in store.publish_lane._idle]
        pid = held.info.backend_pid
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with pytest.raises((psycopg.OperationalError, Unavailable)):
            await store.publish("u-lane", "note", {"n": 2})
        assert held not in store.publish_lane._held and not store.publish_lane._idle
        event_id, _ = await store.publish("u-lane", "note", {"n": 3})
        assert event_id.seq == 2  # the failed publish committed nothing
        (fresh,) = [c for c, _ in store.publish_lane._idle]
        assert fresh.info.backend_pid != pid

    _run(body)


def test_a_failed_statement_gives_its_connection_back() -> None:
    async def body(store: Store) -> None:
        await store.publish("u-lane", "note", {"n": 1})
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            await store.publish("u-lane", "note", {"bad": "\u0000"})  # jsonb refuses NUL
        assert not store.publish_lane._idle and not store.publish_lane._held
        event_id, _ = await store.publish("u-lane", "note", {"n": 2})
        assert event_id.seq == 2

    _run(body)


def test_a_burst_holds_at_most_the_cap_and_every_publish_commits() -> None:
    async def body(store: Store) -> None:
        await store.publish("u-lane", "note", {"n": 0})
        ids = await asyncio.gather(*(store.publish("u-lane", "note", {"n": n})
                                     for n in range(60)))
        assert sorted(e.seq for e, _ in ids) == list(range(2, 62))
        lane = store.publish_lane
        assert len(lane._held) <= lane.cap == 4 and len(lane._idle) <= lane.cap
        stats = store.stats()["publish"]
        assert stats["pool_max"] == 5 and stats["lane_held"] == len(lane._held) >= 1

    _run(body)
