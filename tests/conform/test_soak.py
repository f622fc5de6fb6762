"""Soak: random faults on the real stack, every round's trace validated against the world.

A bounded run (``SSELAB_SOAK_S`` seconds of wall time, default 60; seed
``SSELAB_SOAK_SEED``, default 8) of rounds. Each round starts a server with its
own trace file (so a round is one small world the conform search can explain),
connects one traced client through a loopback proxy, publishes, injects one
fault drawn from a seeded RNG (CLIENT KILL of the subscriber's pubsub link, a
silent subscriber stall, a replay statement timeout, a dropped or stalled client
link), publishes again, heals (every proxy forwards again, every lock released)
and waits until every committed event of the round is delivered to the client or
covered by a snapshot. Then the trace must be a behaviour of ``model/world``.

Even rounds start the client without a cursor (a fresh browser: the world's
default, ``WorldConfig.start_cursor=None``; the session announces the head and the
client adopts it), odd rounds from the topic's head read from ``/snapshot`` (the
world's client at the empty topic, ``start_cursor=0``). Before ``announce-head``,
a cursorless client that lost its first stream before any event reconnected
without ``Last-Event-ID`` and missed what was published meanwhile (this soak
found that). A subscriber death's trace validates too: the world's resubscribe
reports ``Reconnecting`` before ``Ready``, as the service does.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from integration.test_seed_fixes import make_client

from service import trace
from service.testing.proxy import TcpProxy
from service.testing.stack import (
    DATABASE_URL,
    REDIS_URL,
    Server,
    kill_redis_clients,
    publish,
    token,
    wait_for,
)
from sims.conform.search import conform, world_config
from sims.conform.traces import read_traces

SOAK_S = float(os.environ.get("SSELAB_SOAK_S", "60"))
SEED = int(os.environ.get("SSELAB_SOAK_SEED", "8"))
#: Faults whose real trace the conform search does not explain yet, and the line it stops at.
KNOWN_UNEXPLAINED = {
    # the world ends a stalled stream's session at once; the real one lives (and is fed live
    # events) until the client's heartbeat monitor closes the dead connection
    "network.stall": "LiveEvent",
}
FAULTS = ("redis.disconnect", "redis.subscriber_dies", "postgres.replay_fails", "network.drop",
          "network.stall")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(SOAK_S + 120)]


async def _round(server: Server, redis_proxy: TcpProxy, namespace: str, user: str,
                 path: Path, fault: str, rng: random.Random, cursorless: bool
                 ) -> tuple[set[int], set[int]]:
    """One round: connect, publish, fault, publish, heal; return (committed, applied) seqs."""
    env = trace.for_path(path)
    assert env is not None
    client_proxy = TcpProxy("127.0.0.1", server.port).start()
    head = None if cursorless else await asyncio.to_thread(lambda: httpx.get(
        f"{server.url}/snapshot", headers={"Authorization": f"Bearer {token(user)}"},
        timeout=5).json()["head"])
    client, rec = make_client(f"http://127.0.0.1:{client_proxy.port}", user, last_event_id=head)
    client.name, client._trace = "c0", env
    locker: Any = None
    try:
        client.start()
        # live, and holding a cursor: a cursorless client's comes with the announced head,
        # which may arrive after the stream opened (a fault before it would turn a replay
        # round into a re-hydration round)
        assert await client.wait_until(
            lambda c: c.live and c.state.last_event_id is not None, 10)
        for _ in range(rng.randint(0, 1)):
            env.env("publish")
            await asyncio.to_thread(publish, server, user, 1)
        if fault != "postgres.replay_fails":
            env.env(fault)
        if fault == "redis.disconnect":
            await asyncio.to_thread(kill_redis_clients, server.subscriber_name, pubsub_only=True)
        elif fault == "redis.subscriber_dies":
            redis_proxy.stall()  # the open link goes silent; a resubscribe gets through
            await asyncio.sleep(0.05)
            redis_proxy.resume()
        elif fault == "postgres.replay_fails":
            client_proxy.hold()  # an event the client will have to replay ...
            env.env("publish")
            await asyncio.to_thread(publish, server, user, 1)
            locker = await psycopg.AsyncConnection.connect(DATABASE_URL)
            await locker.execute(f"LOCK TABLE {namespace}.events IN ACCESS EXCLUSIVE MODE")
            env.env("network.drop")  # ... on the reconnect whose replay times out
            client_proxy.cut()
            client_proxy.release()
            await asyncio.sleep(1.0)
            env.env(fault)  # the statement timeout (300 ms) has fired by now
            await locker.rollback()
            await locker.close()
            locker = None
        elif fault == "network.drop":
            client_proxy.cut()
        elif fault == "network.stall":
            client_proxy.stall()
            await asyncio.sleep(0.05)
            client_proxy.resume()  # the stalled link stays dead; the next one passes
        for _ in range(rng.randint(1, 2)):
            env.env("publish")
            await asyncio.to_thread(publish, server, user, 1)
        # Heal: nothing is faulty any more; wait (bounded) until the client has everything.
        with psycopg.connect(DATABASE_URL) as conn:
            committed = {int(r[0]) for r in conn.execute(
                f"SELECT seq FROM {namespace}.events WHERE topic = %s", (user,)).fetchall()}

        def applied() -> set[int]:
            got = {e.id.seq for e in rec.events}
            for snap in rec.snapshots:
                got |= set(range(1, snap.head.seq + 1))
            return got

        await wait_for(lambda: client.live and committed <= applied(), 15)
        await client.aclose()
        return committed, applied()
    finally:
        if locker is not None:
            await locker.close()
        await client.aclose()
        client_proxy.close()


def test_soak_random_faults_validate_and_deliver(namespace: str, tmp_path: Path) -> None:
    """Every round's trace validates against the world; every event reaches the client."""
    rng = random.Random(SEED)
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    deadline = time.monotonic() + SOAK_S
    rounds: list[tuple[str, Path, set[int], set[int]]] = []
    while time.monotonic() < deadline:
        n = len(rounds)
        fault = rng.choice(FAULTS)
        path = tmp_path / f"round-{n}.jsonl"
        user = f"soak-{SEED}-{n}"
        with TcpProxy(host, int(port)) as redis_proxy:
            server = Server(namespace, tmp_path, {
                "SSELAB_TRACE": str(path), "SSELAB_REDIS_RETRY_S": "1.0",
                "SSELAB_REPLAY_TIMEOUT_MS": "300",
                "SSELAB_SUBSCRIBER_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0"})
            server.start()
            try:
                committed, applied = asyncio.run(
                    _round(server, redis_proxy, namespace, user, path, fault, rng, n % 2 == 0))
            finally:
                server.kill()
        rounds.append((fault, path, committed, applied))

    problems = []
    for n, (fault, path, committed, applied) in enumerate(rounds):
        if not committed <= applied:
            problems.append(f"round {n} ({fault}): events {sorted(committed - applied)} "
                            "never reached the client")
        tr = read_traces([str(path)])
        result = conform(tr, world_config(tr))
        known = KNOWN_UNEXPLAINED.get(fault)
        if known is not None:  # still rejected, exactly where we know: flips when explained
            f = result.failure
            if result.ok or f is None or f.line is None or f.line.key[0] != known:
                problems.append(f"round {n} ({fault}): expected the known gap at {known}, "
                                f"got {'VALID' if result.ok else f}")
        elif not result.ok:
            f = result.failure
            where = f"{f.line.file}:{f.line.lineno}" if f is not None and f.line else "?"
            problems.append(f"round {n} ({fault}): trace invalid at {where}: {f}")
    summary = ", ".join(f for f, *_ in rounds)
    assert len(rounds) >= 3, f"only {len(rounds)} rounds in {SOAK_S} s"
    assert not problems, f"{len(rounds)} rounds ({summary}):\n" + "\n".join(problems)

