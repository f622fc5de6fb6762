"""The seed's five verification steps, each with its fix on (passes) and off (shows the bug).

Each test runs the scripted scenario of ``sims.seed`` through the real machines on
fake time over a fake lossy link. The fix-on assertions are exact (the counter
equals the attempts made, detection within 35 s, ``replay-failed`` seen and a
re-hydration started, ...), so deleting any one fix's logic from ``model/`` makes
its test fail; the fix-off assertions pin the bug the seed describes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from model.fixes import FIXES, Fixes
from sims.seed import (
    SCENARIOS,
    Outcome,
    heartbeat_race,
    max_reconnect,
    redis_health,
    replay_failure,
    replay_limit,
    run_scenario,
)

FIX_STATES = pytest.mark.parametrize("fix_on", [True, False], ids=["fix-on", "fix-off"])


def fixes_for(alias: str, fix_on: bool) -> Fixes:
    """All fixes on, or all but the one named."""
    return Fixes() if fix_on else Fixes().without(alias)


def check_prediction(outcome: Outcome, fix_on: bool) -> None:
    """The outcome agrees with itself: fix on shows the fix only, fix off the bug only."""
    assert outcome.fix_on is fix_on
    assert outcome.as_predicted
    assert outcome.fixed is fix_on
    assert outcome.bug_shown is not fix_on
    assert outcome.verdict().startswith("fix on: ok" if fix_on else "fix off: BUG shown")


@FIX_STATES
def test_verify_replay_limit(fix_on: bool) -> None:
    """Replay limit 5, ten events missed: replay-truncated, then the client re-hydrates."""
    out = replay_limit(fixes_for("F1", fix_on))
    f = out.facts
    assert (f["replay_limit"], f["missed_while_away"]) == (5, 10)
    if fix_on:
        assert f["truncated"] is True
        assert f["rehydrated"] is True
        assert f["unbounded_query"] is False
        assert f["rows_read"] == 0  # gap-from-head: the stale cursor costs no rows at all
        assert f["replayed_row_by_row"] == 0
        assert (f["cursor"], f["missing"], f["live"]) == ("0-12", 0, True)
        texts = [s.text for s in out.steps if s.actor == "client"]
        signal = next(i for i, t in enumerate(texts) if t.startswith("ReplayTruncated("))
        assert "StartRehydrate(head_first=True)" in texts[signal]
        assert "RehydrateDone(head=0-11)" in texts[signal + 1]
    else:
        assert f["unbounded_query"] is True and f["largest_read"] == 10 > 5 + 1
        assert f["truncated"] is False and f["rehydrated"] is False
        assert f["replayed_row_by_row"] == 10
    check_prediction(out, fix_on)


def test_verify_replay_limit_through_the_row_limit() -> None:
    """Without gap-from-head the query itself is bounded: it reads exactly limit + 1 rows."""
    out = replay_limit(Fixes().without("gap-from-head"))
    f = out.facts
    assert (f["queries"], f["largest_read"], f["unbounded_query"]) == (1, 6, False)
    assert f["truncated"] is True and f["rehydrated"] is True
    assert (f["replayed_row_by_row"], f["missing"], f["cursor"]) == (0, 0, "0-12")
    check_prediction(out, True)


@FIX_STATES
def test_verify_replay_failure(fix_on: bool) -> None:
    """The replay query throws: replay-failed reaches the client, which re-hydrates."""
    out = replay_failure(fixes_for("F2", fix_on))
    f = out.facts
    assert f["query_failed"] is True
    if fix_on:
        assert f["replay_failed_sent"] is True
        assert f["rehydrated"] is True
        assert (f["cursor"], f["missing"], f["live"]) == ("0-5", 0, True)
        texts = [s.text for s in out.steps if s.actor == "client"]
        assert any(t.startswith("ReplayFailed(") and "StartRehydrate(" in t for t in texts)
    else:
        assert f["replay_failed_sent"] is False and f["rehydrated"] is False
        # the bug: live, and silently missing the three events the replay should have sent
        assert (f["live"], f["missing"], f["missing_ids"]) == (True, 3, "0-2, 0-3, 0-4")
    check_prediction(out, fix_on)


@FIX_STATES
def test_verify_heartbeat_race(fix_on: bool) -> None:
    """The heartbeat check fires while a reconnect is in flight: the counter stays put."""
    out = heartbeat_race(fixes_for("F3", fix_on))
    f = out.facts
    assert f["attempts_made"] == 1
    if fix_on:
        assert f["counter"] == f["attempts_made"] == 1
        assert f["counter_when_opened"] == 1
        assert f["checks_while_connecting"] == 0
        assert f["monitor_stopped_before_reconnect"] is True
        assert f["probe_counter_delta"] == 0  # the seed's own unit test
        assert f["live"] is True
    else:
        assert f["counter"] == 6 > f["attempts_made"]  # "jumps to 5+ in seconds"
        assert f["checks_while_connecting"] == 5
        assert f["probe_counter_delta"] == 1
    check_prediction(out, fix_on)


@FIX_STATES
def test_verify_redis_health(fix_on: bool) -> None:
    """The subscriber's link dies silently: detected within 35 s (30 s + 5 s) of fake time."""
    out = redis_health(fixes_for("F4", fix_on))
    f = out.facts
    assert f["died_at"] == 30.5 and f["detection_bound"] == 35.0
    if fix_on:
        assert f["detected_at"] == 65.0
        delay = f["detection_delay"]
        assert isinstance(delay, float) and 0 < delay <= 35.0
        assert f["resubscribed"] == 1 and f["resynced"] is True
        assert (f["health"], f["ready"], f["missing"], f["recovered"]) == ("healthy", True, 0, True)
    else:
        assert f["detected_at"] is None and f["detection_delay"] is None
        assert f["health"] == "unmonitored" and f["ready"] is True  # the endpoint stays green
        assert (f["live"], f["missing"]) == (True, 3)  # silently stale
    check_prediction(out, fix_on)


