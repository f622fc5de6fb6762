"""Service pieces that need no servers: config, tokens, timers, CLI parsing, validation."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import jwt
import pytest

from model.fixes import Fixes
from service.api import PublishRequest
from service.app import RedactTokens
from service.auth import AuthError, issue_ticket, issue_token, may_publish, verify_token
from service.config import DEV_SECRET, ConfigError, Settings, resolve_secret
from service.limits import Admission, check_json, too_deep
from service.timers import FakeTimers
from sims.cli import build_parser

KEY = "k" * 32


def test_settings_defaults_and_overrides() -> None:
    s = Settings.from_env({"SSELAB_SECRET": KEY})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.subscriber_redis_url == s.redis_url
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert (s.replay_limit, s.sentinel_interval_s, s.sentinel_timeout_s) == (1000, 30.0, 5.0)
    assert s.fixes == Fixes.all()
    s = Settings.from_env({"SSELAB_SECRET": KEY, "SSELAB_REPLAY_LIMIT": "5", "SSELAB_FIXES": "all,-F3",
                           "SSELAB_HEARTBEAT_S": "0.5"})
    assert s.replay_limit == 5 and not s.fixes.heartbeat_guard and s.heartbeat_s == 0.5
    assert s.session_config().replay_limit == 5
    assert s.client_config().heartbeat_timeout == 1.0


@pytest.mark.parametrize("env", [{"SSELAB_REPLAY_LIMIT": "0"}, {"SSELAB_REPLAY_LIMIT": "x"},
                                 {"SSELAB_FIXES": "F9"}, {"SSELAB_DB_SCHEMA": "a;drop"}])
def test_settings_refuse_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"SSELAB_SECRET": KEY, **env})


def test_tokens() -> None:
    token = issue_token(KEY, "alice", role="publisher", ttl=60, topics=["team-*", "bob"])
    principal = verify_token(KEY, token)
    assert (principal.user, principal.role) == ("alice", "publisher") and principal.token_id
    assert may_publish(principal, "team-a") and may_publish(principal, "bob")
    assert not may_publish(principal, "carol")
    assert not may_publish(verify_token(KEY, issue_token(KEY, "u")), "u")  # users never publish
    with pytest.raises(ValueError, match="needs topics"):
        issue_token(KEY, "alice", role="publisher")
    with pytest.raises(AuthError, match="expired"):
        verify_token(KEY, issue_token(KEY, "alice", ttl=10, now=1000.0))
    with pytest.raises(AuthError, match="invalid") as exc:
        verify_token("o" * 32, token)
    assert "Signature" not in exc.value.message  # PyJWT's own text never reaches a client
    with pytest.raises(AuthError, match="missing"):
        verify_token(KEY, None)
    # the server's maximum lifetime
    ten_years = issue_token(KEY, "alice", ttl=10 * 365 * 86400)
    with pytest.raises(AuthError, match="lifetime over the maximum"):
        verify_token(KEY, ten_years, max_ttl=86400)
    # sub is validated like a publish's user: no NUL, no newline, not empty, not huge
    for sub in ("a\x00b", "a\nb", "", "x" * 201):
        forged = jwt.encode({"sub": sub, "iat": 1, "exp": 2**40, "jti": "j"}, KEY)
        with pytest.raises(AuthError, match="bad 'sub'"):
            verify_token(KEY, forged)
    # a token without an id cannot be revoked, so it is refused
    with pytest.raises(AuthError, match="'jti' claim is missing"):
        verify_token(KEY, jwt.encode({"sub": "a", "iat": 1, "exp": 2**40}, KEY))


def test_a_remembered_token_still_expires_and_nothing_else_is_remembered() -> None:
    token = issue_token(KEY, "alice", role="publisher", ttl=60, now=1000.0, topics=["*"])
    first = verify_token(KEY, token, now=1001.0, max_ttl=3600)
    assert verify_token(KEY, token, now=1050.0, max_ttl=3600) == first  # from the cache
    with pytest.raises(AuthError, match="token expired"):
        verify_token(KEY, token, now=1060.0, max_ttl=3600)  # exp is checked on every use
    with pytest.raises(AuthError, match="'iat' is in the future"):
        verify_token(KEY, token, now=900.0, max_ttl=3600)  # and iat
    with pytest.raises(AuthError, match="lifetime over the maximum"):
        verify_token(KEY, token, now=1001.0, max_ttl=30)  # other options: checked afresh
    with pytest.raises(AuthError, match="invalid token"):
        verify_token("o" * 32, token, now=1001.0, max_ttl=3600)  # another key: checked afresh
    with pytest.raises(AuthError, match="a stream ticket is not a bearer token"):
        verify_token(KEY, issue_ticket(KEY, first, ttl=30, now=1001.0), now=1002.0)
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):  # a failure is never remembered as a pass
        with pytest.raises(AuthError, match="invalid token"):
            verify_token(KEY, forged, now=1001.0, max_ttl=3600)


def test_stream_tickets_are_short_lived_stream_only_and_keep_their_parent() -> None:
    parent = verify_token(KEY, issue_token(KEY, "alice", ttl=600, now=1000.0), now=1000.0)
    ticket = issue_ticket(KEY, parent, ttl=30, now=1000.0)
    got = verify_token(KEY, ticket, ticket=True, now=1010.0)
    assert got.ticket and got.user == "alice" and got.token_id == parent.token_id
    assert got.expires_at == parent.expires_at  # the stream still ends with its parent
    with pytest.raises(AuthError, match="expired"):
        verify_token(KEY, issue_ticket(KEY, parent, ttl=1, now=time.time() - 10), ticket=True)
    with pytest.raises(AuthError, match="not a bearer token"):
        verify_token(KEY, ticket, now=1010.0)  # a ticket is no bearer token
    with pytest.raises(AuthError, match="not a stream ticket"):
        verify_token(KEY, issue_token(KEY, "alice"), ticket=True)


def test_no_default_key() -> None:
    with pytest.raises(ConfigError, match="SSELAB_SECRET is not set"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({"SSELAB_SECRET": "short"})
    with pytest.raises(ConfigError):
        Settings()  # no key built in, programmatically either
    dev = Settings.from_env({"SSELAB_INSECURE_DEV_KEY": "1"})
    assert dev.insecure_dev_key and dev.secret == DEV_SECRET
    assert resolve_secret({"SSELAB_SECRET": KEY}) == (KEY, False)
    with pytest.raises(ConfigError, match="exact origin"):
        Settings.from_env({"SSELAB_SECRET": KEY, "SSELAB_CORS_ORIGINS": "*"})
    with pytest.raises(ConfigError, match="SSELAB_STREAM_BUFFER_FRAMES"):
        Settings.from_env({"SSELAB_SECRET": KEY, "SSELAB_STREAM_BUFFER_FRAMES": "100"})


def test_fake_timers_fire_in_order_and_honour_cancel_and_rearm() -> None:
    timers = FakeTimers()
    fired: list[str] = []
    timers.start("a", 2.0, lambda: fired.append("a"))
    timers.start("b", 1.0, lambda: fired.append("b"))
    timers.start("c", 1.5, lambda: fired.append("c"))
    timers.cancel("c")
    timers.start("a", 3.0, lambda: fired.append("a2"))  # re-arm replaces
    timers.advance(2.5)
    assert fired == ["b"] and timers.now() == 2.5
    timers.advance(1.0)
    assert fired == ["b", "a2"] and timers.armed() == {}


def test_publish_validation() -> None:
    PublishRequest(user="alice", type="note", data={"x": [1, None]})
    for bad in ({"user": "", "type": "note", "data": 1},
                {"user": "a", "type": "heartbeat", "data": 1},
                {"user": "a", "type": "bad type", "data": 1},
                {"user": "a\x00", "type": "note", "data": 1},
                {"user": "a", "type": "note"}):
        with pytest.raises(ValueError):
            PublishRequest(**bad)
    for value in (float("nan"), {"k": ["\x00"]}, float("inf")):
        with pytest.raises(ValueError):
            check_json(value)


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "x"], ["serve", "--fixes", "all,-F9"], ["serve", "--without", "nope"],
    ["token", "a", "--ttl", "-1"], ["publish", "a", "t", "{bad"],
    ["listen", "--last-event-id", "1-x"], ["listen", "--max-attempts", "0"],
])
def test_cli_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_token_prints_a_verifiable_token(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSELAB_SECRET", "s" * 32)
    args = build_parser().parse_args(["token", "bob", "--publisher", "--topic", "team-*",
                                      "--ttl", "60"])
    assert args.func(args) == 0
    principal = verify_token("s" * 32, capsys.readouterr().out.strip())
    assert (principal.user, principal.role, principal.topics) == ("bob", "publisher", ("team-*",))
    for argv, says in ((["token"], "USER is required"),
                       (["token", "bob", "--publisher"], "needs --topic"),
                       (["token", "bob", "--ttl", "999999"], "maximum lifetime"),
                       (["token", "a\nb"], "no control characters")):
        args = build_parser().parse_args(argv)
        assert args.func(args) == 2 and says in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--fixes", "all,-F1", "--without", "F3"])
    assert not args.fixes.bounded_replay and args.without == ["heartbeat-guard"]


@pytest.mark.parametrize("command", [["token", "bob"], ["publish", "bob", "t", "{}"],
                                     ["listen", "--count", "1"], ["serve"]])
def test_clis_refuse_to_run_without_a_key(command: list[str], capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSELAB_SECRET", raising=False)
    monkeypatch.delenv("SSELAB_INSECURE_DEV_KEY", raising=False)
    args = build_parser().parse_args(command)
    assert args.func(args) == 2
    assert "SSELAB_SECRET is not set" in capsys.readouterr().err


def test_cli_dev_key_warns_on_every_run(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSELAB_SECRET", raising=False)
    monkeypatch.setenv("SSELAB_INSECURE_DEV_KEY", "1")
    for _ in range(2):
        args = build_parser().parse_args(["token", "bob"])
        assert args.func(args) == 0
        out = capsys.readouterr()
        assert "development key" in out.err and verify_token(DEV_SECRET, out.out.strip())


def test_json_limits_and_the_raw_depth_scan() -> None:
    nested: object = 1
    for _ in range(33):
        nested = [nested]
    with pytest.raises(ValueError, match="deeper than 32"):
        check_json(nested)
    check_json(nested, max_depth=33)
    with pytest.raises(ValueError, match="more than 10 values"):
        check_json(list(range(10)), max_nodes=10)
    assert too_deep(b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", 32)
    assert not too_deep(b'{"a": "' + b"[" * 40 + b'"}', 32)  # brackets inside strings do not count
    assert not too_deep(b'[[["\\\\"]]]', 3)


def test_admission_caps_per_token_address_and_process() -> None:
    caps = Admission(per_token=2, per_address=3, total=4)
    assert [caps.admit("t1", "a") for _ in range(3)] == [None, None, "token"]
    assert caps.admit("t2", "a") is None and caps.admit("t3", "a") == "address"
    assert caps.admit("t3", "b") is None and caps.admit("t4", "c") == "process"
    caps.release("t1", "a")
    assert caps.admit("t4", "c") is None and caps.open == 4


def test_access_log_redaction() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/stream?ticket=abc.def&last_event_id=1-2",
                                "1.1", 200), None)
    assert RedactTokens().filter(record)
    assert "abc.def" not in record.getMessage() and "ticket=REDACTED&last_event_id=1-2" in \
        record.getMessage()


def test_deny_list_answers_are_cached_for_a_bounded_time_and_revocations_here_clear_them() -> None:
    """``is_revoked`` reads Redis at most once per token per ``cache_s``; a sweep reads fresh."""
    import asyncio

    from service.auth import Principal
    from service.revocation import Revocations

    class FakeRedis:
        def __init__(self) -> None:
            self.values: dict[str, str] = {}
            self.reads = 0

        async def mget(self, keys: list[str]) -> list[str | None]:
            self.reads += 1
            return [self.values.get(k) for k in keys]

        async def set(self, key: str, value: str, ex: int) -> None:
            self.values[key] = value

    async def main() -> None:
        now = [100.0]
        redis = FakeRedis()
        deny = Revocations(redis, "ns", max_ttl=3600, cache_s=1.0,  # type: ignore[arg-type]
                           clock=lambda: now[0])
        alice = Principal(user="alice", role="user", expires_at=0.0, token_id="t1",
                          issued_at=50.0)
        assert [await deny.is_revoked(alice) for _ in range(5)] == [False] * 5
        assert redis.reads == 1  # one read serves the burst
        redis.values["ns:revoked:jti:t1"] = "1"  # revoked by another replica
        now[0] += 0.9
        assert not await deny.is_revoked(alice)  # stale, within the bound
        now[0] += 0.1
        assert await deny.is_revoked(alice)  # never staler than cache_s
        bob = Principal(user="bob", role="user", expires_at=0.0, token_id="t2", issued_at=50.0)
        assert not await deny.is_revoked(bob)
        await deny.revoke_user("bob")  # revoked through this process: at once
        assert await deny.is_revoked(bob)
        carol = Principal(user="carol", role="user", expires_at=0.0, token_id="t3",
                          issued_at=50.0)
        assert not await deny.is_revoked(carol)
        redis.values["ns:revoked:jti:t3"] = "1"
        assert await deny.revoked([carol]) == [True]  # the sweep reads Redis and refreshes
        assert await deny.is_revoked(carol)

    asyncio.run(main())


def test_virtual_time_jumps_to_the_next_timer_and_names_a_deadlock() -> None:
    import asyncio

    from service.testing.virtual_time import run_virtual

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        loop.call_at(7.5, lambda: seen.append(loop.time()))
        await asyncio.sleep(3600)
        seen.append(loop.time())
        return seen

    assert run_virtual(main()) == [7.5, 3600.0]  # an hour of loop time, exactly

    async def stuck() -> None:
        await asyncio.get_running_loop().create_future()  # nothing will ever set it

    with pytest.raises(RuntimeError, match="no timer is armed"):
        run_virtual(stuck())


def test_tick_timers_coalesce_only_their_names_never_early_at_most_a_tick_late() -> None:
    import asyncio
    import itertools

    from service.testing.virtual_time import run_virtual
    from service.timers import TickTimers

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tick = 0.05
        fired: list[tuple[str, float, float]] = []
        streams = [TickTimers(tick, frozenset({"hb"})) for _ in range(20)]
        start = loop.time()
        for i, timers in enumerate(streams):
            at = start + 0.01 + i * 0.003
            timers.start("hb", at, lambda i=i, at=at: fired.append((f"hb{i}", at, loop.time())))
        streams[0].start("hb", start + 0.02, lambda: fired.append(("rearmed", start + 0.02,
                                                                    loop.time())))
        streams[1].cancel("hb")
        streams[2].start("exact", start + 0.013, lambda: fired.append(("exact", start + 0.013,
                                                                       loop.time())))
        streams[3].cancel_all()

        def boom() -> None:
            raise RuntimeError("one callback fails")
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        streams[4].start("hb", start + 0.02, boom)
        await asyncio.sleep(0.25)
        names = {name for name, _, _ in fired}
        assert "hb0" not in names and "rearmed" in names  # re-arming replaced it
        assert "hb1" not in names and "hb3" not in names and "hb4" not in names
        assert {f"hb{i}" for i in range(5, 20)} <= names
        assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)
        for name, at, when in fired:
            assert when >= at - 1e-6, name  # never early
            if name != "exact":
                assert when <= at + tick, name  # at most a tick late
        # Timers due in the same tick fire together: 20 deadlines over 0.07 s, few ticks.
        whens = sorted(when for name, _, when in fired if name.startswith("hb"))
        passes = 1 + sum(b - a > 0.02 for a, b in itertools.pairwise(whens))
        assert passes <= 3, whens

    run_virtual(main())  # fake time: the sleeps below take none


def test_tick_timers_push_back_lazily_and_pull_forward_at_once() -> None:
    import asyncio

    from service.timers import _WHEELS, TickTimers

    loop = asyncio.new_event_loop()  # never run: the test plays the ticks itself
    try:
        timers = TickTimers(1.0, frozenset({"hb"}), loop=loop)
        wheel = _WHEELS[loop][1.0]
        fired: list[str] = []

        def entries() -> dict[int, int]:
            return {slot: len(e) for slot, e in wheel.slots.items() if e}

        timers.start("hb", 10.2, lambda: fired.append("first"))
        for i in range(100):  # a busy stream: every frame pushes the heartbeat back
            timers.start("hb", 10.2 + i * 0.05, lambda: fired.append("latest"))
        assert entries() == {11: 1}  # still one entry, on the first deadline's tick
        wheel._fire(11)  # that tick comes: the deadline (15.15) moved on, so no fire
        assert fired == [] and entries() == {16: 1} and timers.armed("hb")
        wheel._fire(16)
        assert fired == ["latest"] and not timers.armed("hb") and entries() == {}
        timers.start("hb", 30.0, lambda: fired.append("late"))
        timers.start("hb", 20.0, lambda: fired.append("early"))  # earlier: moved at once
        assert entries() == {20: 1}
        wheel._fire(20)
        assert fired[-1] == "early" and not timers.armed("hb")
        timers.start("hb", 40.0, lambda: fired.append("cancelled"))
        timers.start("hb", 45.0, lambda: fired.append("cancelled"))
        timers.cancel("hb")
        wheel._fire(40)
        wheel._fire(45)
        assert "cancelled" not in fired and entries() == {}
    finally:
        loop.close()


def test_a_blocked_send_times_out_on_the_tick_and_quick_ones_arm_one_watch() -> None:
    import asyncio

    from sse_starlette.sse import SendTimeoutError

    from service.api import COALESCED_TIMERS, SEND_WATCH, EventStream
    from service.testing.virtual_time import run_virtual
    from service.timers import _WHEELS, TickTimers

    async def main() -> None:
        loop = asyncio.get_running_loop()
        timers = TickTimers(0.01, COALESCED_TIMERS)

        async def nothing() -> AsyncIterator[bytes]:
            yield b""

        stream = EventStream(None, None, nothing(), timers=timers,  # type: ignore[arg-type]
                             send_timeout=0.1)
        sent: list[object] = []

        async def quick(message: object) -> None:
            sent.append(message)

        for _ in range(100):
            await stream._send_with_timeout(quick, {"type": "http.response.body"})
        assert len(sent) == 100
        # a hundred sends, one watch on the wheel (no deadline per send)
        assert sum(len(entries) for entries in _WHEELS[loop][0.01].slots.values()) == 1
        assert timers.armed(SEND_WATCH)
        await asyncio.sleep(0.15)  # the watch finds no send pending and is not re-armed
        assert not timers.armed(SEND_WATCH)

        async def blocked(message: object) -> None:
            await asyncio.sleep(3600)

        started = loop.time()
        with pytest.raises(SendTimeoutError):
            await stream._send_with_timeout(blocked, {"type": "http.response.body"})
        assert 0.1 <= loop.time() - started <= 0.1 + 0.01 + 1e-9  # cut off within a tick
        # the task that was cut off is not left cancelled: it goes on (to end the stream)
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
        await asyncio.sleep(0)

        # a send that is slow but finishes within the timeout is not cut off
        async def slow(message: object) -> None:
            await asyncio.sleep(0.05)

        for _ in range(4):
            await stream._send_with_timeout(slow, {"type": "http.response.body"})

    run_virtual(main())  # fake time: the sleeps below take none
