"""The subscriber machine: every health against every input, all fixes on and all off.

With ``subscriber-health`` on, handled inputs keep the health rules (sentinel
timers only while healthy, detection by a missing sentinel, resync after being
down); with it off the subscriber only logs and arms nothing. Refusals name the
health and the input.
"""

from __future__ import annotations

import pytest
from machine_spaces import (
    FIXSETS,
    SUBSCRIBER_INPUT_KINDS,
    SUBSCRIBER_INPUTS,
    subscriber_config,
    subscriber_reachable,
    subscriber_representatives,
)

from model import subscriber as sb
from model.core import Action, CancelTimer, LocalProtocolError, Log, StartTimer
from model.fixes import Fixes

HEALTHS = list(sb.Health)

#: Refusals raised inside a handler: words naming the input, and the state.
GUARDS: dict[str, tuple[str, str]] = {
    "TimerFired(sentinel)": ("sentinel timer fired", "while {health}"),
    "TimerFired(sentinel-timeout)": ("sentinel timeout fired", "no sentinel outstanding"),
    "TimerFired(unknown)": ("unknown subscriber timer 'no-such-timer'", ""),
}


def check_refusal(fixes: Fixes, state: sb.SubscriberState, kind: str, event: sb.SubscriberInput,
                  exc: LocalProtocolError) -> None:
    """A refusal names the health and the input, and says what to do."""
    assert exc.message and exc.hint
    if not fixes.subscriber_health:
        assert isinstance(event, sb.TimerFired)
        assert "subscriber timer fired, but subscriber-health is off" in exc.message
        return
    if (state.health, type(event)) not in sb.TRANSITIONS:
        assert f"{state.health.value!r}" in exc.message
        assert type(event).__name__ in exc.message
        return
    names_input, names_state = GUARDS[kind]
    assert names_input in exc.message
    assert names_state.format(health=state.health.value) in exc.message


def check_handled(cfg: sb.SubscriberConfig, s: sb.SubscriberState, e: sb.SubscriberInput,
                  n: sb.SubscriberState, actions: list[Action]) -> None:
    """The rules every handled subscriber input keeps."""
    assert isinstance(n, sb.SubscriberState) and isinstance(n.health, sb.Health)
    assert all(isinstance(a, Action) for a in actions)
    hash(n)
    if not cfg.fixes.subscriber_health:  # the seed's code: an error handler that logs
        assert n == s
        assert all(isinstance(a, Log) for a in actions)
        assert bool(actions) is isinstance(e, sb.Reconnecting | sb.Closed | sb.Ended)
        assert sb.view(cfg, n, 0.0).state == "unmonitored"
        return
    changes = [a for a in actions if isinstance(a, sb.HealthChanged)]
    if n.health is s.health:
        assert not changes
    else:
        assert changes == [sb.HealthChanged(health=n.health, reason=n.reason)]
        logs = [a for a in actions if isinstance(a, Log)]
        assert logs and dict(logs[0].fields)["event"] == n.health.value  # structured fields
    started = {a.timer: a.at for a in actions if isinstance(a, StartTimer)}
    if n.health is sb.Health.HEALTHY and s.health is not sb.Health.HEALTHY:
        assert started.get(sb.SENTINEL) == e.now + cfg.sentinel_interval
    if started:
        assert n.health is sb.Health.HEALTHY  # sentinel timers only while healthy
    if n.outstanding is not None:
        assert n.health is sb.Health.HEALTHY
    if s.outstanding is not None and n.outstanding is None and not isinstance(
            e, sb.TimerFired):
        assert CancelTimer(timer=sb.SENTINEL_TIMEOUT) in actions
    published = [a for a in actions if isinstance(a, sb.PublishSentinel)]
    if published:
        assert isinstance(e, sb.TimerFired) and e.timer == sb.SENTINEL
        assert n.outstanding == published[0].token == (s.token + 1) % cfg.token_space
        assert started[sb.SENTINEL] == e.now + cfg.sentinel_interval
        if s.outstanding is None:
            assert started[sb.SENTINEL_TIMEOUT] == e.now + cfg.sentinel_timeout
    resubscribes = [a for a in actions if isinstance(a, sb.Resubscribe)]
    if isinstance(e, sb.TimerFired) and e.timer == sb.SENTINEL_TIMEOUT:
        assert n.health is sb.Health.UNHEALTHY and resubscribes and n.was_down
        assert "sentinel-timeout" in n.reason
        assert any(isinstance(a, Log) and a.level == "critical" for a in actions) or (
            s.health is sb.Health.UNHEALTHY)
    else:
        assert not resubscribes
    resyncs = [a for a in actions if isinstance(a, sb.ResyncStreams)]
    if resyncs:
        assert isinstance(e, sb.Ready) and s.was_down and cfg.fixes.resync_after_recovery
    if isinstance(e, sb.Ready) and s.health is not sb.Health.HEALTHY and s.was_down \
            and cfg.fixes.resync_after_recovery:
        assert resyncs
    view = sb.view(cfg, n, e.now)
    assert view.ready is (n.health is sb.Health.HEALTHY) and view.state == n.health.value


