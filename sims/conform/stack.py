"""A checker counterexample played on the live stack, judged by the same invariant.

The shortest counterexample for a fix (``sims.check.check``) is a list of world
steps; each step's kind (:class:`model.world.Kind`) becomes a real
operation on a server subprocess with real Redis and Postgres (the ``Server``
and helpers of :mod:`service.testing.stack`, so an installed package runs it):

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
clients.sleep            freeze the client's timers (:class:`SleepableTimers`)
                         and stall its stream through the proxy
wake                     release them: every armed timer is due at once; the
                         network comes back (new links pass) when the steps end
accept (snapshot later)  the snapshot's second read will wait at a proxy before
                         Postgres, the client's event frames at its proxy
receive (snapshot next)  wait until that read is held (the rehydration runs)
snapshot                 release both: the read completes, then the frames
accept / refuse          the client starts (its first attempt), then progress
other progress           happens on its own: wait for quiescence
=======================  =====================================================

Afterwards the invariant the checker found broken is judged on what happened:
``no-silent-stale`` with :class:`model.invariants.StaleFacts` from the client's
applied ids against the events committed in Postgres (after quiescence),
``bounded-counter`` from the machine's counter against the attempts the shell
really opened, after every machine step (the first mismatch is kept).
A snapshot applies the state as of its newest row (or, with every row pruned,
as of the topic's floor), not as of the head it reports.

:data:`UNMAPPED` lists the counterexamples the real service cannot take, and why.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from model.fixes import Fixes, resolve_fix_name
from model.fixes import info as fix_info
from model.invariants import (
    BOUNDED_COUNTER,
    FAILED_ONLY_AFTER_MAX,
    NO_SILENT_STALE,
    StaleFacts,
    covered,
)
from model.world import Kind, WorldConfig
from sims.check import Step

__all__ = ["StackRun", "UNMAPPED", "counterexample", "fix_world", "run_on_stack"]

#: Fixes whose counterexample the real service cannot take, and why.
UNMAPPED = {
    "topic-sequence":
        "the checker's steps 1-3 have publisher 1 commit id 2 while publisher 0 holds id 1 "
        "uncommitted; the store's seed SQL (one shared sequence) takes the id in the same "
        "statement that updates the topic row, so the second transaction waits on that row "
        "lock until the first commits (tried with two psycopg connections: B blocks for as "
        "long as A stays open) and commits land in id order; only the microseconds between "
        "nextval() and the row lock inside one statement could invert them",
}


class StackRun(NamedTuple):
    """What the live stack did with a counterexample."""

    invariant: str
    holds: bool
    facts: str
    labels: tuple[str, ...]


def counterexample(fix: str, cfg: WorldConfig | None = None) -> tuple[str, list[Step], WorldConfig]:
    """The checker's shortest counterexample with ``fix`` off: invariant, steps, config."""
    from sims.check import check

    cfg = cfg or WorldConfig(fixes=Fixes().without(fix))
    result = check(cfg, stop_at_first=True, liveness=False)
    if not result.violations:
        raise ValueError(f"the checker finds no violation with {fix} off")
    v = result.violations[0]
    return v.invariant, list(v.steps), cfg


