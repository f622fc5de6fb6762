"""A checker counterexample played on the live stack, judged by the same invariant.

The shortest counterexample for a fix (``sims.check.check``) is a list of world
labels; each label's :func:`model.world.transition_kind` becomes a real
operation on a server subprocess with real Redis and Postgres (the integration
tests' ``Server`` and helpers, imported from ``tests/integration/conftest.py``,
so this runs from a checkout):

=======================  =====================================================
kind                     real operation
=======================  =====================================================
publish (a commit)       ``POST /events``
redis.subscriber_dies    stall the proxy between the server's subscriber and Redis
redis.disconnect         ``CLIENT KILL ... TYPE pubsub`` on the subscriber link
postgres.replay_fails    the events table is locked, so the next replay hits its
                         statement timeout (300 ms); released after the failure
postgres.prune           ``Store.prune(topic, upto_seq)``
replicas.down / up       kill the server process / start it again on its port
network.drop / stall     cut / stall the proxy between client and server
trigger / retry          ``client.online()`` / ``client.recover()``
accept / refuse          the client starts (its first attempt), then progress
other progress           happens on its own: wait for quiescence
=======================  =====================================================

``clients.sleep`` (and so the F3 counterexample) is not mapped: the service
client's timers run on the event loop, with no hook to freeze them.
Afterwards the invariant the checker found broken is judged on what happened:
``no-silent-stale`` with :class:`model.invariants.StaleFacts` from the client's
applied ids against the events committed in Postgres, ``bounded-counter`` from
the machine's counter against the attempts the shell really opened.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from model.fixes import Fixes
from model.invariants import (
    BOUNDED_COUNTER,
    FAILED_ONLY_AFTER_MAX,
    NO_SILENT_STALE,
    StaleFacts,
    covered,
)
from model.world import WorldConfig, transition_kind

__all__ = ["StackRun", "UNMAPPED", "counterexample", "run_on_stack"]

ROOT = Path(__file__).resolve().parents[2]
#: Fault kinds the runner cannot produce for real, and why.
UNMAPPED = {"clients.sleep": "the client's loop timers cannot be frozen from outside",
            "wake": "the client's loop timers cannot be frozen from outside"}


class StackRun(NamedTuple):
    """What the live stack did with a counterexample."""

    invariant: str
    holds: bool
    facts: str
    labels: tuple[str, ...]


def counterexample(fix: str, cfg: WorldConfig | None = None) -> tuple[str, list[str], WorldConfig]:
    """The checker's shortest counterexample with ``fix`` off: invariant, labels, config."""
    from sims.check import check

    cfg = cfg or WorldConfig(fixes=Fixes().without(fix))
    result = check(cfg, stop_at_first=True, liveness=False)
    if not result.violations:
        raise ValueError(f"the checker finds no violation with {fix} off")
    v = result.violations[0]
    return v.invariant, v.trace, cfg


def _helpers() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("tests.integration.conftest")


