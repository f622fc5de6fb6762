"""Teeth at scale: all fixes on, every preset keeps the invariants; each fix off shows its bug."""

from __future__ import annotations

import pytest

from model.invariants import (
    BOUNDED_COUNTER,
    BOUNDED_REPLAY,
    NO_SILENT_STALE,
    NO_STREAM_WITHOUT_CURSOR,
    REVOKED_STREAM_ENDS,
)
from sims.des.run import Result
from sims.des.scenarios import PRESETS
from sims.des.verdict import violations

from .conftest import SCENARIOS, run


@pytest.mark.parametrize("preset", list(PRESETS))
def test_all_fixes_on_every_preset_keeps_the_invariants(preset: str) -> None:
    result = run(preset, clients=60, duration=1200.0)
    s = result.scenario.settings
    m = result.metrics
    assert violations(result) == {}
    assert m["replay_rows_max"] is None or m["replay_rows_max"] <= s.replay_limit + 1
    assert m["silent_stale_seconds_total"] == 0.0
    assert m["max_reconnect_attempts"] <= s.max_attempts
    assert (result.frames["counters"]["counter_mismatch_max"] == 0).all()
    # per incident: staleness (covered or not) beyond the faults' windows stays within the
    # detection bound plus one reconnect -- checked by violations(); here the raw bound too
    stale = result.frames["stale"]
    if preset == "subscriber-silent-death":
        assert (stale["seconds"] <= s.detection_bound + s.reconnect_allowance).all()
        deaths = result.frames["incidents"]
        assert (deaths["latency_s"] <= s.detection_bound).all()
        assert deaths["detected"].all()


def test_subscriber_silent_death_without_f4_stale_time_grows_with_duration() -> None:
    # the head probe brings what a dead subscriber loses (defence in depth), so it goes
    # off with F4 here, as model.fixes does for resync-after-recovery
    short = run("subscriber-silent-death", without=["F4", "head-probe"], duration=900.0)
    long = run("subscriber-silent-death", without=["F4", "head-probe"], duration=1800.0)
    on = run("subscriber-silent-death", duration=1800.0)
    assert on.metrics["silent_stale_seconds_total"] == 0.0
    assert short.metrics["silent_stale_seconds_total"] > 0
    assert long.metrics["silent_stale_seconds_total"] > 1.5 * short.metrics[
        "silent_stale_seconds_total"]
    assert long.metrics["silent_stale_seconds_max"] > short.metrics["silent_stale_seconds_max"]
    assert NO_SILENT_STALE in violations(long)
    # never detected: the death's detection latency runs to the end of the run
    incidents = long.frames["incidents"]
    assert not incidents["detected"].any()
    assert long.metrics["detection_latency_s_max"] > on.scenario.settings.detection_bound


def _deploy(rate: float, without: list[str]) -> dict[str, object]:
    # a shared, busy topic per ten clients, so a reconnect's gap holds a real backlog
    return run("deploy-restart", without=without, clients=40, topics=4, publish_rate=rate,
               replay_limit=5, duration=600.0).metrics


def test_deploy_restart_without_f1_replay_rows_grow_with_the_backlog() -> None:
    limit = 5
    on_small, on_big = _deploy(5.0, []), _deploy(20.0, [])
    off_small, off_big = _deploy(5.0, ["F1"]), _deploy(20.0, ["F1"])
    assert on_small["replay_rows_max"] is None or on_small["replay_rows_max"] <= limit + 1
    assert on_big["replay_rows_max"] is None or on_big["replay_rows_max"] <= limit + 1
    assert off_small["replay_rows_max"] > limit + 1
    assert off_big["replay_rows_max"] > 2 * off_small["replay_rows_max"]


def test_deploy_restart_without_f1_breaks_bounded_replay() -> None:
    result = run("deploy-restart", without=["F1"], clients=40, topics=4, publish_rate=20.0,
                 replay_limit=5, duration=600.0)
    assert BOUNDED_REPLAY in violations(result)


def test_db_brownout_without_f2_leaves_clients_silently_stale() -> None:
    on = run("db-brownout", clients=100, duration=1200.0)
    off = run("db-brownout", without=["F2"], clients=100, duration=1200.0)
    assert on.metrics["silent_stale_seconds_total"] == 0.0
    assert off.metrics["silent_stale_seconds_total"] > 0
    assert NO_SILENT_STALE in violations(off)
    # with the fix the failed replays are detected (re-hydration); without, never
    assert on.frames["incidents"].query("kind == 'replay-failed'")["detected"].all()
    assert not off.frames["incidents"].query("kind == 'replay-failed'")["detected"].any()


