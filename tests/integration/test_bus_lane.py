"""The bus's publish lane on real Redis: killed connections, cancelled commands, the cap.

``Bus.publish`` keeps a few publish connections out of redis-py's pool and sends on
them directly. These tests hold it to what the pool gave for free: a connection
Redis killed is dropped and the publish still lands; a command cancelled before its
reply (a stalled link) gives its connection back instead of holding it, and the next
publish gets its own reply; and the lane never holds more than its cap, however many
publishes are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from model.core import EventId
from model.subscriber import SubscriberConfig
from service import bus as bus_module
from service.bus import Bus, LiveMessage, bus_key, decode_message
from service.metrics import Metrics
from service.testing.proxy import TcpProxy

from .conftest import REDIS_URL, kill_redis_clients

pytestmark = pytest.mark.integration
KEY = bus_key("lane-test-secret-" + "x" * 24)


def _bus(url: str, namespace: str) -> Bus:
    return Bus(redis_url=url, subscriber_url=url, namespace=namespace, replica="lane",
               cfg=SubscriberConfig(), metrics=Metrics(), key=KEY)


def _msg(seq: int) -> LiveMessage:
    return LiveMessage("u-lane", EventId(1, seq), "note", f'{{"n":{seq}}}', 1.0)


@contextlib.asynccontextmanager
async def _lane(url: str = REDIS_URL) -> AsyncIterator[tuple[Bus, aioredis.client.PubSub]]:
    """A bus publishing through ``url`` and a listener on its events channel, both closed after."""
    namespace = f"sselab_lane_{secrets.token_hex(3)}"
    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{namespace}:events")
    assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"  # type: ignore[index]
    bus = _bus(url, namespace)
    try:
        yield bus, pubsub
    finally:
        await bus.stop()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _heard(pubsub: aioredis.client.PubSub, n: int) -> list[int]:
    seqs = []
    async with asyncio.timeout(10):
        while len(seqs) < n:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if msg is not None:
                seqs.append(decode_message(msg["data"], KEY).event_id.seq)
    return seqs


def test_a_killed_lane_connection_is_dropped_and_the_publish_lands() -> None:
    async def main() -> None:
        async with _lane() as (bus, pubsub):
            await bus.publish(_msg(1))
            assert bus._held == 1 and len(bus._spare) == 1
            assert await asyncio.to_thread(kill_redis_clients, bus.publisher_name) >= 1
            await bus.publish(_msg(2))  # the held connection is dead: no error reaches us
            await bus.publish(_msg(3))
            assert await _heard(pubsub, 3) == [1, 2, 3]
            assert bus._held <= 1

    asyncio.run(main())


def test_a_command_cancelled_before_its_reply_gives_its_connection_back() -> None:
    host, port = "127.0.0.1", int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])

    async def main() -> None:
        with TcpProxy(host, port) as proxy:
            async with _lane(f"redis://127.0.0.1:{proxy.port}/0") as (bus, pubsub):
                await bus.publish(_msg(1))
                proxy.stall()
                stuck = asyncio.create_task(bus.publish(_msg(2)))
                await asyncio.sleep(0.2)
                stuck.cancel()  # the caller gave up before the reply
                with pytest.raises(asyncio.CancelledError):
                    await stuck
                assert bus._held == 0 and not bus._spare  # given back, not held
                proxy.resume()
                await asyncio.wait_for(bus.publish(_msg(3)), 10)
                assert bus._held == 1  # a fresh connection, not the cancelled one
                heard = await _heard(pubsub, 2)
                assert heard[-1] == 3 and set(heard) <= {1, 2, 3}

    asyncio.run(main())


def test_the_lane_holds_at_most_its_cap_under_a_burst() -> None:
    async def main() -> None:
        async with _lane() as (bus, pubsub):
            burst = 5 * bus_module._HELD
            await asyncio.gather(*(bus.publish(_msg(i + 1)) for i in range(burst)))
            assert bus._held == bus_module._HELD == len(bus._spare)
            assert sorted(await _heard(pubsub, burst)) == list(range(1, burst + 1))

    asyncio.run(main())
