"""The shells around the machines, on fake time with fake I/O: no servers, no sleeps.

Each test drives a shell the way the world would and checks that it carries out
the machine's actions: the replay it runs, the frames it writes, the timers it
arms, the sentinel it publishes and the stream it opens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import httpx
import pytest

from model.backoff import BackoffPolicy, Kind
from model.client import ClientConfig, Status
from model.core import EventId
from model.fixes import Fixes
from model.session import SessionConfig, TopicHead
from model.subscriber import SubscriberConfig
from service.bus import BadMessage, Bus, LiveMessage, bus_key, decode_message, encode_message
from service.client import ClientEvent, EventStreamClient
from service.frames import encode_frame
from service.metrics import Metrics
from service.store import ReplayResult, StoredEvent
from service.stream import Outbox, StreamSession
from service.timers import FakeTimers

ALL_FIXES = Fixes()


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


Frame = tuple[str | None, str, str]


def parse(frame: bytes) -> Frame:
    """(id, event, data) of one encoded frame."""
    fields = dict(line.split(": ", 1) for line in frame.decode().split("\r\n") if ": " in line)
    return fields.get("id"), fields.get("event", ""), fields.get("data", "")


def drain(outbox: Outbox) -> list[Frame]:
    return [parse(f) for f in outbox.drain()]


def row(seq: int) -> StoredEvent:
    return StoredEvent(seq, "note", json.dumps({"n": seq}), 0.0)


# ---------------------------------------------------------------- the stream shell


def make_session(replay: Any, *, limit: int = 5, fixes: Fixes = ALL_FIXES
                 ) -> tuple[StreamSession, FakeTimers]:
    timers = FakeTimers()

    async def head(topic: str) -> TopicHead:
        return TopicHead(epoch=1, head=12)

    sess = StreamSession(topic="alice", timers=timers, replay=replay, read_head=head,
                         cfg=SessionConfig(replay_limit=limit, heartbeat_interval=1.0, fixes=fixes),
                         metrics=Metrics())
    return sess, timers


def test_stream_replays_within_the_limit_then_goes_live_in_order() -> None:
    async def main() -> None:
        queries: list[tuple[int, int | None, int | None]] = []

        async def replay(topic: str, after: int, upto: int | None, limit: int | None
                         ) -> ReplayResult:
            queries.append((after, upto, limit))
            return ReplayResult(tuple(row(s) for s in range(after + 1, (upto or 0) + 1)), 0)

        sess, _ = make_session(replay)
        # a live event arrives before Open: it is held, then ordered after the replay
        sess.live(LiveMessage("alice", EventId(1, 11), "note", '{"n":11}', 0.0))
        sess.open(EventId(1, 7), TopicHead(epoch=1, head=10))
        await settle()
        assert queries == [(7, 10, 6)]  # bounded: limit + 1 rows, up to the head
        ids = [f[0] for f in drain(sess.outbox)]
        assert ids == ["1-8", "1-9", "1-10", "1-11"]
    run(main)


def test_stream_truncates_a_large_gap_without_reading_and_sends_heartbeats() -> None:
    async def main() -> None:
        async def replay(*args: Any) -> ReplayResult:
            raise AssertionError("gap-from-head must not read rows")

        sess, timers = make_session(replay)
        sess.open(EventId(1, 0), TopicHead(epoch=1, head=10))
        frames = drain(sess.outbox)
        assert frames[0] is not None and frames[0][1] == "replay-truncated"
        assert json.loads(frames[0][2]) == {"head": "1-10", "limit": 5, "reason": "gap"}
        timers.advance(2.5)
        assert [f[1] for f in drain(sess.outbox)] == ["heartbeat", "heartbeat"]
        sess.close()
        assert timers.armed() == {}
    run(main)


@pytest.mark.parametrize("signal", [True, False])
def test_stream_replay_failure_is_signalled_only_with_the_fix(signal: bool) -> None:
    async def main() -> None:
        async def replay(*args: Any) -> ReplayResult:
            raise RuntimeError("canceling statement due to statement timeout")

        fixes = Fixes() if signal else Fixes().without("F2")
        sess, _ = make_session(replay, fixes=fixes)
        sess.open(EventId(1, 8), TopicHead(epoch=1, head=10))
        await settle()
        types = [f[1] for f in drain(sess.outbox)]
        assert types == (["replay-failed"] if signal else [])
    run(main)


def test_stream_resync_catches_up_from_the_cursor() -> None:
    async def main() -> None:
        async def replay(topic: str, after: int, upto: int | None, limit: int | None
                         ) -> ReplayResult:
            return ReplayResult(tuple(row(s) for s in range(after + 1, (upto or 0) + 1)), 0)

        sess, _ = make_session(replay)
        sess.open(None, TopicHead(epoch=1, head=10))
        sess.resync()  # the head reader says 12
        await settle()
        assert [f[0] for f in drain(sess.outbox) if f[1]] == ["1-11", "1-12"]
    run(main)


@pytest.mark.parametrize("on", [True, False])
def test_a_revoked_token_ends_the_stream_only_as_the_machine_says(on: bool) -> None:
    """The shell feeds Revoked; with reauthorize on the session ends, off it keeps streaming."""
    async def main() -> None:
        async def replay(topic: str, after: int, upto: int | None, limit: int | None
                         ) -> ReplayResult:
            return ReplayResult((), 0)

        fixes = ALL_FIXES if on else ALL_FIXES.without("reauthorize")
        sess, _ = make_session(replay, fixes=fixes)
        sess.open(None, TopicHead(epoch=1, head=10))
        sess.revoked("revoked")
        assert sess.closed is on
    run(main)


# ---------------------------------------------------------------- the bus shell


def test_bus_sentinel_round_trip_and_silent_death() -> None:
    async def main() -> None:
        timers = FakeTimers()
        resyncs: list[int] = []
        bus = Bus(redis_url="redis://127.0.0.1:1/0", subscriber_url="redis://127.0.0.1:1/0",
                  namespace="t", replica="r", metrics=Metrics(), timers=timers,
                  cfg=SubscriberConfig(sentinel_interval=1.0, sentinel_timeout=0.5),
                  on_resync=lambda: resyncs.append(1))
        sent: list[int] = []

        async def publish_sentinel(token: int) -> None:
            sent.append(token)

        bus._publish_sentinel = publish_sentinel  # type: ignore[method-assign]
        from model import subscriber
        bus.feed(subscriber.Ready(now=timers.now()))
        assert bus.view().ready
        timers.advance(1.0)
        await settle()
        assert sent == [1]
        bus.dispatch(bus.sentinel_channel, b"1")
        timers.advance(0.6)
        assert bus.view().ready and bus.view().last_sentinel_age == pytest.approx(0.6)
        timers.advance(0.4)  # second sentinel goes out and never comes back
        timers.advance(0.5)
        view = bus.view()
        assert not view.ready and view.state == "unhealthy" and "sentinel-timeout" in view.reason
        bus.feed(subscriber.Reconnecting(now=timers.now(), reason="torn down"))
        bus.feed(subscriber.Ready(now=timers.now()))
        assert bus.view().ready and resyncs == [1]
        # fan-out by topic
        got: list[LiveMessage] = []
        bus.register("alice", got.append)
        msg = LiveMessage("alice", EventId(1, 3), "note", "{}", 1.5)
        bus.dispatch(bus.events_channel, encode_message(msg))
        bus.dispatch(bus.events_channel, encode_message(msg._replace(topic="bob")))
        assert [m._replace(frame=b"") for m in got] == [msg]
        assert got[0].frame == b"id: 1-3\r\nevent: note\r\ndata: {}\r\n\r\n"  # encoded once
        assert decode_message(encode_message(msg)) == msg
        timers.cancel_all()
        await bus.publisher.aclose()
    run(main)


# ---------------------------------------------------------------- the client shell


class FakeServer:
    """An httpx transport whose /stream frames the test pushes, and a /snapshot."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status = 200
        self.queues: list[asyncio.Queue[bytes | None]] = []
        self.head = "1-0"

    def push(self, text: str, index: int = -1) -> None:
        self.queues[index].put_nowait(text.encode())

    def end(self, index: int = -1) -> None:
        self.queues[index].put_nowait(None)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/snapshot":
            return httpx.Response(200, json={"head": self.head, "events": []})
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "no"})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queues.append(queue)

        async def body() -> AsyncIterator[bytes]:
            while (chunk := await queue.get()) is not None:
                yield chunk

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def make_client(server: FakeServer, **config: Any) -> tuple[EventStreamClient, FakeTimers,
                                                            list[ClientEvent], list[Status]]:
    timers = FakeTimers()
    events: list[ClientEvent] = []
    statuses: list[Status] = []
    cfg = ClientConfig(heartbeat_timeout=1.0, heartbeat_check_interval=0.25,
                       policy=BackoffPolicy(kind=Kind.EXPONENTIAL, base=0.1, cap=0.4), **config)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handler))
    client = EventStreamClient("http://sselab.test", lambda: "tok", config=cfg, timers=timers,
                               rng=lambda: 0.0, http=http, on_event=events.append,
                               on_status=lambda s, a: statuses.append(s))
    return client, timers, events, statuses