@pytest.mark.parametrize("died_at", [0.5, 29.99, 30.01, 30.03, 44.0, 59.99])
def test_redis_health_detection_bound_holds_wherever_the_link_dies(died_at: float) -> None:
    out = redis_health(Fixes(), died_at=died_at)
    delay = out.facts["detection_delay"]
    assert isinstance(delay, float) and 0 < delay <= 35.0
    assert out.fixed


@FIX_STATES
def test_verify_max_reconnect(fix_on: bool) -> None:
    """Max attempts 3: failed with the cursor cleared; recover() re-hydrates, then reconnects."""
    out = max_reconnect(fixes_for("F5", fix_on))
    f = out.facts
    assert f["max_attempts"] == 3
    if fix_on:
        assert f["failed"] is True and f["attempts_made"] == 3 and f["counter_max"] == 3
        assert f["failed_at"] == pytest.approx(12.2)  # right after the third refused attempt
        assert f["cursor_cleared"] is True
        assert f["rehydrated_before_reconnect"] is True
        assert (f["recovered"], f["live"], f["cursor"], f["missing"]) == (True, True, "0-3", 0)
        texts = [s.text for s in out.steps if s.actor == "client"]
        recover = next(i for i, t in enumerate(texts) if t.startswith("Recover()"))
        assert "StartRehydrate(" in texts[recover] and "OpenStream(" not in texts[recover]
        assert texts[recover + 1].startswith("RehydrateDone(head=0-2) → OpenStream(")
    else:
        assert f["failed"] is False and f["failed_at"] is None
        assert f["attempts_made"] == 13 > 3  # retries forever, every 30 s at the cap
    check_prediction(out, fix_on)


@FIX_STATES
def test_verify_max_reconnect_when_streams_open_but_stay_silent(fix_on: bool) -> None:
    """The same through the heartbeat monitor's proactive path: accepted, then silent."""
    out = max_reconnect(fixes_for("F5", fix_on), outage="stalled")
    f = out.facts
    if fix_on:
        assert f["failed"] is True and f["attempts_made"] == 3 and f["counter_max"] == 3
        assert f["failed_at"] == pytest.approx(36.35)  # three silent streams, 10 s each
        assert f["cursor_cleared"] is True and f["rehydrated_before_reconnect"] is True
        assert (f["recovered"], f["cursor"]) == (True, "0-3")
    else:
        assert f["failed"] is False and f["attempts_made"] == 30  # one every 10 s, forever
    check_prediction(out, fix_on)


def test_scenario_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="outage must be 'refused' or 'stalled'"):
        max_reconnect(outage="flaky")
    with pytest.raises(ValueError, match=r"died_at must be in \(0, 60\) seconds"):
        redis_health(died_at=60)


# ---------------------------------------------------------------- the scenarios themselves


ISOLATION = [(name, fixes) for name, sc in SCENARIOS.items() for fixes in (
    Fixes.none().with_(sc.fix),  # the fix alone is enough ...
    *[Fixes().without(i.name) for i in FIXES if i.name != sc.fix],  # ... and needs no other
    Fixes.none(),  # and with nothing fixed, the bug shows
)]


@pytest.mark.parametrize("name,fixes", ISOLATION,
                         ids=[f"{n}[{f}]" for n, f in ISOLATION])
def test_each_scenario_is_decided_by_its_own_fix(name: str, fixes: Fixes) -> None:
    out = run_scenario(name, fixes)
    assert out.fix_on is fixes.enabled(SCENARIOS[name].fix)
    assert out.as_predicted, out.verdict()


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenarios_are_deterministic_and_never_sleep(name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(*args: object) -> None:
        raise AssertionError("a scenario slept")
    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    first, second = run_scenario(name), run_scenario(name)
    assert first == second
    assert first.steps and all(b.at >= a.at for a, b in zip(first.steps, first.steps[1:],
                                                             strict=False))


def test_scenarios_cover_the_five_seed_fixes_in_order() -> None:
    assert [(s.name, s.item) for s in SCENARIOS.values()] == [
        ("replay-limit", 1), ("replay-failure", 2), ("heartbeat-race", 3),
        ("redis-health", 4), ("max-reconnect", 5)]
    assert [s.fix for s in SCENARIOS.values()] == [i.name for i in FIXES if i.alias]


def test_unknown_scenario_names_the_accepted_ones() -> None:
    with pytest.raises(KeyError, match="accepted: replay-limit, replay-failure"):
        run_scenario("replay-limits")


def test_outcome_json_is_plain_data() -> None:
    import json

    data = run_scenario("heartbeat-race").to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["as_predicted"] is True and data["facts"]["counter"] == 1
    assert {"at", "actor", "text"} == set(data["steps"][0])
