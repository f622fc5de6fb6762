"""Scenario files and presets: what loads, and the errors for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.faults import parse_fault
from sims.des.scenarios import PRESETS, ScenarioError, load_scenario, schedule_toml

REQUIRED = {"steady", "redis-outage", "subscriber-silent-death", "db-brownout", "laptop-sleep",
            "deploy-restart", "flapping"}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_presets_are_there_and_scale_with_the_duration() -> None:
    assert REQUIRED <= set(PRESETS)
    hour = load_scenario("redis-outage")
    assert [str(f) for f in hour.faults] == ["redis.outage(at=1800, duration=60)"]
    short = load_scenario("redis-outage", {"duration": 600.0})
    assert [str(f) for f in short.faults] == ["redis.outage(at=300, duration=60)"]


def test_a_toml_file_loads_with_settings_faults_and_fixes(tmp_path: Path) -> None:
    spec = write(tmp_path, "lunch.toml", """
name = "lunch"
clients = 25
replicas = 3
duration = 900
publish_rate = 0.1
policy = "full"
without = ["F4", "replay-failed-signal"]

[[faults]]
fault = "clients.sleep"
at = 200
fraction = 0.5
duration = 100

[[faults]]
fault = "redis.outage"
at = 100
duration = 30
""")
    sc = load_scenario(spec, {"seed": 9})
    assert sc.name == "lunch"
    assert (sc.settings.clients, sc.settings.replicas, sc.settings.seed) == (25, 3, 9)
    assert sc.settings.policy.kind.value == "full"
    assert sc.settings.fixes.off() == ("replay-failed-signal", "subscriber-health")
    assert [str(f) for f in sc.faults] == ["redis.outage(at=100, duration=30)",
                                           "clients.sleep(at=200, fraction=0.5, duration=100)"]


def test_a_yaml_file_loads(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "clients: 5\nduration: 300\nfaults:\n"
                                     "  - {fault: redis.subscriber_dies, at: 60, replica: 1}\n")
    sc = load_scenario(spec)
    assert [str(f) for f in sc.faults] == ["redis.subscriber_dies(at=60, replica=1)"]


@pytest.mark.parametrize(("text", "needles"), [
    ('[[faults]]\nfault = "redis.outrage"\nat = 5\n',
     ["faults entry 1", "unknown fault 'redis.outrage'", "accepted:", "redis.outage"]),
    ('[[faults]]\nfault = "redis.outage"\nat = 5\n',
     ["faults entry 1", "redis.outage needs duration"]),
    ('[[faults]]\nfault = "redis.outage"\nat = 5\nduration = "long"\n',
     ["faults entry 1", "duration must be a number", "'long'"]),
    ('[[faults]]\nfault = "redis.outage"\nat = 5\nduration = 5\nreplica = 1\n',
     ["faults entry 1", "takes no ['replica']", "it takes at, duration"]),
    ('[[faults]]\nfault = "clients.sleep"\nat = 5\nduration = 5\nfraction = 2\n',
     ["fraction must be in [0, 1]"]),
    ('clientz = 5\n', ["unknown setting 'clientz'", "accepted: clients, replicas"]),
    ('clients = 0\n', ["clients (browser tabs, one stream each)", "a whole number >= 1", "got 0"]),
    ('publish_rate = "fast"\n', ["publish_rate", "expected a number >= 0", "'fast'"]),
    ('policy = "bouncy"\n', ["policy", "unknown backoff policy 'bouncy'", "decorrelated"]),
    ('without = ["F9"]\n', ["without", "unknown fix 'F9'", "F1"]),
    ('faults = 3\n', ["faults must be a list of tables"]),
    ('duration = 100\n[[faults]]\nfault = "redis.outage"\nat = 200\nduration = 5\n',
     ["fault 1 redis.outage(at=200, duration=5)", "not before the end of the run"]),
    ('replicas = 2\n[[faults]]\nfault = "replicas.down"\nat = 5\nduration = 5\nreplica = 2\n',
     ["replica=2 but the fleet has 2 replicas", "-1 for all"]),
    ('clients = [\n', ["not valid TOML"]),
])
def test_bad_toml_files_fail_naming_file_entry_and_what_is_accepted(
        tmp_path: Path, text: str, needles: list[str]) -> None:
    spec = write(tmp_path, "bad.toml", text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(spec)
    message = str(info.value)
    assert spec in message
    for needle in needles:
        assert needle in message


def test_bad_yaml_and_unknown_specs_fail_clearly(tmp_path: Path) -> None:
    spec = write(tmp_path, "bad.yaml", "faults:\n  - fault: redis.outage\n    at: [1\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(spec)
    spec = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        load_scenario(spec)
    with pytest.raises(ScenarioError, match=r"give a preset .*steady.* or a scenario file"):
        load_scenario("no-such-preset")
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(str(tmp_path / "missing.toml"))


def test_a_schedule_prints_as_toml_that_loads_back(tmp_path: Path) -> None:
    faults = [parse_fault("redis.outage(at=100, duration=60)"),
              parse_fault("clients.sleep(at=50, fraction=0.25, duration=30)")]
    text = schedule_toml(faults)
    spec = write(tmp_path, "back.toml", "duration = 600\n" + text)
    assert [str(f) for f in load_scenario(spec).faults] == [
        "clients.sleep(at=50, fraction=0.25, duration=30)", "redis.outage(at=100, duration=60)"]
