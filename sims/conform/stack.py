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
auth.revoke              the service's own revocation (``Revocations.revoke_token``,
                         what ``sselab token --revoke-token`` writes): the client's
                         token goes on the Redis deny list; its later connects use a
                         new token. The server re-checks open streams every
                         ``SSELAB_REAUTH_INTERVAL_S`` (0.2 s here)
reauth                   wait (bounded) for that re-check: the server's read of the
                         token's deny-list keys after the revocation, seen through
                         Redis ``MONITOR``, whether the shell or the session machine
                         (``model.session.Revoked``) decides what follows
clients.sleep            freeze the client's timers (:class:`SleepableTimers`)
                         and stall its stream through the proxy
wake                     release them: every armed timer is due at once; the
                         network comes back (new links pass) when the steps end
accept (snapshot later)  the snapshot's second read will wait at a proxy before
                         Postgres, the client's event frames at its proxy
receive (snapshot next)  wait until that read is held (the rehydration runs)
snapshot                 release both: the read completes, then the frames
accept / refuse          the client starts (its first attempt), then progress
open                     nothing more: the server registers the stream for live
                         fan-out, reads the head and opens it within one accept
other progress           happens on its own: wait for quiescence
=======================  =====================================================

Afterwards the invariant the checker found broken is judged on what happened:
``no-silent-stale`` with :class:`model.invariants.StaleFacts` from the client's
applied ids against the events committed in Postgres (after quiescence),
``bounded-counter`` from the machine's counter against the attempts the shell
really opened, after every machine step (the first mismatch is kept);
``revoked-stream-ends`` from the client's inputs: after the re-check the server ended
the stream cleanly within :data:`REAUTH_END_S` (fix on), or it stayed open (fix off).
A snapshot applies the state as of its newest row (or, with every row pruned,
as of the topic's floor), not as of the head it reports.

:data:`UNMAPPED` lists the counterexamples the real service cannot take, and why.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from model.fixes import Fixes, resolve_fix_name
from model.fixes import info as fix_info
from model.invariants import (
    BOUNDED_COUNTER,
    DETECTION_BOUND,
    FAILED_ONLY_AFTER_MAX,
    NO_SILENT_STALE,
    NO_STREAM_WITHOUT_CURSOR,
    ORDERED_DELIVERY,
    REVOKED_STREAM_ENDS,
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


#: The head probe's read (``Store.topic_heads``) and a replay's rows (``Store.replay``).
PROBE_SQL = b"WHERE topic = ANY("
REPLAY_SQL = b"AND seq > "
#: Client inputs that a message on the stream feeds.
MESSAGES = frozenset({"HeartbeatReceived", "EventReceived", "HeadAnnounced", "ReplayTruncated",
                      "ReplayFailed"})
#: The server's re-check interval (``SSELAB_REAUTH_INTERVAL_S``) where a token is revoked.
REAUTH_INTERVAL_S = 0.2
#: How long ``reauth`` waits for the server's re-check of a revoked token (reads of its
#: deny-list key seen through Redis ``MONITOR``) before it notes that none came.
RECHECK_WAIT_S = 3.0
#: The bound, after the re-check, within which the server must have ended the stream
#: (the world's ``REAUTH_BOUND`` of one tick; the server ends it at once).
REAUTH_END_S = 2.0
#: Client inputs that end a stream (or its attempt).
ENDS = ("StreamClosed", "StreamFailed")
#: How long a step waits for its real hold point (a held read, the client's state).
HOLD_WAIT_S = 15.0


class _DenyListReads:
    """The server's reads of one token's deny-list keys after its revocation, seen through
    Redis ``MONITOR``: its re-checks, whichever shell or machine makes them."""

    def __init__(self, url: str, keys: tuple[str, ...]) -> None:
        import redis

        self.keys, self.reads, self.revoked = keys, 0, False
        self._url = url
        self._stop = f"sselab-conform-stop-{secrets.token_hex(4)}"
        self._redis = redis.Redis.from_url(url)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="deny-list-reads", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("Redis MONITOR did not start")

    def _watch(self) -> None:
        with self._redis.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            for cmd in monitor.listen():
                text = str(cmd.get("command", ""))
                if self._stop in text:
                    return
                if not any(key in text for key in self.keys):
                    continue
                if text.upper().startswith("SET "):
                    self.revoked = True  # the revocation itself; reads after it count
                elif self.revoked:
                    self.reads += 1

    def close(self) -> None:
        """Stop watching (the watcher sees a marker command and returns)."""
        import redis

        other = redis.Redis.from_url(self._url)
        try:
            other.echo(self._stop)
        finally:
            other.close()
        self._thread.join(5)
        self._redis.close()


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


def _held_deliveries(steps: list[Step]) -> set[int]:
    """Indices of Redis publishes whose delivery the counterexample puts after other steps."""
    held = set()
    for n, step in enumerate(steps):
        if step.kind is Kind.PUBLISH and step.variant == "publish":
            for later in steps[n + 1:]:
                if later.kind is Kind.DELIVER and later.variant == "event" \
                        and later.args[:1] == step.args[:1]:
                    break
                if later.kind is not Kind.TICK:
                    held.add(n)
                    break
    return held


async def _run(steps: list[Step], invariant: str, fixes: Fixes, cfg: WorldConfig) -> StackRun:
    import json

    import psycopg
    import redis.asyncio as aredis

    from model.backoff import BackoffPolicy
    from model.backoff import Kind as BackoffKind
    from model.client import ClientConfig, Status
    from model.core import EventId
    from service.bus import LiveMessage, bus_key, encode_message
    from service.client import EventStreamClient
    from service.store import Store
    from service.testing import stack as it
    from service.testing.proxy import TcpProxy
    from service.testing.sleep import SleepableTimers

    max_attempts = cfg.max_attempts
    ns = it.new_namespace()
    user = f"u-{secrets.token_hex(4)}"
    host, port = it.REDIS_URL.split("//")[1].split("/")[0].split(":")
    labels = [step.label for step in steps]
    kinds = [step.kind for step in steps]
    held_publishes = _held_deliveries(steps)
    probes = Kind.PROBE in kinds or Kind.REDIS_PUBLISH_LOST in kinds
    logs = Path(tempfile.mkdtemp(prefix="sselab-conform-"))
    redis_proxy = TcpProxy(host, int(port)).start()
    env = {"SSELAB_FIXES": str(fixes), "SSELAB_REPLAY_TIMEOUT_MS": "300",
           "SSELAB_REPLAY_LIMIT": "2", "SSELAB_REDIS_RETRY_S": "1.0",
           "SSELAB_SUBSCRIBER_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
           # The head probe runs where the counterexample has one (or a lost publish it must
           # cover with the fix on); elsewhere the world's run ends before its period.
           "SSELAB_PROBE_S": "0.2" if probes else "3600"}
    if Kind.AUTH_REVOKE in kinds:  # the server re-checks open streams' tokens this often
        env["SSELAB_REAUTH_INTERVAL_S"] = str(REAUTH_INTERVAL_S)
    if held_publishes:  # a held Redis delivery must not look like a dead subscriber
        env["SSELAB_SENTINEL_TIMEOUT_S"] = "5.0"
    pg_proxy: TcpProxy | None = None  # server -> probe_proxy -> pg_proxy -> Postgres
    probe_proxy: TcpProxy | None = None
    snapshot_kinds = {Kind.SNAPSHOT, Kind.POSTGRES_SNAPSHOT_FAILS}
    if snapshot_kinds & set(kinds) or Kind.PROBE in kinds:
        # the server's reads go through proxies that can hold one: a snapshot's read, a
        # replay (pg_proxy), the head probe's read (probe_proxy) until the world's probe
        pg = psycopg.conninfo.conninfo_to_dict(it.DATABASE_URL)
        pg_proxy = TcpProxy(str(pg.get("host", "127.0.0.1")), int(str(pg.get("port") or 5432))).start()
        probe_proxy = TcpProxy("127.0.0.1", pg_proxy.port).start()
        env["SSELAB_DATABASE_URL"] = psycopg.conninfo.make_conninfo(
            it.DATABASE_URL, host="127.0.0.1", port=probe_proxy.port)
        if Kind.PROBE in kinds:
            probe_proxy.hold(PROBE_SQL)
    # The snapshot path waits for its real hold points (a held read, the client's state)
    # instead of a fixed time after each step.
    snap_path = pg_proxy is not None and bool(snapshot_kinds & set(kinds))
    snapshot_held = False  # the rehydration's second read is to wait at pg_proxy
    server = it.Server(ns, logs, env)
    server.start()
    client_proxy = TcpProxy("127.0.0.1", server.port).start()
    store = Store(it.DATABASE_URL, ns)
    await store.open()
    bus = aredis.Redis.from_url(it.REDIS_URL)
    pending: list[LiveMessage] = []  # committed, not yet published to Redis
    applied: set[int] = set()
    epoch: list[int] = []
    locker: Any = None
    client: EventStreamClient | None = None
    timers: SleepableTimers | None = None
    broken: list[str] = []  # bounded-counter, judged after every machine step
    cursorless: list[str] = []  # no-stream-without-cursor, judged after every message
    disorder: list[str] = []  # ordered-delivery, judged on every event with data
    fed: list[tuple[str, str]] = []  # every client input (name, reason), in order
    tokens = [it.token(user)]  # the client's token; a revocation denies the newest one
    deny_reads: _DenyListReads | None = None  # the server's re-checks of a revoked token
    revoked_at = -1  # len(fed) when the token was revoked
    reauth: dict[str, Any] = {}  # what the re-check step saw (revoked-stream-ends)
    settle = 0.4

    def floor_now() -> int:
        with psycopg.connect(it.DATABASE_URL) as conn:
            row = conn.execute(f"SELECT floor FROM {ns}.topics WHERE topic = %s", (user,)).fetchone()
        return int(row[0]) if row else 0

    def on_rehydrate(snap: Any) -> None:
        top = max((e.id.seq for e in snap.events), default=0) or floor_now()
        applied.update(range(1, top + 1))  # the state as of the newest row the snapshot read

    async def fan_out(msg: LiveMessage) -> None:
        """What the server does after its commit: publish the event on the bus."""
        await bus.publish(f"{ns}:events", encode_message(msg, bus_key(it.SECRET)))

    async def until(what: str, predicate: Any, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await asyncio.to_thread(predicate):
            if loop.time() > deadline:
                raise RuntimeError(f"the real stack never {what}")
            await asyncio.sleep(0.02)

    stream_ids: list[int] = []  # ids with data on the current stream

    def fed_since(since: int, names: tuple[str, ...]) -> bool:
        """Whether the client was fed one of ``names`` after input ``since``."""
        return any(name in names for name, _ in fed[since:])

    def rehydrated() -> bool:
        return client is not None and not client.state.rehydrating

    def server_ended(since: int) -> bool:
        """Whether the server ended the client's stream (cleanly) after input ``since``."""
        return any(name == "StreamClosed" and reason == "stream ended"
                   for name, reason in fed[since:])

    class Observed(EventStreamClient):
        def feed(self, event: Any) -> None:
            name = event.__class__.__name__
            fed.append((name, str(getattr(event, "reason", ""))))
            if name == "StreamOpened":
                stream_ids.clear()
            if name == "EventReceived":
                if stream_ids and event.event_id.seq <= stream_ids[-1] and not disorder:
                    disorder.append(f"event {event.event_id} after {stream_ids[-1]} "
                                    "on one stream")
                stream_ids.append(event.event_id.seq)
            super().feed(event)
            m = self.state
            if not broken and (m.attempts != self.opens_since_stable or m.attempts > max_attempts):
                broken.append(f"after {name}: counter={m.attempts} "
                              f"attempts_really_started={self.opens_since_stable} "
                              f"max={max_attempts} status={m.status.value}")
            if name in MESSAGES and not cursorless and m.last_event_id is None \
                    and m.status is Status.CONNECTED:
                cursorless.append(f"after {name} on an open stream: no cursor")

    try:
        for n, step in enumerate(steps):
            kind = step.kind
            if kind is Kind.PUBLISH and step.variant == "commit":
                if probe_proxy is not None and Kind.PROBE in kinds[n:]:
                    await asyncio.sleep(settle)  # a probe read already sent has its answer
                event_id, committed = await store.publish(user, "note", {"i": n})
                epoch[:] = [event_id.epoch]
                pending.append(LiveMessage(user, event_id, "note",
                                           json.dumps({"i": n}, separators=(",", ":")), committed))
            elif kind is Kind.PUBLISH:  # the publisher's Redis publish, after its commit
                if n in held_publishes:  # Redis delivers it at the world's "deliver" step
                    redis_proxy.hold(f"{ns}:events".encode())
                if pending:
                    await fan_out(pending.pop(0))
            elif kind is Kind.REDIS_PUBLISH_LOST:
                if pending:
                    pending.pop(0)  # committed, never published (the process died between)
            elif kind is Kind.DELIVER and step.variant == "event":
                redis_proxy.release()  # a held delivery arrives now; else it happened
            elif kind is Kind.PROBE and probe_proxy is not None and pg_proxy is not None:
                catch_ups = await asyncio.to_thread(server.metric, "sselab_probe_catch_ups_total")
                replay_next = Kind.REPLAY in kinds[n:] or Kind.POSTGRES_REPLAY_FAILS in kinds[n:]
                if replay_next:
                    pg_proxy.hold(REPLAY_SQL)  # the catch-up's rows come at the "replay" step
                probe_proxy.release()  # the held probe reads the head now ...
                probe_proxy.hold(PROBE_SQL)  # ... and the next one waits for the next step
                if replay_next:  # the world's next replay is this probe's catch-up
                    await until("started the probe's catch-up", lambda seen=catch_ups: (
                        server.metric("sselab_probe_catch_ups_total") > seen))
                    await until("sent the catch-up's replay", lambda: pg_proxy.held > 0)
            elif kind is Kind.REPLAY and pg_proxy is not None and not client_proxy.held:
                pg_proxy.release()
            elif kind is Kind.POSTGRES_REPLAY_FAILS:
                if locker is not None:
                    await asyncio.sleep(1.0)  # the replay's statement timeout fires
                    await locker.rollback()
                    await locker.close()
                    locker = None
                elif pg_proxy is not None and pg_proxy.held:
                    pg_proxy.cut()  # the held replay's connection breaks: the query fails
                    pg_proxy.release()
            elif kind is Kind.OPEN:
                continue  # the real server registers, reads the head and opens in one accept
            elif kind in (Kind.ACCEPT, Kind.REFUSE) and client is None:
                if Kind.POSTGRES_REPLAY_FAILS in kinds[n:] and Kind.PROBE not in kinds[n:]:
                    locker = await psycopg.AsyncConnection.connect(it.DATABASE_URL)
                    await locker.execute(f"LOCK TABLE {ns}.events IN ACCESS EXCLUSIVE MODE")
                ccfg = ClientConfig(heartbeat_timeout=1.5, heartbeat_check_interval=0.1,
                                    max_attempts=max_attempts, fixes=fixes,
                                    policy=BackoffPolicy(kind=BackoffKind.EXPONENTIAL,
                                                         base=0.05, cap=0.2))
                start: EventId | None = None
                if cfg.start_cursor == 0:  # the world's client starts at the empty topic
                    if not epoch:
                        epoch.append((await store.topic_head(user)).epoch)
                    start = EventId(epoch[0], 0)
                # the world's register and open are one real accept: look past the open
                drop_next = [k for k in kinds[n + 1:n + 3] if k is not Kind.OPEN][:1] == [
                    Kind.NETWORK_DROP]
                if drop_next:
                    # the world drops the stream before its first frame (the announced head)
                    # reached the client: that frame waits at the proxy and dies with the link
                    client_proxy.hold(b"id: ", split=True)
                elif pg_proxy is not None and snapshot_kinds & set(kinds[n:]):
                    # The rehydration a later frame starts reads twice; its second read waits,
                    # and so do the client's event frames, until the world's "snapshot loaded".
                    pg_proxy.hold(b"ORDER BY seq DESC" if fixes.head_before_snapshot
                                  else b"SELECT epoch, head FROM")
                    client_proxy.hold(b"event: note", split=True)
                    snapshot_held = True
                timers = SleepableTimers()
                client = Observed(
                    f"http://127.0.0.1:{client_proxy.port}", lambda: tokens[-1], config=ccfg,
                    last_event_id=start, on_event=lambda e: applied.add(e.id.seq),
                    on_rehydrate=on_rehydrate, timers=timers, open_timeout=2.0)
                client.start()
                if drop_next and snap_path:  # open, its first frame held at the proxy
                    await until("held the stream's first frame at the proxy",
                                lambda: client_proxy.held > 0 and fed_since(0, ("StreamOpened",)),
                                HOLD_WAIT_S)
                    continue
            elif kind is Kind.REDIS_SUBSCRIBER_DIES:
                redis_proxy.stall()  # the open link goes silent ...
                await asyncio.sleep(0.05)
                redis_proxy.resume()  # ... while a new link (a resubscribe) would work
            elif kind is Kind.REDIS_DISCONNECT:
                await asyncio.to_thread(it.kill_redis_clients, server.subscriber_name,
                                        pubsub_only=True)
            elif kind is Kind.REPLICAS_DOWN:
                server.kill()
                settle = 0.1
            elif kind is Kind.REPLICA_UP:
                await asyncio.to_thread(server.start)
            elif kind is Kind.POSTGRES_PRUNE:
                seq = step.args[0]
                assert isinstance(seq, int)
                await store.prune(topic=user, upto_seq=seq)
            elif kind is Kind.NETWORK_DROP:
                dropped_at = len(fed)
                client_proxy.cut()
                client_proxy.release()
                if pg_proxy is not None and snapshot_kinds & set(kinds[n:]):
                    pg_proxy.hold(b"ORDER BY seq DESC" if fixes.head_before_snapshot
                                  else b"SELECT epoch, head FROM")
                    client_proxy.hold(b"event: note", split=True)
                    snapshot_held = True
                if snap_path:  # the client has seen its stream end
                    await until("ended the client's stream",
                                partial(fed_since, dropped_at, ENDS), HOLD_WAIT_S)
                    continue
            elif kind is Kind.NETWORK_STALL:
                client_proxy.stall()
            elif kind is Kind.CLIENTS_SLEEP and timers is not None:
                timers.freeze()  # the lid closes: no timer fires ...
                client_proxy.stall()  # ... and the stream goes silent
            elif kind is Kind.WAKE and timers is not None:
                timers.release()  # every timer whose deadline passed is due now
            elif kind is Kind.RECEIVE and pg_proxy is not None and snapshot_kinds & set(kinds[n:]):
                await until("sent the snapshot's second read", lambda: pg_proxy.held > 0)
                continue
            elif kind is Kind.SNAPSHOT and pg_proxy is not None:
                pg_proxy.release()
                snapshot_held = False
                # the load completes (RehydrateDone), then the held frames go on
                await until("completed the rehydration", rehydrated, HOLD_WAIT_S)
                client_proxy.release()
                continue
            elif kind is Kind.POSTGRES_SNAPSHOT_FAILS and pg_proxy is not None:
                pg_proxy.cut()  # the held snapshot read's connection breaks: the load fails
                pg_proxy.release()
                await asyncio.sleep(settle)
                client_proxy.release()
            elif kind is Kind.AUTH_REVOKE:
                # the service's own revocation (what `sselab token --revoke-token` writes):
                # the client's token goes on the Redis deny list; a later connect gets a new one
                from service.auth import verify_token
                from service.revocation import Revocations

                principal = verify_token(it.SECRET, tokens[-1])
                deny_reads = _DenyListReads(it.REDIS_URL, (
                    f"{ns}:revoked:jti:{principal.token_id}", f"{ns}:revoked:user:{user}"))
                revoked_at = len(fed)
                await Revocations(bus, ns, max_ttl=86400.0).revoke_token(
                    principal.token_id, expires_at=principal.expires_at)
                tokens.append(it.token(user))
                continue  # the world re-checks before time passes
            elif kind is Kind.REAUTH and deny_reads is not None:
                # the server's periodic re-check reads the deny list (SSELAB_REAUTH_INTERVAL_S);
                # with the fix on it ends the stream at once, off it keeps streaming
                watch, since = deny_reads, revoked_at
                rechecked = await it.wait_for(lambda: watch.reads > 0,  # noqa: B023
                                              RECHECK_WAIT_S)
                ended = await it.wait_for(lambda: server_ended(since),  # noqa: B023
                                          REAUTH_END_S if rechecked else 0.0)
                reauth.update(rechecked=rechecked, ended=ended, reads=deny_reads.reads)
                continue
            elif kind in (Kind.TRIGGER, Kind.RETRY) and client is not None:
                client.online() if kind is Kind.TRIGGER else client.recover()
            elif kind is Kind.ACCEPT and snap_path and client is not None:
                # the replica accepts the client's next stream: wait until it is open
                ended_at = max((k for k, (name, _) in enumerate(fed) if name in ENDS),
                               default=-1)
                await until("opened the client's next stream",
                            partial(fed_since, ended_at + 1, ("StreamOpened",)), HOLD_WAIT_S)
                continue
            if snap_path and snapshot_held and client is not None and client.state.rehydrating:
                # the rehydration runs: its first read is done once its second waits at pg_proxy
                await until("sent the snapshot's second read", lambda: pg_proxy is not None
                            and pg_proxy.held > 0, HOLD_WAIT_S)
                continue
            await asyncio.sleep(settle)
        client_proxy.resume()  # a woken laptop's network comes back
        for proxy in (redis_proxy, pg_proxy, probe_proxy):
            if proxy is not None:
                proxy.release()  # faults stop: every held read and delivery goes on
        for msg in pending:  # a publish still under way in the world happens
            await fan_out(msg)
        await asyncio.sleep(3.0)  # quiescence: detection bound (1.5 s) and recovery
        assert client is not None or invariant == DETECTION_BOUND, \
            "the counterexample never started the client"
        if reauth:
            reauth["ended_by_end"] = server_ended(revoked_at)
        return await _judge(invariant, client, server, ns, user, applied, broken, cursorless,
                            disorder, max_attempts, tuple(labels), floor_now, reauth)
    finally:
        if client is not None:
            await client.aclose()
        if locker is not None:
            await locker.close()
        if deny_reads is not None:
            deny_reads.close()
        await store.close()
        await bus.aclose()
        client_proxy.close()
        server.kill()
        for proxy in (redis_proxy, probe_proxy, pg_proxy):
            if proxy is not None:
                proxy.close()
        it.drop_schema(ns)
        shutil.rmtree(logs, ignore_errors=True)


async def _judge(invariant: str, client: Any | None, server: Any, ns: str, user: str, applied: set[int],
                 broken: list[str], cursorless: list[str], disorder: list[str],
                 max_attempts: int, labels: tuple[str, ...], floor_now: Any,
                 reauth: dict[str, Any]) -> StackRun:
    """The invariant the checker found broken, judged on what the real stack did."""
    import psycopg

    from model.client import Status
    from service.testing import stack as it

    if invariant == DETECTION_BOUND:
        # The run went on past the bound (1.0 s + 0.5 s) for 3 s: a detected death has
        # resubscribed by now; the exact bound is the fault tests' own timeout.
        reconnects = await asyncio.to_thread(server.metric, "sselab_subscriber_reconnects_total")
        return StackRun(invariant, reconnects > 0,
                        f"subscriber reconnects after the silent death: {reconnects:g}", labels)
    assert client is not None
    if invariant == NO_SILENT_STALE:
        with psycopg.connect(it.DATABASE_URL) as conn:
            committed = {int(r[0]) for r in conn.execute(
                f"SELECT seq FROM {ns}.events WHERE topic = %s", (user,)).fetchall()}
        everything = committed | set(range(1, floor_now() + 1))  # pruned rows were committed
        missing = len(everything - applied)
        stale = StaleFacts(client.live, missing, 0, False, False, False)
        return StackRun(invariant, covered(stale), repr(stale), labels)
    if invariant in (BOUNDED_COUNTER, FAILED_ONLY_AFTER_MAX):
        m = client.state
        ok = not broken and m.attempts == client.opens_since_stable \
            and m.attempts <= max_attempts
        if invariant == FAILED_ONLY_AFTER_MAX:
            ok = not (m.status is Status.FAILED and client.opens_since_stable < max_attempts)
        facts = broken[0] if broken else (
            f"counter={m.attempts} attempts_really_started={client.opens_since_stable} "
            f"max={max_attempts} status={m.status.value}")
        return StackRun(invariant, ok, facts, labels)
    if invariant == NO_STREAM_WITHOUT_CURSOR:
        facts = cursorless[0] if cursorless else \
            f"every message found a cursor (now {client.state.last_event_id})"
        return StackRun(invariant, not cursorless, facts, labels)
    if invariant == ORDERED_DELIVERY:
        return StackRun(invariant, not disorder,
                        disorder[0] if disorder else "ids strictly increased on every stream",
                        labels)
    if invariant == REVOKED_STREAM_ENDS:
        if not reauth:
            raise RuntimeError("the counterexample never re-checked a revoked token")
        seen = (f"the server read the revoked token's deny-list keys {reauth['reads']} time(s) "
                "after the revocation" if reauth["rechecked"] else
                f"the server made no re-check within {RECHECK_WAIT_S:g} s of the revocation")
        if reauth["ended"]:
            what = f"it ended the stream within {REAUTH_END_S:g} s of the re-check"
        elif reauth["ended_by_end"]:
            what = "it ended the stream later than the bound"
        else:
            what = f"the stream stayed open to the end of the run (status {client.state.status.value})"
        return StackRun(invariant, bool(reauth["ended"]), f"{seen}; {what}", labels)
    raise NotImplementedError(f"judging {invariant} on the real stack is not mapped")


def fix_world(fix: str, publishers: int | None = None) -> WorldConfig:
    """The first world ``model.fixes`` says shows ``fix``'s bug, with the fix off."""
    sizes: dict[str, Any] = dict(fix_info(fix).worlds[0]) if fix_info(fix).worlds else {}
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
    return asyncio.run(_run(steps, invariant, fixes, cfg))