def test_stall_during_db_outage_without_f3_inflates_the_counter() -> None:
    spec = str(SCENARIOS / "stall-during-db-outage.toml")
    on = run(spec)
    off = run(spec, without=["F3"])
    assert BOUNDED_COUNTER not in violations(on)
    assert on.metrics["failed_clients"] == 0
    assert BOUNDED_COUNTER in violations(off)
    assert off.frames["counters"]["counter_mismatch_max"].max() > 0
    # the check reconnects every second, past the backoff: "Connection lost" in ~1 min
    assert off.metrics["failed_clients"] > 0
    assert off.metrics["max_reconnect_attempts"] > on.metrics["max_reconnect_attempts"]


def test_long_replica_outage_without_f5_retries_forever() -> None:
    spec = str(SCENARIOS / "long-replica-outage.yaml")
    on = run(spec)
    off = run(spec, without=["F5"])
    max_attempts = on.scenario.settings.max_attempts
    assert on.metrics["failed_clients"] == on.scenario.settings.clients
    assert on.metrics["max_reconnect_attempts"] == max_attempts
    failed = on.frames["status"].query("status == 'failed'")
    assert (failed["attempts"] == max_attempts).all()
    assert off.metrics["failed_clients"] is None  # cannot fail: does not apply
    assert off.metrics["max_reconnect_attempts"] > max_attempts
    assert violations(on) == {}


def _lost_publish(without: list[str]) -> Result:
    # quiet topics, so a lost publish is not repaired by the topic's next event
    return run("steady", without=without, clients=20, topics=4, publish_rate=0.005,
               duration=600.0, faults=["redis.publish_lost(at=200, count=3)"])


def test_publish_lost_without_head_probe_leaves_clients_silently_stale() -> None:
    on, off = _lost_publish([]), _lost_publish(["head-probe"])
    s = on.scenario.settings
    assert violations(on) == {}
    assert on.metrics["silent_stale_seconds_total"] == 0.0
    assert (on.frames["queries"]["kind"] == "probe").any()
    # a lost publish reaches every open stream within one probe interval plus one replay
    stale = on.frames["stale"]
    assert (stale["seconds"] <= s.probe_interval + s.reconnect_allowance).all()
    assert off.metrics["silent_stale_seconds_total"] > 0
    assert NO_SILENT_STALE in violations(off)
    assert not (off.frames["queries"]["kind"] == "probe").any()  # off: no head queries


def _first_stream_dropped(without: list[str]) -> Result:
    # every tab connects within the first second; all streams drop at 0.5 s, before any
    # event, while events are published fast enough to fall into the reconnect's gap
    return run("steady", without=without, clients=20, topics=2, publish_rate=2.0,
               startup=1.0, duration=300.0, faults=["network.drop(at=0.5, fraction=1.0)"])


def test_first_stream_dropped_without_announce_head_loses_events() -> None:
    on, off = _first_stream_dropped([]), _first_stream_dropped(["announce-head"])
    assert violations(on) == {}
    assert {NO_SILENT_STALE, NO_STREAM_WITHOUT_CURSOR} & set(violations(off))
    assert off.metrics["silent_stale_seconds_total"] > 0


def test_quiet_first_stream_without_announce_head_streams_without_a_cursor() -> None:
    # no event at all: the first message a tab hears is a heartbeat, and it has no cursor
    on = run("steady", clients=10, publish_rate=0.0, duration=120.0)
    off = run("steady", without=["announce-head"], clients=10, publish_rate=0.0, duration=120.0)
    assert NO_STREAM_WITHOUT_CURSOR not in violations(on)
    assert NO_STREAM_WITHOUT_CURSOR in violations(off)


def test_revoked_stream_ends_only_with_reauthorize() -> None:
    revoke = ["auth.revoke(at=100, fraction=0.5)"]
    on = run("steady", clients=20, duration=300.0, faults=revoke)
    off = run("steady", without=["reauthorize"], clients=20, duration=300.0, faults=revoke)
    assert REVOKED_STREAM_ENDS not in violations(on)
    assert REVOKED_STREAM_ENDS in violations(off)
