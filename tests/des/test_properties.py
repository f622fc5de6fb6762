"""Hypothesis drives the timed model: any drawn schedule, all fixes on, invariants hold.

Small fleets in simulated time. With every fix on, whatever faults the strategy
draws -- in the shared vocabulary -- the run keeps a bounded counter, bounded
replays, no silent staleness, staleness per incident within the detection bound
plus one reconnect, and converges after the last fault. A failure shrinks to a
schedule printed as pasteable faults and ``[[faults]]`` tables.
"""

from __future__ import annotations

import dataclasses
import re

from hypothesis import HealthCheck, given, note, settings

from model.faults import FAULTS, parse_fault
from sims.des.run import simulate
from sims.des.scenarios import Scenario, schedule_toml
from sims.des.settings import Settings
from sims.des.verdict import settle_time, violations

from .strategies import NOT_DRAWN, Schedule, fault_schedules

BASE = Settings(clients=12, replicas=2, topics=4, publish_rate=0.2, startup=30.0,
                max_attempts=6, user_retry=30.0, duration=600.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=fault_schedules(max_faults=4, replicas=BASE.replicas))
def test_all_fixes_on_any_schedule_keeps_the_invariants(schedule: Schedule) -> None:
    duration = max(600.0, schedule.last_end + settle_time(BASE) + 60.0)
    scenario = Scenario(name="hypothesis", description="drawn schedule",
                        settings=dataclasses.replace(BASE, duration=duration),
                        faults=tuple(schedule), source="hypothesis")
    note(f"schedule: {schedule!r}")
    note("as a scenario file:\n" + f"duration = {duration:g}\n" + schedule_toml(schedule))
    result = simulate(scenario)
    broken = violations(result)
    assert broken == {}, "\n".join(f"{k}: {v}" for k, v in broken.items())
    m = result.metrics
    assert m["silent_stale_seconds_total"] == 0.0
    assert m["replay_rows_max"] is None or m["replay_rows_max"] <= BASE.replay_limit + 1
    assert m["max_reconnect_attempts"] <= BASE.max_attempts


def test_the_strategy_speaks_the_whole_vocabulary() -> None:
    kinds: set[str] = set()

    @settings(max_examples=300, deadline=None)
    @given(schedule=fault_schedules(max_faults=4))
    def collect(schedule: Schedule) -> None:
        for fault in schedule:
            assert str(fault) == str(type(fault)(fault.kind, fault.at, fault.args))
            kinds.add(fault.kind)
        assert "Schedule(" in repr(schedule)

    collect()
    assert kinds == set(FAULTS) - set(NOT_DRAWN)


def test_a_shrunk_failure_prints_a_pasteable_schedule() -> None:
    """With F4 off the property fails; the report is a schedule a user can paste back."""
    broken = dataclasses.replace(BASE, fixes=BASE.fixes.without("F4"))

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(schedule=fault_schedules(max_faults=2, replicas=BASE.replicas))
    def property_without_f4(schedule: Schedule) -> None:
        duration = max(600.0, schedule.last_end + settle_time(broken) + 60.0)
        scenario = Scenario(name="hypothesis", description="drawn schedule",
                            settings=dataclasses.replace(broken, duration=duration),
                            faults=tuple(schedule), source="hypothesis")
        note(f"schedule: {schedule!r}")
        note("as a scenario file:\n" + schedule_toml(schedule))
        assert violations(simulate(scenario)) == {}

    try:
        property_without_f4()
    except AssertionError as exc:
        report = "\n".join(getattr(exc, "__notes__", []))
    else:  # pragma: no cover - the fix is off, so the property must fail
        raise AssertionError("the property held with subscriber-health off")
    assert "schedule: Schedule(" in report and "[[faults]]" in report
    pasted = re.findall(r"'([a-z_]+\.[a-z_]+\(at=[^']*\))'", report)
    assert pasted and all(str(parse_fault(p)) == p for p in pasted)
    assert any(p.startswith(("redis.", "replicas.")) for p in pasted)
