"""Issue 14 on the real stack: each attack or fault gets a clear answer or a bounded effect.

Every test starts ``uvicorn --factory service.app:create_app`` subprocesses on real
Redis and Postgres, attacks them as an outsider or an operator would, and checks
the answer, that no committed event is lost, and that other streams keep going.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from model.core import EventId
from service.auth import issue_token
from service.bus import LiveMessage, bus_key, encode_message
from service.testing.proxy import TcpProxy
from service.testing.stack import _PACKAGES

from .conftest import (
    DATABASE_URL,
    PUBLISHER,
    REDIS_URL,
    SECRET,
    Server,
    publish,
    redis_client,
    token,
)
from .test_contract import _frames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def _note_ids(lines: Iterator[str]) -> Iterator[str]:
    """The ids of the ``note`` events among a stream's lines (id-only frames skipped)."""
    last = None
    for line in lines:
        if line.startswith("id: "):
            last = line[4:]
        elif line == "event: note" and last is not None:
            yield last
        elif not line:
            last = None


def _raw_stream(server: Server, tok: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A stream opened on a raw socket that the test reads only when it wants to."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {tok}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    sock.settimeout(5)
    assert b" 200 " in sock.recv(200)
    return sock


# ---------------------------------------------------------------- 1. keys and tokens


def test_no_default_key_the_server_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SSELAB_SECRET",
                                                            "SSELAB_INSECURE_DEV_KEY")}
    env["PYTHONPATH"] = str(_PACKAGES)
    out = subprocess.run([sys.executable, "-m", "sims.cli", "serve", "--port", "1"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and "SSELAB_SECRET is not set" in out.stderr
    out = subprocess.run([sys.executable, "-m", "sims.cli", "token", "alice"], env={
        **env, "SSELAB_SECRET": "too-short"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "at least 32" in out.stderr


def test_dev_key_switch_warns_on_every_start(server_factory: Callable[..., Server]) -> None:
    server = server_factory(SSELAB_SECRET="", SSELAB_INSECURE_DEV_KEY="1",
                            SSELAB_LOG_LEVEL="WARNING")
    assert wait_for_sync(lambda: "SSELAB_INSECURE_DEV_KEY is set" in server.log_path.read_text())
    # the server signs with the dev key only: the test key's tokens are forged for it
    assert httpx.get(f"{server.url}/snapshot", headers=_bearer(token("a"))).status_code == 401


def wait_for_sync(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_token_attacks_get_clear_4xx(server_factory: Callable[..., Server], user: str,
                                     tmp_path: Path) -> None:
    server = server_factory(SSELAB_QUERY_TOKENS="true")
    url = server.url
    body = {"user": user, "type": "note", "data": {}}
    # a 10-year token is refused by the maximum lifetime
    decade = issue_token(SECRET, user, ttl=10 * 365 * 86400)
    response = httpx.get(f"{url}/snapshot", headers=_bearer(decade))
    assert response.status_code == 401 and "maximum" in response.json()["error"]
    # a publisher token in the query string never works on POST /events (nor in a stream URL)
    response = httpx.post(f"{url}/events", params={"access_token": PUBLISHER}, json=body)
    assert response.status_code == 401 and "only on GET /stream" in response.json()["error"]
    response = httpx.get(f"{url}/stream", params={"access_token": PUBLISHER})
    assert response.status_code == 401 and "user tokens" in response.json()["error"]
    # a sub with a NUL or a newline is refused at the door: 401, never a database error
    for sub in ("a\x00b", "a\nb"):
        forged = jwt.encode({"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 60,
                             "jti": "x"}, SECRET)
        response = httpx.get(f"{url}/snapshot", headers=_bearer(forged))
        assert response.status_code == 401 and "sub" in response.json()["error"]
    # PyJWT's text never reaches the client
    response = httpx.get(f"{url}/snapshot", headers=_bearer("a.b.c"))
    assert response.json() == {"error": "invalid token", "hint": "the token is forged or malformed"}
    # publisher scope
    scoped = token("pub", role="publisher", topics=("team-*",))
    assert httpx.post(f"{url}/events", headers=_bearer(scoped), json={
        **body, "user": "team-a"}).status_code == 201
    response = httpx.post(f"{url}/events", headers=_bearer(scoped), json=body)
    assert response.status_code == 403 and "scope" in response.json()["error"]
    # tokens in the access log are redacted (uvicorn --factory logs the query string)
    logged = Server(server.env["SSELAB_NAMESPACE"], tmp_path, {"SSELAB_LOG_LEVEL": "INFO"},
                    access_log=True).start()
    try:
        ticket = httpx.post(f"{logged.url}/stream/ticket", headers=_bearer(token(user))).json()
        httpx.get(f"{logged.url}/stream", params={"ticket": "bogus." + ticket["ticket"]})
        httpx.get(f"{logged.url}/snapshot", params={"access_token": token(user)})
        assert wait_for_sync(lambda: "REDACTED" in logged.log_path.read_text())
        text = logged.log_path.read_text()
        assert ticket["ticket"] not in text and token(user).split(".")[0] + "." not in text
    finally:
        logged.kill()


def test_revoked_token_ends_open_streams_and_is_refused(server_factory: Callable[..., Server],
                                                        user: str) -> None:
    server = server_factory(SSELAB_REAUTH_INTERVAL_S="0.3")
    mine, other = token(user), token(user + "-other")
    ticket = httpx.post(f"{server.url}/stream/ticket", headers=_bearer(mine)).json()["ticket"]

    async def main() -> None:
        from redis.asyncio import Redis

        from service.revocation import Revocations
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("GET", f"{server.url}/stream", headers=_bearer(mine)) as a, \
                    http.stream("GET", f"{server.url}/stream", headers=_bearer(other)) as b:
                assert a.status_code == b.status_code == 200
                client = Redis.from_url(REDIS_URL)
                await Revocations(client, server.env["SSELAB_NAMESPACE"],
                                  max_ttl=86400).revoke_user(user)
                await client.aclose()
                async with asyncio.timeout(5):  # ended within the re-check interval
                    async for _ in a.aiter_bytes():
                        pass
                assert not b.is_closed  # the other user's stream keeps going
        # refused at the door now: the token and the tickets minted from it
        for response in (httpx.get(f"{server.url}/snapshot", headers=_bearer(mine)),
                         httpx.get(f"{server.url}/stream", params={"ticket": ticket})):
            assert response.status_code == 401 and "revoked" in response.json()["error"]
        assert server.metric("sselab_streams_ended_total", reason="revoked") >= 1

    asyncio.run(main())


# ---------------------------------------------------------------- 2. back-pressure


def test_a_stalled_reader_is_cut_off_bounded_and_others_lose_nothing(
        server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory(SSELAB_REPLAY_MAX_BYTES="1024", SSELAB_STREAM_BUFFER_BYTES="200000",
                            SSELAB_SEND_TIMEOUT_S="1")
    stalled = _raw_stream(server, token(user), rcvbuf=4096)  # opened, then never read
    frames_before = len(_frames(server, user + "-x", seconds=0.2))
    big = {"user": user, "type": "note", "data": "x" * 60_000}
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", f"{server.url}/stream", headers=_bearer(token(user))) as reader:
            ids = [http.post(f"{server.url}/events", json=big,
                             headers=_bearer(PUBLISHER)).json()["id"] for _ in range(60)]
            got: list[str] = []
            for event_id in _note_ids(reader.iter_lines()):
                got.append(event_id)
                if len(got) == len(ids):
                    break
    assert got == ids  # the reading stream lost nothing while the stalled one was cut
    assert wait_for_sync(lambda: server.metric("sselab_slow_consumers_total",
                                               reason="buffer") >= 1)
    assert wait_for_sync(lambda: server.metric("sselab_open_streams") == 0)
    stalled.close()
    assert frames_before >= 0


def test_a_stream_ends_at_token_expiry_even_unread(server_factory: Callable[..., Server],
                                                   user: str) -> None:
    server = server_factory(SSELAB_SEND_TIMEOUT_S="1")
    sock = _raw_stream(server, token(user, ttl=2), rcvbuf=4096)
    publish(server, user, 3)
    assert wait_for_sync(lambda: server.metric("sselab_open_streams") == 0, 8)
    assert server.metric("sselab_streams_ended_total", reason="expired") == 1
    sock.close()


# ---------------------------------------------------------------- 3. caps and pools


def test_stream_caps_answer_429_with_retry_after(server_factory: Callable[..., Server],
                                                 user: str) -> None:
    server = server_factory(SSELAB_MAX_STREAMS_PER_TOKEN="2", SSELAB_MAX_STREAMS_PER_ADDRESS="3")
    tok = token(user)
    socks = [_raw_stream(server, tok) for _ in range(2)]
    response = httpx.get(f"{server.url}/stream", headers=_bearer(tok))
    assert response.status_code == 429 and "token" in response.json()["error"]
    assert int(response.headers["retry-after"]) >= 1
    socks.append(_raw_stream(server, token(user)))  # another token: the address has room for one
    response = httpx.get(f"{server.url}/stream", headers=_bearer(token(user)))
    assert response.status_code == 429 and "address" in response.json()["error"]
    for sock in socks:
        sock.close()
    assert wait_for_sync(lambda: server.metric("sselab_open_streams") == 0)
    with httpx.stream("GET", f"{server.url}/stream", headers=_bearer(tok), timeout=5) as again:
        assert again.status_code == 200  # the caps count open streams, not history
    assert server.metric("sselab_requests_refused_total", reason="streams-per-token",
                         status="429") == 1


def test_postgres_down_answers_503_fast_and_readiness_tells(
        server_factory: Callable[..., Server], user: str) -> None:
    pg = psycopg_target()
    with TcpProxy(*pg) as proxy:
        server = server_factory(SSELAB_DATABASE_URL=_via(proxy.port), SSELAB_DB_CHECK_S="0.3",
                                SSELAB_DB_ACQUIRE_TIMEOUT_S="0.5")
        publish(server, user, 1)
        proxy.stall()  # Postgres goes silent (a black-holed host), new connections too ...
        proxy.cut()  # ... and the open ones break
        started = time.monotonic()
        response = httpx.post(f"{server.url}/events", headers=_bearer(PUBLISHER),
                              json={"user": user, "type": "note", "data": 1}, timeout=30)
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 10  # bounded by the acquire timeout, not 30 s
        response = httpx.get(f"{server.url}/stream", headers=_bearer(token(user)), timeout=30)
        assert response.status_code == 503 and "retry-after" in response.headers
        assert wait_for_sync(lambda: server.ready()[0] == 503, 5)
        body = server.ready()[1]
        assert body["database"] == "down" and not body["ready"]
        proxy.resume()
        assert wait_for_sync(lambda: server.ready()[0] == 200, 15)
        publish(server, user, 1)


def psycopg_target() -> tuple[str, int]:
    import psycopg.conninfo
    info = psycopg.conninfo.conninfo_to_dict(DATABASE_URL)
    return str(info.get("host", "127.0.0.1")), int(str(info.get("port") or 5432))


def _via(port: int) -> str:
    import psycopg.conninfo
    return psycopg.conninfo.make_conninfo(DATABASE_URL, host="127.0.0.1", port=port)


# ---------------------------------------------------------------- 5. the bus


def test_the_bus_refuses_injected_messages_and_keeps_its_link(
        server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory()
    channel = f"{server.env['SSELAB_NAMESPACE']}:events"
    r = redis_client()
    with httpx.Client(timeout=10) as http, \
            http.stream("GET", f"{server.url}/stream", headers=_bearer(token(user))) as reader:
        first = publish(server, user, 1)[0]
        nxt = EventId(EventId.parse(first).epoch, EventId.parse(first).seq + 1)
        unsigned = encode_message(LiveMessage(user, nxt, "note", '{"evil":1}', time.time()))
        wrong_key = encode_message(LiveMessage(user, nxt, "note", "{}", time.time()),
                                   bus_key("k" * 40))
        poison = [unsigned, wrong_key, b'{"topic":"' + user.encode() + b'","epoch":Infinity}',
                  b'{"topic":["a"],"epoch":1,"seq":1,"type":"t","data":"{}","at":1}',
                  encode_message(LiveMessage(user, EventId(nxt.epoch, 10**17), "note", "{}", 1.0),
                                 bus_key(SECRET)), b"\xff" * 10]
        for raw in poison:
            r.publish(channel, raw)
        real = publish(server, user, 1)[0]
        assert real == str(nxt)  # the injected copy of this id did not take its place
        seen: list[str] = []
        for event_id in _note_ids(reader.iter_lines()):
            seen.append(event_id)
            if len(seen) == 2:
                break
        assert seen == [first, real]
    assert server.metric("sselab_bus_rejected_total", reason="signature") == 5  # unsigned too
    assert server.metric("sselab_bus_rejected_total", reason="range") == 1
    assert server.metric("sselab_subscriber_reconnects_total") == 0  # the link never dropped
    assert server.ready()[0] == 200
    r.close()


def test_redis_acl_user_through_the_url(server_factory: Callable[..., Server], user: str) -> None:
    r = redis_client()
    name = f"sselab-acl-{user}"
    r.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", name, "on", ">acl-password-123", "~*", "&*", "+@all")
    try:
        url = REDIS_URL.replace("redis://", f"redis://{name}:acl-password-123@", 1)
        server = server_factory(SSELAB_REDIS_URL=url)
        with httpx.Client(timeout=10) as http, \
                http.stream("GET", f"{server.url}/stream", headers=_bearer(token(user))) as s:
            ids = publish(server, user, 1)
            assert next(_note_ids(s.iter_lines())) == ids[0]
        bad = server_factory(SSELAB_REDIS_URL=url.replace("acl-password-123", "wrong"))
        assert bad.ready()[0] == 503
        assert "password" not in json.dumps(bad.ready()[1]).lower()
    finally:
        r.execute_command("ACL", "DELUSER", name)  # type: ignore[no-untyped-call]
        r.close()


# ---------------------------------------------------------------- 6. input limits


def test_input_limits_and_idempotency(server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory(SSELAB_SNAPSHOT_MAX_BYTES="130000")
    url, pub = server.url, _bearer(PUBLISHER)

    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value]
        return value

    for data, says in ((nested(32), None), (nested(33), "deeper than 32"),
                       (nested(900), "deeper than 32"), (list(range(10_001)), "more than 10000")):
        response = httpx.post(f"{url}/events", headers=pub,
                              json={"user": user, "type": "note", "data": data})
        if says is None:
            assert response.status_code == 201
        else:
            assert response.status_code == 422 and says in response.text, response.text
    # snapshots stay readable and are paged within their byte cap
    big = [httpx.post(f"{url}/events", headers=pub, json={
        "user": user, "type": "note", "data": "y" * 60_000}).json()["id"] for _ in range(4)]
    auth = _bearer(token(user))
    page = httpx.get(f"{url}/snapshot", headers=auth, params={"limit": 100}).json()
    assert [e["id"] for e in page["events"]] == big[-2:] and page["more"]
    older = httpx.get(f"{url}/snapshot", headers=auth,
                      params={"limit": 100, "before": page["next_before"]}).json()
    assert [e["id"] for e in older["events"]][-2:] == big[:2] and not older["more"]
    # Idempotency-Key: a retried publish answers the first id; another body is refused
    body = {"user": user, "type": "note", "data": {"n": 1}}
    first = httpx.post(f"{url}/events", headers={**pub, "Idempotency-Key": "k-1"}, json=body)
    again = httpx.post(f"{url}/events", headers={**pub, "Idempotency-Key": "k-1"}, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    other = httpx.post(f"{url}/events", headers={**pub, "Idempotency-Key": "k-1"},
                       json={**body, "data": {"n": 2}})
    assert other.status_code == 422 and "different request" in other.text
    head = httpx.get(f"{url}/snapshot", headers=auth).json()["head"]
    assert head == first.json()["id"]  # one event, not two


def test_a_replay_over_its_byte_cap_signals_instead_of_buffering(
        server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory(SSELAB_REPLAY_MAX_BYTES="100000")
    ids = [httpx.post(f"{server.url}/events", headers=_bearer(PUBLISHER), json={
        "user": user, "type": "note", "data": "z" * 40_000}).json()["id"] for _ in range(4)]
    frames = _frames(server, user, last_event_id=ids[0], seconds=0.5)
    assert frames[0]["event"] == "replay-failed" and "byte limit" in frames[0]["data"]


# ---------------------------------------------------------------- 7-8. quiet health, CORS, shutdown


def test_quiet_health_protected_metrics_docs_off_and_cors(
        server_factory: Callable[..., Server]) -> None:
    quiet = server_factory(SSELAB_METRICS_TOKEN="m" * 20, SSELAB_DOCS="off",
                           SSELAB_CORS_ORIGINS="https://app.example.com")
    for path in ("/health", "/health/ready", "/health/live"):
        text = httpx.get(f"{quiet.url}{path}").text
        assert quiet.replica not in text and socket.gethostname() not in text
        assert str(quiet.proc.pid if quiet.proc else "") not in text.split('"')
    assert httpx.get(f"{quiet.url}/metrics").status_code == 401
    assert httpx.get(f"{quiet.url}/metrics", headers=_bearer("m" * 20)).status_code == 200
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(f"{quiet.url}{path}").status_code == 404
    allowed = httpx.options(f"{quiet.url}/stream/ticket", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-credentials" not in allowed.headers
    denied = httpx.get(f"{quiet.url}/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers
    debug = server_factory(SSELAB_DEBUG="1", SSELAB_METRICS="off")
    assert httpx.get(f"{debug.url}/health").json()["replica"] == debug.replica
    assert httpx.get(f"{debug.url}/metrics").status_code == 404


def test_retry_is_jittered_and_shutdown_ends_streams_cleanly(
        server_factory: Callable[..., Server], user: str) -> None:
    server = server_factory(SSELAB_RETRY_MS="1000")
    retries = set()
    for _ in range(6):
        frames = _read_first_line(server, token(user))
        assert frames.startswith("retry: ")
        retries.add(int(frames.split()[1]))
    assert len(retries) > 1 and all(500 <= r < 1500 for r in retries)
    body: list[bytes] = []
    with httpx.stream("GET", f"{server.url}/stream", headers=_bearer(token(user)),
                      timeout=10) as response:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for chunk in response.iter_bytes():  # a truncated chunked body would raise here
            body.append(chunk)
    assert b"".join(body).startswith(b"retry: ")
    assert server.proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal


def _read_first_line(server: Server, tok: str) -> str:
    with httpx.stream("GET", f"{server.url}/stream", headers=_bearer(tok), timeout=5) as r:
        for line in r.iter_lines():
            return line
    return ""
