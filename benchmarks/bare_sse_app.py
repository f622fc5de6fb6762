"""The baseline for benchmarks/service.py: sse-starlette + Redis broadcast, no resilience.

No database, no replay, no machines, no auth checks beyond reading the user from
the token's unverified payload: one pub/sub link fans every published event out
to the local streams of its user. It exists only to price the resilient service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse, ServerSentEvent


def _user(request: Request) -> str:
    raw = request.headers.get("authorization", "").partition(" ")[2].split(".")
    payload = raw[1] + "=" * (-len(raw[1]) % 4)
    return str(json.loads(base64.urlsafe_b64decode(payload))["sub"])


def create_app() -> FastAPI:
    """The bare broadcast app."""
    url = os.environ.get("SSELAB_REDIS_URL", "redis://127.0.0.1:6379/0")
    channel = os.environ.get("BARE_CHANNEL", "bare:events")
    listeners: dict[str, set[asyncio.Queue[str]]] = {}
    redis = aioredis.Redis.from_url(url)
    counter = {"seq": 0}

    async def pump() -> None:
        pubsub = redis.pubsub()
        await pubsub.subscribe(channel)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            event = json.loads(message["data"])
            for queue in list(listeners.get(event["user"], ())):
                queue.put_nowait(message["data"].decode())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(pump())
        yield
        task.cancel()
        await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/stream")
    async def stream(request: Request) -> EventSourceResponse:
        """Stream the token's user's events."""
        user = _user(request)
        queue: asyncio.Queue[str] = asyncio.Queue()
        listeners.setdefault(user, set()).add(queue)

        async def frames() -> AsyncIterator[ServerSentEvent]:
            try:
                while True:
                    raw = await queue.get()
                    event = json.loads(raw)
                    yield ServerSentEvent(data=json.dumps(event["data"]), event=event["type"],
                                          id=str(event["id"]))
            finally:
                listeners[user].discard(queue)

        return EventSourceResponse(frames())

    @app.post("/events", status_code=201)
    async def publish(body: dict[str, Any]) -> dict[str, str]:
        """Broadcast one event."""
        counter["seq"] += 1
        await redis.publish(channel, json.dumps({**body, "id": counter["seq"]}))
        return {"id": str(counter["seq"])}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        """The process is up."""
        return {"status": "live"}

    return app