def test_client_delivers_once_and_reconnects_from_its_cursor_after_silence() -> None:
    async def main() -> None:
        server = FakeServer()
        client, timers, events, statuses = make_client(server)
        client.start()
        await settle()
        assert client.status is Status.CONNECTED
        server.push('id: 1-1\nevent: note\ndata: {"a":1}\n\n')
        server.push('id: 1-1\nevent: note\ndata: {"a":1}\n\n')  # duplicate: not delivered
        server.push("event: heartbeat\ndata: {}\n\n")
        await settle()
        assert [e.id for e in events] == [EventId(1, 1)] and events[0].data == {"a": 1}
        timers.advance(1.0)  # silence: the monitor reconnects at once
        await settle()
        assert client.opens == 2 and server.requests[-1].headers["last-event-id"] == "1-1"
        assert server.requests[-1].headers["authorization"] == "Bearer tok"
        assert statuses == [Status.CONNECTING, Status.CONNECTED, Status.CONNECTING,
                            Status.CONNECTED]
        await client.aclose()
    run(main)


def test_client_fails_after_max_attempts_and_recovers_through_a_snapshot() -> None:
    async def main() -> None:
        server = FakeServer()
        server.status = 503
        client, timers, _, _statuses = make_client(server, max_attempts=3)
        client.start()
        for _ in range(5):
            await settle()
            timers.advance(0.5)
        assert client.status is Status.FAILED and client.opens == 3
        assert client.state.last_event_id is None
        server.status, server.head = 200, "1-9"
        client.recover()
        await settle()
        paths = [r.url.path for r in server.requests[-2:]]
        assert paths == ["/snapshot", "/stream"]
        assert server.requests[-2].url.params["head_first"] == "true"
        assert server.requests[-1].headers["last-event-id"] == "1-9"
        assert client.live
        await client.aclose()
    run(main)