async def _run(steps: list[Step], invariant: str, fixes: Fixes, max_attempts: int) -> StackRun:
    import psycopg

    from model.backoff import BackoffPolicy
    from model.backoff import Kind as BackoffKind
    from model.client import ClientConfig, Status
    from model.core import EventId
    from service.client import EventStreamClient
    from service.store import Store
    from service.testing import stack as it
    from service.testing.proxy import TcpProxy
    from service.testing.sleep import SleepableTimers

    ns = it.new_namespace()
    user = f"u-{secrets.token_hex(4)}"
    host, port = it.REDIS_URL.split("//")[1].split("/")[0].split(":")
    labels = [step.label for step in steps]
    kinds = [step.kind.value for step in steps]
    logs = Path(tempfile.mkdtemp(prefix="sselab-conform-"))
    redis_proxy = TcpProxy(host, int(port)).start()
    env = {"SSELAB_FIXES": str(fixes), "SSELAB_REPLAY_TIMEOUT_MS": "300",
           "SSELAB_REPLAY_LIMIT": "2", "SSELAB_REDIS_RETRY_S": "1.0",
           "SSELAB_SUBSCRIBER_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0"}
    pg_proxy: TcpProxy | None = None
    if "snapshot" in kinds:  # the snapshot's reads go through a proxy that can hold one
        pg = psycopg.conninfo.conninfo_to_dict(it.DATABASE_URL)
        pg_proxy = TcpProxy(str(pg.get("host", "127.0.0.1")), int(str(pg.get("port") or 5432))).start()
        env["SSELAB_DATABASE_URL"] = psycopg.conninfo.make_conninfo(
            it.DATABASE_URL, host="127.0.0.1", port=pg_proxy.port)
    server = it.Server(ns, logs, env)
    server.start()
    client_proxy = TcpProxy("127.0.0.1", server.port).start()
    applied: set[int] = set()
    epoch: list[int] = []
    locker: Any = None
    client: EventStreamClient | None = None
    timers: SleepableTimers | None = None
    broken: list[str] = []  # bounded-counter, judged after every machine step
    settle = 0.4

    def floor_now() -> int:
        with psycopg.connect(it.DATABASE_URL) as conn:
            row = conn.execute(f"SELECT floor FROM {ns}.topics WHERE topic = %s", (user,)).fetchone()
        return int(row[0]) if row else 0

    def on_rehydrate(snap: Any) -> None:
        top = max((e.id.seq for e in snap.events), default=0) or floor_now()
        applied.update(range(1, top + 1))  # the state as of the newest row the snapshot read

    class Observed(EventStreamClient):
        def feed(self, event: Any) -> None:
            super().feed(event)
            m = self.state
            if not broken and (m.attempts != self.opens_since_stable or m.attempts > max_attempts):
                broken.append(f"after {event.__class__.__name__}: counter={m.attempts} "
                              f"attempts_really_started={self.opens_since_stable} "
                              f"max={max_attempts} status={m.status.value}")

    try:
        for n, kind in enumerate(kinds):
            if steps[n].kind is Kind.PUBLISH and steps[n].variant == "commit":
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
                                   policy=BackoffPolicy(kind=BackoffKind.EXPONENTIAL, base=0.05, cap=0.2))
                start = EventId(epoch[0], 0) if epoch else None
                if pg_proxy is not None and "snapshot" in kinds[n:]:
                    # The rehydration a later frame starts reads twice; its second read waits,
                    # and so do the client's event frames, until the world's "snapshot loaded".
                    pg_proxy.hold(b"ORDER BY seq DESC" if fixes.head_before_snapshot
                                  else b"SELECT epoch, head FROM")
                    client_proxy.hold(b"event: note")
                timers = SleepableTimers()
                client = Observed(
                    f"http://127.0.0.1:{client_proxy.port}", lambda: it.token(user), config=cfg,
                    last_event_id=start, on_event=lambda e: applied.add(e.id.seq),
                    on_rehydrate=on_rehydrate, timers=timers, open_timeout=2.0)
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
                seq = steps[n].args[0]
                assert isinstance(seq, int)
                await store.prune(topic=user, upto_seq=seq)
                await store.close()
            elif kind == "network.drop":
                client_proxy.cut()
            elif kind == "network.stall":
                client_proxy.stall()
            elif kind == "clients.sleep" and timers is not None:
                timers.freeze()  # the lid closes: no timer fires ...
                client_proxy.stall()  # ... and the stream goes silent
            elif kind == "wake" and timers is not None:
                timers.release()  # every timer whose deadline passed is due now
            elif kind == "receive" and pg_proxy is not None and "snapshot" in kinds[n:]:
                deadline = asyncio.get_running_loop().time() + 5
                while pg_proxy.held == 0 and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.02)
                if pg_proxy.held == 0:
                    raise RuntimeError("the snapshot's second read never reached Postgres")
                continue
            elif kind == "snapshot" and pg_proxy is not None:
                pg_proxy.release()
                await asyncio.sleep(settle)
                client_proxy.release()
            elif kind in ("trigger", "retry") and client is not None:
                client.online() if kind == "trigger" else client.recover()
            await asyncio.sleep(settle)
        client_proxy.resume()  # a woken laptop's network comes back
        await asyncio.sleep(3.0)  # quiescence: detection bound (1.5 s) and recovery
        assert client is not None, "the counterexample never started the client"
        if invariant == NO_SILENT_STALE:
            with psycopg.connect(it.DATABASE_URL) as conn:
                committed = {int(r[0]) for r in conn.execute(
                    f"SELECT seq FROM {ns}.events WHERE topic = %s", (user,)).fetchall()}
            everything = committed | set(range(1, floor_now() + 1))  # pruned rows were committed
            missing = len(everything - applied)
            stale = StaleFacts(client.live, missing, 0, False, False, False)
            return StackRun(invariant, covered(stale), repr(stale), tuple(labels))
        if invariant in (BOUNDED_COUNTER, FAILED_ONLY_AFTER_MAX):
            m = client.state
            ok = not broken and m.attempts == client.opens_since_stable \
                and m.attempts <= max_attempts
            if invariant == FAILED_ONLY_AFTER_MAX:
                ok = not (m.status is Status.FAILED and client.opens_since_stable < max_attempts)
            facts = broken[0] if broken else (
                f"counter={m.attempts} attempts_really_started={client.opens_since_stable} "
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
        if pg_proxy is not None:
            pg_proxy.close()
        it.drop_schema(ns)
        shutil.rmtree(logs, ignore_errors=True)


def fix_world(fix: str, publishers: int | None = None) -> WorldConfig:
    """The first world ``model.fixes`` says shows ``fix``'s bug, with the fix off."""
    sizes = dict(fix_info(fix).worlds[0]) if fix_info(fix).worlds else {}
    if publishers is not None:
        sizes["publishers"] = publishers
    return WorldConfig(fixes=Fixes().without(fix, *fix_info(fix).also_off), **sizes)


def run_on_stack(fix: str, *, on: bool, publishers: int | None = None) -> StackRun:
    """Play the checker's counterexample for ``fix`` on the live stack, the fix on or off."""
    name = resolve_fix_name(fix)
    if name in UNMAPPED:
        raise NotImplementedError(f"{name}: {UNMAPPED[name]}")
    invariant, steps, cfg = counterexample(fix, fix_world(fix, publishers))
    fixes = Fixes() if on else Fixes().without(fix, *fix_info(fix).also_off)
    return asyncio.run(_run(steps, invariant, fixes, cfg.max_attempts))
