"""Model and production agree: a real fault run's trace validates, an edited one does not,
and the checker's counterexamples break (fix off) or hold (fix on) on the live stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from integration.test_seed_fixes import make_client

from model.fixes import FIXES
from model.world import Kind
from service import trace
from service.store import Store
from service.testing.stack import (
    DATABASE_URL,
    Server,
    drop_schema,
    kill_redis_clients,
    new_namespace,
    publish,
    wait_for,
)
from sims.conform.search import conform, world_config
from sims.conform.stack import UNMAPPED, run_on_stack
from sims.conform.traces import read_traces

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _record_subscriber_kill(server_factory: Callable[..., Server], user: str, path: Path) -> None:
    server = server_factory(SSELAB_TRACE=str(path), SSELAB_REDIS_RETRY_S="1.0")
    env = trace.for_path(path)
    assert env is not None

    async def main() -> None:
        client, rec = make_client(server.url, user)
        client.name, client._trace = "c0", env
        client.start()
        assert await client.wait_until(lambda c: c.live, 10)
        env.env("publish")
        publish(server, user, 1)
        assert await wait_for(lambda: len(rec.events) == 1, 5)
        env.env("redis.disconnect")
        assert kill_redis_clients(server.subscriber_name, pubsub_only=True) == 1
        for _ in range(2):
            env.env("publish")
            publish(server, user, 1)
        assert await wait_for(lambda: len(rec.events) == 3, 10), rec.ids()
        await client.aclose()

    asyncio.run(main())
    server.kill()


def test_real_trace_validates_and_a_dropped_event_is_found(
        server_factory: Callable[..., Server], user: str, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    _record_subscriber_kill(server_factory, user, path)
    tr = read_traces([str(path)])
    result = conform(tr, world_config(tr))
    assert result.ok, result.failure
    kinds = {s.kind for s in result.path}
    assert {Kind.REDIS_DISCONNECT, Kind.RECONNECT, Kind.REPLAY} <= kinds

    rows = path.read_text().splitlines()
    second = next(n for n, row in enumerate(rows)
                  if json.loads(row).get("input", {}).get("type") == "EventReceived"
                  and json.loads(row)["input"]["event_id"].endswith("-2"))
    third = next(n for n, row in enumerate(rows)
                 if json.loads(row).get("input", {}).get("type") == "EventReceived"
                 and json.loads(row)["input"]["event_id"].endswith("-3"))
    edited = tmp_path / "dropped.jsonl"
    edited.write_text("\n".join(rows[:second] + rows[second + 1:]) + "\n")
    tr2 = read_traces([str(edited)])
    bad = conform(tr2, world_config(tr2))
    assert not bad.ok and bad.failure is not None and bad.failure.line is not None
    assert bad.failure.line.lineno == third  # 1-based in the edited file: the old third row
    assert bad.failure.instance == "client c0"
    assert "('EventReceived', 2)" in bad.failure.allowed


#: The fixes whose bug the world shows (``model.fixes.FIXES``), less those the real stack
#: cannot take (``UNMAPPED``, each with its reason).
MAPPED = [info.name for info in FIXES if info.worlds and info.name not in UNMAPPED]


@pytest.mark.parametrize("fix", MAPPED)
def test_checker_counterexample_breaks_on_the_real_stack_only_without_the_fix(fix: str) -> None:
    """The trace comes from ``sims.check.check`` (never hand-copied): off breaks, on holds."""
    off = run_on_stack(fix, on=False)
    assert not off.holds, off
    on = run_on_stack(fix, on=True)
    assert on.holds, on


def test_topic_sequence_counterexample_cannot_happen_with_the_store_sql() -> None:
    """Why ``topic-sequence`` stays unmapped: the checker (``--publishers 2``) needs publisher 1
    to commit id 2 while publisher 0 holds id 1 uncommitted. With the store's own seed SQL (one
    shared sequence) each publish updates the topic row in the statement that draws the id, so a
    second transaction (a second psycopg connection) waits on that row lock for as long as the
    first stays open, and the commits land in id order: the real stack cannot take step 3."""
    with pytest.raises(NotImplementedError, match="row lock"):
        run_on_stack("topic-sequence", on=False, publishers=2)
    ns = new_namespace()

    async def main() -> None:
        store = Store(DATABASE_URL, ns, topic_sequence=False)
        await store.open()
        await store.publish("t", "note", {})
        take = (f"WITH n AS (SELECT nextval('{ns}.shared_seq') AS seq) UPDATE {ns}.topics "
                "SET head = GREATEST(head, n.seq) FROM n WHERE topic = %s RETURNING epoch, n.seq")
        a = await psycopg.AsyncConnection.connect(DATABASE_URL)
        b = await psycopg.AsyncConnection.connect(DATABASE_URL)
        try:
            first = await (await a.execute(take, ("t",))).fetchone()  # publisher 0 takes an id
            second = asyncio.create_task(b.execute(take, ("t",)))  # publisher 1 tries to
            await asyncio.sleep(1.0)
            assert not second.done(), "publisher 1 took an id past publisher 0's open transaction"
            await a.commit()
            row = await (await second).fetchone()
            await b.commit()
            assert first is not None and row is not None and row[1] > first[1]
        finally:
            await a.close()
            await b.close()
            await store.close()

    try:
        asyncio.run(main())
    finally:
        drop_schema(ns)


def test_coverage_lists_every_kind_of_the_world() -> None:
    """``--coverage`` names each transition kind, the new ones included (reached or not)."""
    from sims.conform.coverage import Coverage, format_coverage

    kinds = frozenset({Kind.PROBE.value, Kind.REDIS_PUBLISH_LOST.value})
    text = format_coverage(Coverage(kinds, kinds, frozenset(), frozenset()))
    for kind in Kind:
        assert kind.value in text, kind