def test_client_rehydrates_on_replay_truncated() -> None:
    async def main() -> None:
        server = FakeServer()
        client, _, _, _ = make_client(server)
        client.start()
        await settle()
        server.head = "1-20"
        server.push('event: replay-truncated\ndata: {"head":"1-20","limit":5,"reason":"gap"}\n\n')
        await settle()
        assert server.requests[-1].url.path == "/snapshot"
        assert client.live and client.state.last_event_id == EventId(1, 20)
        await client.aclose()
    run(main)


# ---------------------------------------------------------------- back-pressure and trust


def test_outbox_is_bounded_in_frames_and_bytes_and_a_slow_consumer_is_ended() -> None:
    async def main() -> None:
        async def replay(topic: str, after: int, upto: int | None, limit: int | None
                         ) -> ReplayResult:
            return ReplayResult(tuple(row(s) for s in range(after + 1, (upto or 0) + 1)), 0)

        metrics = Metrics()
        sess, _ = make_session(replay)
        sess._metrics = metrics
        sess.outbox = Outbox(max_frames=4, max_bytes=10_000)
        sess.open(EventId(1, 0), TopicHead(epoch=1, head=0))
        for seq in range(1, 5):
            sess.live(LiveMessage("alice", EventId(1, seq), "note", "{}", 0.0))
        assert len(sess.outbox) == 4 and sess.outbox.ended is None
        sess.live(LiveMessage("alice", EventId(1, 5), "note", "{}", 0.0))  # the fifth does not fit
        assert sess.outbox.ended == "slow-consumer" and len(sess.outbox) == 0
        assert metrics.slow_consumers.labels(reason="buffer")._value.get() == 1
        assert await sess.outbox.get() is None  # the writer ends the stream at once
        big = Outbox(max_frames=100, max_bytes=100)
        assert big.put(b"x" * 60) and not big.put(b"y" * 60)  # bytes bound too
    run(main)


def test_failed_resync_head_read_ends_the_stream_through_the_machine() -> None:
    async def main() -> None:
        async def replay(*args: Any) -> ReplayResult:
            return ReplayResult((), 0)

        sess, _ = make_session(replay)
        sess.open(None, TopicHead(epoch=1, head=3))
        sess.resync_failed("OperationalError")
        assert sess.outbox.ended == "resync-failed" and sess.closed
    run(main)


def test_a_revoked_token_ends_the_stream_before_its_replay_runs() -> None:
    async def main() -> None:
        queries: list[int] = []

        async def replay(topic: str, after: int, *args: Any) -> ReplayResult:
            queries.append(after)
            return ReplayResult((), 0)

        async def revoked() -> bool:
            return False

        sess, _ = make_session(replay)
        sess._reauthorize = revoked
        sess.open(EventId(1, 2), TopicHead(epoch=1, head=4))
        await settle()
        assert queries == [] and sess.outbox.ended == "revoked"
    run(main)