async def _run(labels: list[str], invariant: str, fixes: Fixes, max_attempts: int) -> StackRun:
    import psycopg

    from model.backoff import BackoffPolicy, Kind
    from model.client import ClientConfig, Status
    from model.core import EventId
    from service.client import EventStreamClient
    from service.store import Store
    from service.testing.proxy import TcpProxy

    it = _helpers()
    ns = f"sselab_it_{secrets.token_hex(4)}"
    user = f"u-{secrets.token_hex(4)}"
    host, port = it.REDIS_URL.split("//")[1].split("/")[0].split(":")
    kinds = [transition_kind(label) for label in labels]
    logs = Path(tempfile.mkdtemp(prefix="sselab-conform-"))
    redis_proxy = TcpProxy(host, int(port)).start()
    server = it.Server(ns, logs, {"SSELAB_FIXES": str(fixes), "SSELAB_REPLAY_TIMEOUT_MS": "300",
                                  "SSELAB_REPLAY_LIMIT": "2", "SSELAB_REDIS_RETRY_S": "1.0",
                                  "SSELAB_SUBSCRIBER_REDIS_URL":
                                      f"redis://127.0.0.1:{redis_proxy.port}/0"})
    server.start()
    client_proxy = TcpProxy("127.0.0.1", server.port).start()
    applied: set[int] = set()
    epoch: list[int] = []
    locker: Any = None
    client: EventStreamClient | None = None
    settle = 0.4
    try:
        for n, kind in enumerate(kinds):
            if kind in UNMAPPED:
                raise NotImplementedError(f"{labels[n]!r}: {UNMAPPED[kind]}")
            if kind == "publish" and "commits" in labels[n]:
                ids = await asyncio.to_thread(it.publish, server, user, 1)
                epoch[:] = [EventId.parse(ids[0]).epoch]
            elif kind == "postgres.replay_fails":
                await asyncio.sleep(1.0)  # the replay's statement timeout fires
                if locker is not None:
                    await locker.rollback()
                    await locker.close()
                    locker = None
            elif kind in ("accept", "refuse") and client is None:
                if "postgres.replay_fails" in kinds[n:]:
                    locker = await psycopg.AsyncConnection.connect(it.DATABASE_URL)
                    await locker.execute(f"LOCK TABLE {ns}.events IN ACCESS EXCLUSIVE MODE")
                cfg = ClientConfig(heartbeat_timeout=1.5, heartbeat_check_interval=0.1,
                                   max_attempts=max_attempts, fixes=fixes,
                                   policy=BackoffPolicy(kind=Kind.EXPONENTIAL, base=0.05, cap=0.2))
                start = EventId(epoch[0], 0) if epoch else None
                client = EventStreamClient(
                    f"http://127.0.0.1:{client_proxy.port}", lambda: it.token(user), config=cfg,
                    last_event_id=start, on_event=lambda e: applied.add(e.id.seq),
                    on_rehydrate=lambda s: applied.update(range(1, s.head.seq + 1)),  # state as of head
                    open_timeout=2.0)
                client.start()
            elif kind == "redis.subscriber_dies":
                redis_proxy.stall()  # the open link goes silent ...
                await asyncio.sleep(0.05)
                redis_proxy.resume()  # ... while a new link (a resubscribe) would work
            elif kind == "redis.disconnect":
                await asyncio.to_thread(it.kill_redis_clients, server.subscriber_name,
                                        pubsub_only=True)
            elif kind == "replicas.down":
                server.kill()
                settle = 0.1
            elif kind == "replica-up":
                await asyncio.to_thread(server.start)
            elif kind == "postgres.prune":
                store = Store(it.DATABASE_URL, ns)
                await store.open()
                await store.prune(topic=user, upto_seq=int(labels[n].rsplit(" ", 1)[1]))
                await store.close()
            elif kind == "network.drop":
                client_proxy.cut()
            elif kind == "network.stall":
                client_proxy.stall()
            elif kind in ("trigger", "retry") and client is not None:
                if client.status is Status.FAILED:
                    client.opens_since_stable = 0  # recover() starts a new count (the world's rule)
                client.online() if kind == "trigger" else client.recover()
            await asyncio.sleep(settle)
        await asyncio.sleep(3.0)  # quiescence: detection bound (1.5 s) and recovery
        assert client is not None, "the counterexample never started the client"
        if invariant == NO_SILENT_STALE:
            with psycopg.connect(it.DATABASE_URL) as conn:
                committed = {int(r[0]) for r in conn.execute(
                    f"SELECT seq FROM {ns}.events WHERE topic = %s", (user,)).fetchall()}
                floor_row = conn.execute(f"SELECT floor FROM {ns}.topics WHERE topic = %s",
                                         (user,)).fetchone()
            floor = int(floor_row[0]) if floor_row else 0
            everything = committed | set(range(1, floor + 1))  # pruned rows were committed too
            missing = len(everything - applied)
            stale = StaleFacts(client.live, missing, 0, False, False, False)
            return StackRun(invariant, covered(stale), repr(stale), tuple(labels))
        if invariant in (BOUNDED_COUNTER, FAILED_ONLY_AFTER_MAX):
            m = client.state
            ok = m.attempts == client.opens_since_stable and m.attempts <= max_attempts
            if invariant == FAILED_ONLY_AFTER_MAX:
                ok = not (m.status is Status.FAILED and client.opens_since_stable < max_attempts)
            facts = (f"counter={m.attempts} attempts_really_started={client.opens_since_stable} "
                     f"max={max_attempts} status={m.status.value}")
            return StackRun(invariant, ok, facts, tuple(labels))
        raise NotImplementedError(f"judging {invariant} on the real stack is not mapped")
    finally:
        if client is not None:
            await client.aclose()
        if locker is not None:
            await locker.close()
        client_proxy.close()
        server.kill()
        redis_proxy.close()
        with psycopg.connect(it.DATABASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {ns} CASCADE")


def run_on_stack(fix: str, *, on: bool) -> StackRun:
    """Play the checker's counterexample for ``fix`` on the live stack, the fix on or off."""
    invariant, labels, cfg = counterexample(fix)
    fixes = Fixes() if on else Fixes().without(fix)
    return asyncio.run(_run(labels, invariant, fixes, cfg.max_attempts))
