"""A re-hydration reads the whole snapshot, page by page: the state the machines assume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from model.core import EventId
from service.client import EventStreamClient

from .conftest import Server, publish, token


def test_the_client_reads_every_snapshot_page_oldest_first(
        server_factory: Callable[..., Server], user: str) -> None:
    """With pages of 3, eight events come back as one snapshot, in order, with the head."""
    server = server_factory(SSELAB_SNAPSHOT_LIMIT="3")
    ids = publish(server, user, 8)

    async def load() -> tuple[EventId, list[str]]:
        client = EventStreamClient(server.url, lambda: token(user))
        try:
            head, events = await client._load_snapshot(True)
        finally:
            await client.aclose()
        return head, [str(e.id) for e in events]

    head, got = asyncio.run(load())
    assert got == ids
    assert str(head) == ids[-1]
