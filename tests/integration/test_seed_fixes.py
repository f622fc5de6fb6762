"""The seed's five verification steps on real Redis and Postgres, each fix on and off.

With a fix on the step passes; with it off the test asserts that the bug the fix
prevents is observed on the real stack. Timings are scaled down by configuration
(heartbeat 0.3 s, sentinel 1 s / 0.5 s); every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from model.backoff import BackoffPolicy, Kind
from model.client import ClientConfig, Status
from model.core import EventId
from model.fixes import Fixes
from service.client import ClientEvent, EventStreamClient, SnapshotData
from service.store import REPLAY_APPLICATION
from service.testing.proxy import TcpProxy

from .conftest import (
    DATABASE_URL,
    REDIS_URL,
    Server,
    kill_redis_clients,
    publish,
    token,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ALL_FIXES = Fixes()
FAST_POLICY = BackoffPolicy(kind=Kind.EXPONENTIAL, base=0.05, cap=0.2)


@dataclasses.dataclass
class Recorder:
    """What a client handed its application."""

    events: list[ClientEvent] = dataclasses.field(default_factory=list)
    statuses: list[Status] = dataclasses.field(default_factory=list)
    snapshots: list[SnapshotData] = dataclasses.field(default_factory=list)

    def ids(self) -> list[str]:
        return [str(e.id) for e in self.events]


def make_client(url: str, user: str, *, fixes: Fixes = ALL_FIXES, last_event_id: str | None = None,
                token_source: Any = None, http: httpx.AsyncClient | None = None,
                open_timeout: float = 3.0, **config: Any) -> tuple[EventStreamClient, Recorder]:
    rec = Recorder()
    settings = {"heartbeat_timeout": 1.5, "heartbeat_check_interval": 0.1,
                "policy": FAST_POLICY, "fixes": fixes, **config}
    client = EventStreamClient(
        url, token_source or (lambda: token(user)), config=ClientConfig(**settings),
        last_event_id=EventId.parse(last_event_id) if last_event_id else None,
        on_event=rec.events.append, on_status=lambda s, a: rec.statuses.append(s),
        on_rehydrate=rec.snapshots.append, open_timeout=open_timeout, http=http)
    return client, rec


async def connected(client: EventStreamClient, timeout: float = 10.0) -> None:
    client.start()
    assert await client.wait_until(lambda c: c.live, timeout)


def fix_env(fixes: Fixes) -> dict[str, str]:
    return {"SSELAB_FIXES": str(fixes)}


# ---------------------------------------------------------------- 1. bounded replay


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_replay_limit_truncates_then_client_rehydrates_and_streams_live(
        server_factory: Callable[..., Server], user: str, on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("bounded-replay")
    server = server_factory(SSELAB_REPLAY_LIMIT="5", **fix_env(fixes))

    async def main() -> None:
        first, rec1 = make_client(server.url, user, fixes=fixes)
        await connected(first)
        publish(server, user, 1)
        assert await wait_for(lambda: len(rec1.events) == 1, 10)
        cursor = str(first.state.last_event_id)
        await first.aclose()
        away = publish(server, user, 10)  # ten events while the client is away

        client, rec = make_client(server.url, user, fixes=fixes, last_event_id=cursor)
        client.start()
        if on:
            assert await wait_for(lambda: bool(rec.snapshots) and client.live, 10)
            assert str(rec.snapshots[0].head) == away[-1]
            assert [str(e.id) for e in rec.snapshots[0].events][-10:] == away
            assert rec.ids() == []  # nothing replayed row by row
            assert server.metric("sselab_replay_truncated_total", reason="gap") == 1
            assert server.metric("sselab_replay_rows_total") <= 6  # never more than limit + 1
        else:
            # The bug: the unbounded query reads every missed row, however many.
            assert await wait_for(lambda: len(rec.events) == 10, 10)
            assert rec.snapshots == []
            assert server.metric("sselab_replay_rows_total") == 10 > 5 + 1
        live = publish(server, user, 1)
        assert await wait_for(lambda: rec.ids()[-1:] == live, 10)
        assert client.live
        await client.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------- 2. replay failure


@pytest.mark.parametrize("fault,on", [("statement-timeout", True), ("terminate-backend", True),
                                      ("statement-timeout", False)],
                         ids=["timeout-fix-on", "terminate-fix-on", "timeout-fix-off"])
def test_real_replay_failure_signals_replay_failed_and_client_rehydrates(
        server_factory: Callable[..., Server], namespace: str, user: str, fault: str,
        on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("replay-failed-signal")
    timeout_ms = "300" if fault == "statement-timeout" else "20000"
    server = server_factory(SSELAB_REPLAY_TIMEOUT_MS=timeout_ms, **fix_env(fixes))

    async def main() -> None:
        first, rec1 = make_client(server.url, user, fixes=fixes)
        await connected(first)
        publish(server, user, 1)
        assert await wait_for(lambda: len(rec1.events) == 1, 10)
        cursor = str(first.state.last_event_id)
        await first.aclose()
        missed = publish(server, user, 3)

        # A real fault: the events table is locked, so the replay query blocks until
        # its statement timeout fires, or until its backend is terminated.
        locker = await psycopg.AsyncConnection.connect(DATABASE_URL)
        await locker.execute(f"LOCK TABLE {namespace}.events IN ACCESS EXCLUSIVE MODE")
        try:
            client, rec = make_client(server.url, user, fixes=fixes, last_event_id=cursor)
            client.start()
            if fault == "terminate-backend":
                async with await psycopg.AsyncConnection.connect(DATABASE_URL,
                                                                 autocommit=True) as admin:
                    async def terminate() -> bool:
                        cur = await admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s AND wait_event_type = 'Lock'",
                            (REPLAY_APPLICATION,))
                        return any(r[0] for r in await cur.fetchall())
                    deadline = time.monotonic() + 10
                    while not await terminate():
                        assert time.monotonic() < deadline, "the replay never blocked"
                        await asyncio.sleep(0.05)
            assert await wait_for(lambda: server.metric("sselab_replays_total",
                                                        outcome="failed") >= 1, 10)
        finally:
            await locker.rollback()
            await locker.close()
        if on:
            assert await wait_for(lambda: bool(rec.snapshots) and client.live, 10)
            assert server.metric("sselab_replay_failed_total") == 1
            assert str(rec.snapshots[0].head) == missed[-1]
        else:
            # The bug: the failure is swallowed; the client shows itself live and
            # never learns of the three events it missed.
            assert await wait_for(lambda: client.live, 10)
            later = publish(server, user, 1)
            assert await wait_for(lambda: rec.ids() == later, 10)
            assert rec.snapshots == [] and server.metric("sselab_replay_failed_total") == 0
            assert not set(missed) & set(rec.ids())
        await client.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------- 3. heartbeat race


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_heartbeats_stop_while_a_reconnect_is_in_flight_counter_equals_attempts(
        server_factory: Callable[..., Server], user: str, on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("heartbeat-guard")
    server = server_factory(SSELAB_HEARTBEAT_S="0.2", **fix_env(fixes))

    async def main() -> None:
        with TcpProxy("127.0.0.1", server.port) as proxy:
            client, _rec = make_client(f"http://127.0.0.1:{proxy.port}", user, fixes=fixes,
                                      heartbeat_timeout=0.8, open_timeout=4.0)
            await connected(client)
            assert await client.wait_until(lambda c: c.state.stable, 5)
            proxy.stall()  # heartbeats stop; the reconnect that follows hangs in flight
            assert await client.wait_until(lambda c: c.opens == 2, 5)
            samples = []
            for _ in range(12):  # watch the in-flight attempt for 1.2 s
                if client.status is Status.CONNECTING:
                    samples.append((client.state.attempts, client.opens_since_stable))
                await asyncio.sleep(0.1)
            assert samples, "the reconnect never hung in flight"
            if on:
                assert all(counter == made for counter, made in samples), samples
            else:
                # The bug: each heartbeat check bumps the counter while connecting.
                counter, made = samples[-1]
                assert made == 1 and counter >= made + 5, samples
            await client.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------- 4. subscriber health


async def _ready_status(server: Server) -> int:
    return (await asyncio.to_thread(server.ready))[0]


async def _wait_ready(server: Server, want: int, timeout: float) -> float | None:
    """Seconds until /health/ready answers ``want``, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await _ready_status(server) == want:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return None


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_subscriber_link_killed_is_detected_and_streams_resync(
        server_factory: Callable[..., Server], user: str, on: bool) -> None:
    # Off, the head probe is off too: it would bring the lost events within SSELAB_PROBE_S
    # (a later bound than the sentinel's) and mask the bug, as in `sselab mutate`.
    fixes = Fixes() if on else Fixes().without("subscriber-health", "head-probe")
    server = server_factory(SSELAB_REDIS_RETRY_S="1.0", **fix_env(fixes))
    bound = 1.0 + 0.5  # sentinel interval + timeout

    async def main() -> None:
        client, rec = make_client(server.url, user)
        await connected(client)
        assert await _wait_ready(server, 200, 5) is not None
        assert kill_redis_clients(server.subscriber_name, pubsub_only=True) == 1
        lost = publish(server, user, 3)  # nobody is subscribed: pub/sub drops them
        if on:
            assert await _wait_ready(server, 503, bound + 1.0) is not None
            assert await _wait_ready(server, 200, 10) is not None
            # resynced from the cursor: every event arrives, none published since
            assert await wait_for(lambda: rec.ids() == lost, 10), rec.ids()
            assert server.metric("sselab_stream_resyncs_total") >= 1
        else:
            # The bug: health stays 200 and the three events never reach the client.
            for _ in range(int(3 * bound / 0.1)):
                assert await _ready_status(server) == 200
                await asyncio.sleep(0.1)
            assert rec.ids() == [] and client.live
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_subscriber_link_silently_stalled_is_detected_and_streams_resync(
        server_factory: Callable[..., Server], user: str, on: bool) -> None:
    # Off, the head probe is off too: it would bring the lost events within SSELAB_PROBE_S
    # (a later bound than the sentinel's) and mask the bug, as in `sselab mutate`.
    fixes = Fixes() if on else Fixes().without("subscriber-health", "head-probe")
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    bound = 1.0 + 0.5

    async def main() -> None:
        with TcpProxy(host, int(port)) as proxy:
            server = server_factory(SSELAB_SUBSCRIBER_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                                    **fix_env(fixes))
            client, rec = make_client(server.url, user)
            await connected(client)
            assert await _wait_ready(server, 200, 5) is not None
            proxy.stall()  # no error, no data: the link is silently dead
            stalled_at = time.monotonic()
            lost = publish(server, user, 3)
            if on:
                took = await _wait_ready(server, 503, bound + 1.5)
                assert took is not None, "the stall was never detected"
                assert time.monotonic() - stalled_at <= bound + 1.5
                body = server.ready()[1]
                assert body["state"] in ("unhealthy", "reconnecting"), body
                proxy.resume()
                assert await _wait_ready(server, 200, 10) is not None
                assert await wait_for(lambda: rec.ids() == lost, 10), rec.ids()
            else:
                for _ in range(int(3 * bound / 0.1)):
                    assert await _ready_status(server) == 200
                    await asyncio.sleep(0.1)
                assert rec.ids() == [] and client.live
            await client.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------- 5. max attempts


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_server_down_max_attempts_fails_then_recover_rehydrates_and_streams_live(
        server_factory: Callable[..., Server], user: str, on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("max-reconnect")
    server = server_factory(**fix_env(fixes))

    async def main() -> None:
        client, rec = make_client(server.url, user, fixes=fixes, max_attempts=3)
        await connected(client)
        publish(server, user, 1)
        assert await wait_for(lambda: len(rec.events) == 1, 10)
        server.kill()
        if on:
            assert await client.wait_until(lambda c: c.status is Status.FAILED, 10)
            assert client.opens_since_stable == 3 and client.state.attempts == 3
            assert client.state.last_event_id is None  # the cursor is cleared
        else:
            # The bug: no threshold, it retries forever.
            assert await client.wait_until(lambda c: c.opens_since_stable >= 6, 10)
            assert Status.FAILED not in rec.statuses
        server.start()
        missed = publish(server, user, 2)
        if on:
            await asyncio.sleep(0.5)
            assert client.status is Status.FAILED  # only recover() leaves failed
            client.recover()
            assert await wait_for(lambda: bool(rec.snapshots) and client.live, 10)
            assert str(rec.snapshots[-1].head) == missed[-1]
            assert [str(e.id) for e in rec.snapshots[-1].events][-2:] == missed
        else:
            assert await wait_for(lambda: client.live, 10)
        live = publish(server, user, 1)
        assert await wait_for(lambda: rec.ids()[-1:] == live, 10)
        await client.aclose()

    asyncio.run(main())