def states_for(fixset: str, health: sb.Health) -> list[sb.SubscriberState]:
    """Reachable states of this health (a plain one when the fix off never leaves starting)."""
    states = sorted((s for s in subscriber_reachable(fixset) if s.health is health), key=repr)
    if not states:
        assert fixset == "all-off"
        states = [sb.SubscriberState(health=health)]
    return states


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("kind", SUBSCRIBER_INPUT_KINDS)
@pytest.mark.parametrize("health", HEALTHS, ids=[h.value for h in HEALTHS])
def test_every_reachable_state_handles_or_refuses_every_input(
        health: sb.Health, kind: str, fixset: str) -> None:
    fixes = FIXSETS[fixset]
    cfg = subscriber_config(fixes)
    for state in states_for(fixset, health):
        for event in SUBSCRIBER_INPUT_KINDS[kind]:
            try:
                n, actions = sb.step(cfg, state, event)
            except LocalProtocolError as exc:
                check_refusal(fixes, state, kind, event, exc)
            else:
                check_handled(cfg, state, event, n, actions)


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("health", HEALTHS, ids=[h.value for h in HEALTHS])
def test_any_fields_are_handled_or_refused_never_crash(health: sb.Health, fixset: str) -> None:
    cfg = subscriber_config(FIXSETS[fixset])
    for state in (s for s in subscriber_representatives() if s.health is health):
        for event in SUBSCRIBER_INPUTS:
            try:
                n, actions = sb.step(cfg, state, event)
            except LocalProtocolError as exc:
                assert exc.message and exc.hint
            else:
                assert isinstance(n, sb.SubscriberState)
                assert all(isinstance(a, Action) for a in actions)


def test_every_health_is_reachable_with_the_fix() -> None:
    assert {s.health for s in subscriber_reachable("all-on")} == set(sb.Health)
    assert subscriber_reachable("all-off") == {sb.initial()}


def test_a_silent_death_is_detected_within_interval_plus_timeout() -> None:
    cfg = sb.SubscriberConfig()
    assert cfg.detection_bound == 35.0
    s, _ = sb.step(cfg, sb.initial(), sb.Ready(now=0.0))
    s, acts = sb.step(cfg, s, sb.TimerFired(timer=sb.SENTINEL, now=30.0))
    assert StartTimer(timer=sb.SENTINEL_TIMEOUT, at=35.0) in acts  # lost: the link is dead
    s, acts = sb.step(cfg, s, sb.TimerFired(timer=sb.SENTINEL_TIMEOUT, now=35.0))
    assert s.health is sb.Health.UNHEALTHY
    assert sb.Resubscribe(reason=s.reason) in acts
    assert sb.view(cfg, s, 35.0) == sb.HealthView(False, "unhealthy", s.reason, None)


def test_refusal_hint_lists_what_is_accepted() -> None:
    cfg = sb.SubscriberConfig()
    ended = sb.SubscriberState(health=sb.Health.ENDED)
    with pytest.raises(LocalProtocolError) as info:
        sb.step(cfg, ended, sb.Closed())
    assert "'ended'" in info.value.message and "Closed" in info.value.message
    accepted = sorted(t.__name__ for (h, t) in sb.TRANSITIONS if h is sb.Health.ENDED)
    assert info.value.hint == "accepted here: " + ", ".join(accepted)


def test_config_rejects_bad_timings() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        sb.SubscriberConfig(sentinel_timeout=0)
    with pytest.raises(ValueError, match="token_space must be at least 2"):
        sb.SubscriberConfig(token_space=1)
