"""The HTTP contract, scoping, token re-checks and a Redis restart, on the real stack."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from model.client import Status
from service.auth import issue_token

from .conftest import PUBLISHER, SECRET, Server, kill_redis_clients, publish, token, wait_for
from .test_seed_fixes import connected, make_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _read_for(url: str, seconds: float, **kwargs: object) -> str:
    """The text of a stream read for ``seconds`` (heartbeats keep it busy, so a deadline)."""
    text = ""
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=seconds),
                      **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        try:
            for chunk in response.iter_text():
                text += chunk
                if time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass
    return text


def _frames(server: Server, user: str, *, last_event_id: str | None = None,
            seconds: float = 1.0) -> list[dict[str, str]]:
    """Read a stream for ``seconds`` and parse its frames."""
    headers = {"Authorization": f"Bearer {token(user)}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    text = _read_for(f"{server.url}/stream", seconds, headers=headers)
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields and set(fields) != {"retry"}:  # a retry-only frame dispatches nothing
            frames.append(fields)
    return frames


def test_http_contract(server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory()
    url = server.url
    auth = {"Authorization": f"Bearer {token(user)}"}
    ids = publish(server, user, 3)
    frames = _frames(server, user, last_event_id=ids[0], seconds=0.8)
    events = [f for f in frames if f.get("event") == "note"]
    assert [f["id"] for f in events] == ids[1:]
    assert events[0]["data"] == '{"i": 1}' or events[0]["data"] == '{"i":1}'
    assert any(f.get("event") == "heartbeat" for f in frames)
    # the same resume through the query string with a stream ticket (browsers cannot set
    # headers); a bearer token in the query is refused by default, and anywhere but /stream
    ticket = httpx.post(f"{url}/stream/ticket", headers=auth).json()["ticket"]
    text = _read_for(f"{url}/stream", 0.5, params={"ticket": ticket, "last_event_id": ids[1]})
    assert f"id: {ids[2]}" in text and f"id: {ids[1]}" not in text
    assert text.startswith("retry: ")  # a jittered reconnect delay comes first
    assert httpx.get(f"{url}/stream", params={"access_token": token(user)}).status_code == 401
    assert httpx.get(f"{url}/snapshot", params={"ticket": ticket}).status_code == 401
    # 400: malformed Last-Event-ID, header or query
    for params, headers in (({}, {**auth, "Last-Event-ID": "nope"}),
                            ({"last_event_id": "1-x"}, auth),
                            ({}, {**auth, "Last-Event-ID": "-1-2"})):
        response = httpx.get(f"{url}/stream", params=params, headers=headers, timeout=5)
        assert response.status_code == 400 and "error" in response.json()
    # 401: missing, forged, expired
    expired = issue_token(SECRET, user, ttl=1, now=time.time() - 100)
    forged = issue_token("f" * 40, user)
    for headers in ({}, {"Authorization": f"Bearer {forged}"},
                    {"Authorization": f"Bearer {expired}"}, {"Authorization": "Basic abc"}):
        response = httpx.get(f"{url}/stream", headers=headers, timeout=5)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    # POST /events
    pub = {"Authorization": f"Bearer {PUBLISHER}"}
    response = httpx.post(f"{url}/events", json={"user": user, "type": "t", "data": None},
                          headers=pub)
    assert response.status_code == 201 and response.json()["id"].count("-") == 1
    response_id = response.json()["id"]
    for body in ({"user": user, "type": "t"}, {"user": user, "type": "heartbeat", "data": 1},
                 {"user": "", "type": "t", "data": 1}, [1, 2]):
        assert httpx.post(f"{url}/events", json=body, headers=pub).status_code == 422
    assert httpx.post(f"{url}/events", content=b"{not json", headers={
        **pub, "content-type": "application/json"}).status_code == 422
    big = {"user": user, "type": "t", "data": "x" * 70_000}
    assert httpx.post(f"{url}/events", json=big, headers=pub).status_code == 413

    def chunks() -> object:
        yield b'{"user": "a", "type": "t", "data": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'
    assert httpx.post(f"{url}/events", content=chunks(), headers={  # type: ignore[arg-type]
        **pub, "content-type": "application/json"}).status_code == 413
    assert httpx.post(f"{url}/events", json={"user": user, "type": "t", "data": 1},
                      headers=auth).status_code == 403
    assert httpx.post(f"{url}/events", json={"user": user, "type": "t", "data": 1}
                      ).status_code == 401
    # health, metrics, schema, snapshot
    ready = httpx.get(f"{url}/health/ready")
    assert ready.status_code == 200
    assert set(ready.json()) >= {"ready", "state", "reason", "last_sentinel_age", "database"}
    assert httpx.get(f"{url}/health").json()["state"] == ready.json()["state"]
    assert httpx.get(f"{url}/health/live").status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    for name in ("sselab_open_streams", "sselab_replays_total", "sselab_replay_rows_total",
                 "sselab_replay_truncated_total", "sselab_replay_failed_total",
                 "sselab_sentinel_round_trips_total", "sselab_subscriber_state",
                 "sselab_subscriber_reconnects_total"):
        assert name in metrics
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert {"/stream", "/events", "/health", "/health/live", "/health/ready", "/metrics",
            "/snapshot"} <= set(paths)
    snap = httpx.get(f"{url}/snapshot", headers=auth).json()
    assert snap["head"] == response_id
    assert [e["id"] for e in snap["events"]][:3] == ids


def test_streams_are_scoped_to_their_user_live_and_on_replay(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    alice, bob = "alice-" + str(time.monotonic_ns()), "bob-" + str(time.monotonic_ns())

    async def main() -> None:
        a, rec_a = make_client(server.url, alice)
        b, rec_b = make_client(server.url, bob)
        await connected(a)
        await connected(b)
        a_ids = publish(server, alice, 3)
        b_ids = publish(server, bob, 3)
        assert await wait_for(lambda: rec_a.ids() == a_ids and rec_b.ids() == b_ids, 10)
        await asyncio.sleep(0.3)
        assert rec_a.ids() == a_ids and rec_b.ids() == b_ids  # never the other's
        await a.aclose()
        await b.aclose()
        # replay: alice resumes from her first id and gets only her own rows
        frames = await asyncio.to_thread(_frames, server, alice, last_event_id=a_ids[0],
                                         seconds=0.6)
        assert [f["id"] for f in frames if "id" in f] == a_ids[1:]
        # a cursor from bob's log is foreign to alice: 400, never bob's rows
        response = httpx.get(f"{server.url}/stream", headers={
            "Authorization": f"Bearer {token(alice)}", "Last-Event-ID": b_ids[0]}, timeout=5)
        assert response.status_code == 400 and "foreign" in response.json()["error"]
        # an epoch nobody owns is merely unknown: replay-truncated, not 400
        frames = await asyncio.to_thread(_frames, server, alice, last_event_id="999999-1",
                                         seconds=0.5)
        assert frames[0]["event"] == "replay-truncated" and "unknown-id" in frames[0]["data"]
        snap = httpx.get(f"{server.url}/snapshot",
                         headers={"Authorization": f"Bearer {token(alice)}"}).json()
        assert [e["id"] for e in snap["events"]] == a_ids

    asyncio.run(main())


def test_every_reconnect_rechecks_the_token(server_factory: Callable[..., Server],
                                            user: str) -> None:
    server = server_factory()
    expired = issue_token(SECRET, user, ttl=1, now=time.time() - 100)
    forged = issue_token("f" * 40, user)
    tokens = [issue_token(SECRET, user, ttl=2), expired, forged]
    codes: list[int] = []

    async def record(response: httpx.Response) -> None:
        if response.request.url.path == "/stream":
            codes.append(response.status_code)

    def next_token() -> str:
        return tokens.pop(0) if tokens else token(user)

    async def main() -> None:
        http = httpx.AsyncClient(event_hooks={"response": [record]},
                                 timeout=httpx.Timeout(3, read=None))
        client, rec = make_client(server.url, user, token_source=next_token, http=http)
        await connected(client)
        first = publish(server, user, 1)
        assert await wait_for(lambda: rec.ids() == first, 10)
        # the server ends the stream when the 2 s token expires; each reconnect is
        # checked: the expired and the forged token are refused, the fresh one let in
        assert await wait_for(lambda: codes[:4] == [200, 401, 401, 200], 15), codes
        assert await client.wait_until(lambda c: c.live, 10)
        later = publish(server, user, 1)
        assert await wait_for(lambda: rec.ids() == first + later, 10)
        assert Status.WAITING in rec.statuses
        await client.aclose()
        await http.aclose()

    asyncio.run(main())


def test_redis_restart_mid_stream_loses_no_event(server_factory: Callable[..., Server],
                                                 user: str) -> None:
    """Every connection of the server to Redis is killed twice while events flow.

    This emulates a Redis restart without stopping the shared redis-server: the
    subscriber link and the publisher's pool drop and redial. Each event must be
    delivered, or covered by a re-hydration whose head reaches it.
    """
    server = server_factory()
    published: list[str] = []
    errors: list[str] = []

    def publisher() -> None:
        with httpx.Client(timeout=10) as http:
            for i in range(40):
                response = http.post(f"{server.url}/events",
                                     json={"user": user, "type": "note", "data": {"i": i}},
                                     headers={"Authorization": f"Bearer {PUBLISHER}"})
                if response.status_code == 201:
                    published.append(response.json()["id"])
                else:
                    errors.append(response.text)
                time.sleep(0.03)

    async def main() -> None:
        client, rec = make_client(server.url, user)
        await connected(client)
        thread = threading.Thread(target=publisher)
        thread.start()
        for _ in range(2):
            await asyncio.sleep(0.35)
            assert kill_redis_clients(server.subscriber_name, server.publisher_name) >= 1
        await asyncio.to_thread(thread.join, 30)
        assert not errors and len(published) == 40

        def covered() -> bool:
            heads = [s.head.seq for s in rec.snapshots]
            got = set(rec.ids())
            return all(i in got or any(int(i.split("-")[1]) <= h for h in heads)
                       for i in published)

        assert await wait_for(covered, 15), sorted(set(published) - set(rec.ids()))
        assert server.metric("sselab_subscriber_reconnects_total") >= 2
        await client.aclose()

    asyncio.run(main())


def test_retention_prune_raises_the_floor_and_old_cursors_are_expired(
        server_factory: Callable[..., Server], namespace: str, user: str) -> None:
    from service.store import Store

    from .conftest import DATABASE_URL

    server = server_factory()
    ids = publish(server, user, 6)

    async def prune() -> int:
        store = Store(DATABASE_URL, namespace)
        await store.open()
        try:
            return await store.prune(topic=user, upto_seq=int(ids[3].split("-")[1]))
        finally:
            await store.close()

    assert asyncio.run(prune()) == 4
    frames = _frames(server, user, last_event_id=ids[1], seconds=0.5)
    assert frames[0]["event"] == "replay-truncated" and '"expired"' in frames[0]["data"]
    frames = _frames(server, user, last_event_id=ids[3], seconds=0.5)
    assert [f["id"] for f in frames if "id" in f] == ids[4:]
