"""Model and production agree: a real fault run's trace validates, an edited one does not,
and the checker's counterexamples break (fix off) or hold (fix on) on the live stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from integration.conftest import Server, kill_redis_clients, publish, wait_for
from integration.test_seed_fixes import make_client

from service import trace
from sims.conform.search import conform, world_config
from sims.conform.stack import run_on_stack
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
    assert {"redis.disconnect", "reconnect", "replay"} <= kinds

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


@pytest.mark.parametrize("fix", ["F1", "F2", "F4", "F5"])
def test_checker_counterexample_breaks_on_the_real_stack_only_without_the_fix(fix: str) -> None:
    off = run_on_stack(fix, on=False)
    assert not off.holds, off
    on = run_on_stack(fix, on=True)
    assert on.holds, on


def test_f3_counterexample_is_reported_unmapped() -> None:
    with pytest.raises(NotImplementedError, match="timers cannot be frozen"):
        run_on_stack("F3", on=False)
