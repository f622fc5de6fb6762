"""Service pieces that need no servers: config, tokens, timers, CLI parsing, validation."""

from __future__ import annotations

import pytest

from model.fixes import Fixes
from service.api import PublishRequest, check_json
from service.auth import AuthError, issue_token, verify_token
from service.config import ConfigError, Settings
from service.timers import FakeTimers
from sims.cli import build_parser

KEY = "k" * 32


def test_settings_defaults_and_overrides() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.subscriber_redis_url == s.redis_url
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert (s.replay_limit, s.sentinel_interval_s, s.sentinel_timeout_s) == (1000, 30.0, 5.0)
    assert s.fixes == Fixes.all()
    s = Settings.from_env({"SSELAB_REPLAY_LIMIT": "5", "SSELAB_FIXES": "all,-F3",
                           "SSELAB_HEARTBEAT_S": "0.5"})
    assert s.replay_limit == 5 and not s.fixes.heartbeat_guard and s.heartbeat_s == 0.5
    assert s.session_config().replay_limit == 5
    assert s.client_config().heartbeat_timeout == 1.0


@pytest.mark.parametrize("env", [{"SSELAB_REPLAY_LIMIT": "0"}, {"SSELAB_REPLAY_LIMIT": "x"},
                                 {"SSELAB_FIXES": "F9"}, {"SSELAB_DB_SCHEMA": "a;drop"}])
def test_settings_refuse_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_tokens() -> None:
    token = issue_token(KEY, "alice", role="publisher", ttl=60)
    principal = verify_token(KEY, token)
    assert (principal.user, principal.role) == ("alice", "publisher")
    with pytest.raises(AuthError, match="expired"):
        verify_token(KEY, issue_token(KEY, "alice", ttl=10, now=1000.0))
    with pytest.raises(AuthError, match="invalid"):
        verify_token("o" * 32, token)
    with pytest.raises(AuthError, match="missing"):
        verify_token(KEY, None)


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
    ["token"], ["token", "a", "--ttl", "-1"], ["publish", "a", "t", "{bad"],
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
    args = build_parser().parse_args(["token", "bob", "--publisher", "--ttl", "60"])
    assert args.func(args) == 0
    principal = verify_token("s" * 32, capsys.readouterr().out.strip())
    assert (principal.user, principal.role) == ("bob", "publisher")
    args = build_parser().parse_args(["serve", "--fixes", "all,-F1", "--without", "F3"])
    assert not args.fixes.bounded_replay and args.without == ["heartbeat-guard"]
