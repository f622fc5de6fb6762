"""A publish lost after its commit, on real Redis and Postgres (issue 12, fix ``head-probe``).

The fault is "the process died between commit and publish": the event is
committed through ``service.store.Store`` on the servers' own schema and never
published on Redis, so no replica hears of it. With ``head-probe`` on, every
open stream of the topic gets it within ``SSELAB_PROBE_S`` plus one replay (its
statement timeout), with no later event published; with it off, it does not
arrive within that window: the topic is quiet, so the streams stay stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from model.fixes import Fixes
from service.store import Store

from .conftest import DATABASE_URL, Server, publish, wait_for
from .test_seed_fixes import connected, make_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PROBE_S = 0.3
REPLAY_TIMEOUT_S = 1.0
#: The bound a user relies on: one probe period plus one replay, plus scheduling slack.
WINDOW_S = PROBE_S + REPLAY_TIMEOUT_S + 0.5


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_a_publish_lost_after_its_commit_reaches_every_open_stream_within_the_probe_bound(
        server_factory: Callable[..., Server], namespace: str, user: str, on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("head-probe")
    servers = [server_factory(SSELAB_PROBE_S=str(PROBE_S), SSELAB_FIXES=str(fixes),
                              SSELAB_REPLAY_TIMEOUT_MS=str(int(REPLAY_TIMEOUT_S * 1000)))
               for _ in range(2)]

    async def main() -> None:
        # Two streams on each of two replicas, all on the same quiet topic.
        pairs = [make_client(servers[i % 2].url, user, fixes=fixes) for i in range(4)]
        try:
            for client, _ in pairs:
                await connected(client)
            first = publish(servers[0], user, 1)  # delivered live: every stream holds a cursor
            assert await wait_for(lambda: all(r.ids() == first for _, r in pairs), 10)
            store = Store(DATABASE_URL, namespace, max_size=2)
            await store.open()
            try:
                lost, _ = await store.publish(user, "note", {"lost": True})  # never published
            finally:
                await store.close()
            want = [*first, str(lost)]
            arrived = await wait_for(lambda: all(r.ids() == want for _, r in pairs), WINDOW_S)
            if on:
                assert arrived, [r.ids() for _, r in pairs]
                assert sum(s.metric("sselab_probe_catch_ups_total") for s in servers) == 4
                assert all(s.metric("sselab_head_probes_total") >= 1 for s in servers)
            else:
                assert not arrived
                assert all(r.ids() == first for _, r in pairs)  # stale, and nothing says so
                assert all(client.live for client, _ in pairs)
                assert sum(s.metric("sselab_head_probes_total") for s in servers) == 0
        finally:
            for client, _ in pairs:
                await client.aclose()

    asyncio.run(main())