def test_bus_refuses_what_it_cannot_trust_and_keeps_going() -> None:
    key = bus_key("k" * 32)
    msg = LiveMessage("alice", EventId(1, 3), "note", '{"a":1}', 1.5)
    assert decode_message(encode_message(msg, key), key) == msg
    bad = {
        "signature": [encode_message(msg), encode_message(msg, bus_key("o" * 32)),
                      encode_message(msg, key)[:-2] + b"}}"],
        "json": [b'{"topic":"a","epoch":Infinity,"seq":1,"type":"t","data":"{}","at":1}'],
        "schema": [b'{"topic":["a"],"epoch":1,"seq":1,"type":"t","data":"{}","at":1}',
                   b'{"topic":"a","epoch":1,"seq":1,"type":"heartbeat","data":"{}","at":1}',
                   b'{"topic":"a","epoch":1,"seq":1,"type":"t","data":"{}","at":1,"x":1}', b"[]"],
        "range": [b'{"topic":"a","epoch":1,"seq":100000000000000000,"type":"t","data":"{}",'
                  b'"at":1}', b'{"topic":"a","epoch":true,"seq":1,"type":"t","data":"{}","at":1}'],
    }
    for reason, raws in bad.items():
        for raw in raws:
            with pytest.raises(BadMessage) as exc:
                decode_message(raw, key if reason == "signature" else None)
            assert exc.value.reason == reason, raw

    async def main() -> None:
        metrics = Metrics()
        bus = Bus(redis_url="redis://127.0.0.1:1/0", subscriber_url="redis://127.0.0.1:1/0",
                  namespace="t", replica="r", metrics=metrics, timers=FakeTimers(),
                  cfg=SubscriberConfig(), key=key)
        got: list[LiveMessage] = []

        def broken(m: LiveMessage) -> None:
            raise RuntimeError("a bug in one stream")

        bus.register("alice", broken)
        bus.register("alice", got.append)
        for raw in (b"\xff", b'{"topic":"a","epoch":Infinity}', encode_message(msg)):
            bus.dispatch(bus.events_channel, raw)  # never raises: the link survives
        bus.dispatch(bus.events_channel, encode_message(msg, key))
        assert [m.event_id for m in got] == [msg.event_id]
        assert metrics.listener_errors._value.get() == 1
        assert metrics.bus_rejected.labels(reason="signature")._value.get() == 3
        await bus.publisher.aclose()
    run(main)


def test_frames_keep_unicode_line_separators_inside_their_data_line() -> None:
    frame = encode_frame("1-1", "note", '"a\u2028b"')
    assert frame == 'id: 1-1\r\nevent: note\r\ndata: "a\u2028b"\r\n\r\n'.encode()
    assert encode_frame(None, "x", "a\nb") == b"event: x\r\ndata: a\r\ndata: b\r\n\r\n"


# ---------------------------------------------------------------- the head probe


@pytest.mark.parametrize("on", [True, False], ids=["fix-on", "fix-off"])
def test_head_probe_reads_each_topic_once_and_streams_behind_it_catch_up(on: bool) -> None:
    """A publish lost after its commit: no live event comes; the probe's head brings it."""
    from service.app import Runtime

    async def main() -> None:
        async def replay(topic: str, after: int, upto: int | None, limit: int | None
                         ) -> ReplayResult:
            return ReplayResult(tuple(row(s) for s in range(after + 1, (upto or 0) + 1)), 0)

        reads: list[list[str]] = []

        class Heads:
            async def topic_heads(self, topics: list[str]) -> dict[str, TopicHead]:
                reads.append(topics)
                return {"alice": TopicHead(epoch=1, head=12), "bob": TopicHead(epoch=2, head=4)}

        fixes = Fixes() if on else Fixes().without("head-probe")
        metrics = Metrics()
        unused: Any = None  # the probe reads only the store and the open sessions
        rt = Runtime(settings=unused, metrics=metrics, store=cast(Any, Heads()), bus=unused,
                     revocations=unused, admission=unused, session_cfg=unused)
        alice = [make_session(replay, fixes=fixes)[0] for _ in range(2)]
        bob, _ = make_session(replay, fixes=fixes)
        bob.topic = "bob"
        for sess in alice:
            sess.open(None, TopicHead(epoch=1, head=10))  # 11 and 12 commit, never published
        bob.open(None, TopicHead(epoch=2, head=4))  # bob is up to date
        for sess in [*alice, bob]:
            drain(sess.outbox)
            rt.sessions[sess] = unused
        await rt.probe_heads()
        await settle()
        assert reads == [["alice", "bob"]]  # one read for every stream of every topic
        got = [[f[0] for f in drain(s.outbox) if f[2]] for s in alice]
        assert got == ([["1-11", "1-12"]] * 2 if on else [[], []])
        assert drain(bob.outbox) == []
        assert metrics.head_probes._value.get() == 1
        assert metrics.probe_catch_ups._value.get() == (2 if on else 0)
        await rt.probe_heads()  # caught up: nothing more
        await settle()
        assert [drain(s.outbox) for s in alice] == [[], []]
        assert metrics.probe_catch_ups._value.get() == (2 if on else 0)
    run(main)
