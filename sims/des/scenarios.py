"""Scenarios: settings plus a fault schedule, from a preset or a TOML/YAML file.

A fault schedule is a tuple of :class:`model.faults.Fault` values -- the one
fault vocabulary the checker, the tests and the service share -- so a schedule
prints as lines a user can paste into a scenario file.

Presets scale their fault times with the run's duration (an outage "half way
through"), so ``--duration 600`` still sees the outage; the durations of the
faults themselves are fixed. A scenario file looks like this::

    name = "lunch-failover"
    description = "Redis fails over at lunch while a tenth of the laptops sleep"
    clients = 2000
    replicas = 4
    duration = 3600
    publish_rate = 0.02          # events per second per topic
    without = ["F4"]             # fixes to switch off (optional)

    [[faults]]
    fault = "redis.outage"
    at = 1800
    duration = 60

    [[faults]]
    fault = "clients.sleep"
    at = 1700
    fraction = 0.1
    duration = 900

YAML takes the same keys, with ``faults:`` a list of mappings.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from model.faults import Fault, FaultError, fault_from_mapping
from sims.des.settings import ScenarioError, Settings, settings_from_mapping

__all__ = ["PRESETS", "Preset", "Scenario", "ScenarioError", "load_scenario", "preset_names",
           "schedule_toml"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """A named run: its settings and its fault schedule."""

    name: str
    description: str
    settings: Settings
    faults: tuple[Fault, ...] = ()
    source: str = "preset"  #: the preset or file it came from, for messages

    def __post_init__(self) -> None:
        for i, fault in enumerate(self.faults):
            where = f"{self.source}: fault {i + 1} {fault}"
            if fault.at >= self.settings.duration:
                raise ScenarioError(f"{where}: at={fault.at:g} is not before the end of the run "
                                    f"(duration {self.settings.duration:g} s)")
            try:
                replica = int(fault.get("replica"))
            except KeyError:
                continue
            if replica >= self.settings.replicas:
                raise ScenarioError(f"{where}: replica={replica} but the fleet has "
                                    f"{self.settings.replicas} replicas (0..{self.settings.replicas - 1}"
                                    ", or -1 for all)")

    @property
    def last_fault_end(self) -> float:
        """When the last fault's effect ends (0 without faults)."""
        return max((f.end for f in self.faults), default=0.0)

    def schedule(self) -> str:
        """The fault schedule, one pasteable fault per line."""
        return "\n".join(str(f) for f in self.faults) or "(no faults)"


class Preset(NamedTuple):
    """A preset: its description, its schedule for a run's duration, settings it changes."""

    description: str
    build: Callable[[float], list[Fault]]
    settings: Mapping[str, Any] = {}


def _f(kind: str, at: float, **args: float) -> Fault:
    data: dict[str, Any] = {"fault": kind, "at": round(at, 3), **args}
    return fault_from_mapping(data, where=f"preset {kind}")


def _flapping(d: float) -> list[Fault]:
    start = d / 3
    faults = [_f("network.drop", start + 15 * i, fraction=0.5) for i in range(8)]
    faults += [_f("redis.disconnect", start + 40 * i + 7, replica=-1, duration=2) for i in range(3)]
    faults.append(_f("replicas.down", start + 20, replica=0, duration=45))
    return sorted(faults, key=lambda f: f.at)


#: The scenario presets, by name.
PRESETS: dict[str, Preset] = {
    "steady": Preset("a calm run: publishers and heartbeats, nothing breaks", lambda d: []),
    "redis-outage": Preset(
        "the Redis server is down for a minute half way through; links drop, publishes fail",
        lambda d: [_f("redis.outage", d / 2, duration=60)]),
    "subscriber-silent-death": Preset(
        "replica 0's Redis subscriber dies silently: no error, no data; heartbeats stay green",
        lambda d: [_f("redis.subscriber_dies", d / 6, replica=0)]),
    "db-brownout": Preset(
        "half of all queries fail for five minutes while streams drop and Redis links flap",
        lambda d: [_f("postgres.errors", d / 3, duration=min(300.0, d / 4), rate=0.5),
                   _f("network.drop", d / 3 + min(30.0, d / 40), fraction=0.5),
                   _f("redis.disconnect", d / 3 + min(60.0, d / 20), replica=-1, duration=30)]),
    "laptop-sleep": Preset(
        "a third of the laptops sleep for a quarter of the run; the rest nap now and then",
        lambda d: [_f("clients.sleep", d / 4, fraction=0.3, duration=d / 4)],
        {"sleep_rate_per_h": 0.5, "sleep_median": 300.0}),
    "deploy-restart": Preset(
        "a rolling deploy restarts every replica, 30 s apart; their streams drop",
        lambda d: [_f("replicas.restart", d / 3, replica=-1, stagger=30)]),
    "flapping": Preset(
        "streams drop every 15 s for two minutes, Redis links flap, replica 0 bounces",
        _flapping),
}


def schedule_toml(faults: Sequence[Fault]) -> str:
    """A fault schedule as ``[[faults]]`` tables, ready to paste into a scenario file."""
    blocks = []
    for fault in faults:
        lines = [f"# {fault}", "[[faults]]", f'fault = "{fault.kind}"', f"at = {_num(fault.at)}"]
        lines += [f"{name} = {_num(value)}" for name, value in fault.args]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def preset_names() -> list[str]:
    """The preset names, in table order."""
    return list(PRESETS)


def _apply(base: Settings, overrides: Mapping[str, Any], where: str) -> Settings:
    try:
        return dataclasses.replace(base, **overrides)
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    if path.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping of settings and a 'faults' list, "
                            f"got {type(data).__name__}")
    return data


def _file_scenario(path: Path, overrides: Mapping[str, Any]) -> Scenario:
    data = _read_file(path)
    where = str(path)
    name = data.pop("name", path.stem)
    description = data.pop("description", f"scenario file {path.name}")
    raw_faults = data.pop("faults", [])
    if not isinstance(name, str) or not isinstance(description, str):
        raise ScenarioError(f"{where}: name and description must be strings")
    if not isinstance(raw_faults, list):
        raise ScenarioError(f"{where}: faults must be a list of tables ([[faults]] in TOML, "
                            f"a list of mappings in YAML), got {type(raw_faults).__name__}")
    faults: list[Fault] = []
    for i, entry in enumerate(raw_faults):
        try:
            faults.append(fault_from_mapping(entry, where=f"{where}: faults entry {i + 1}"))
        except FaultError as exc:
            raise ScenarioError(str(exc)) from None
    settings = _apply(Settings(), settings_from_mapping(data, where=where), where)
    settings = _apply(settings, overrides, "command line")
    return Scenario(name=name, description=description, settings=settings,
                    faults=tuple(sorted(faults, key=lambda f: f.at)), source=where)


def load_scenario(spec: str, overrides: Mapping[str, Any] | None = None,
                  extra_faults: Sequence[Fault] = ()) -> Scenario:
    """A preset by name, or a ``.toml``/``.yaml`` file, with ``overrides`` applied."""
    overrides = dict(overrides or {})
    if spec in PRESETS:
        preset = PRESETS[spec]
        base = _apply(Settings(), preset.settings, f"preset {spec}")
        settings = _apply(base, overrides, "command line")
        faults = [*preset.build(settings.duration), *extra_faults]
        return Scenario(name=spec, description=preset.description, settings=settings,
                        faults=tuple(sorted(faults, key=lambda f: f.at)), source=f"preset {spec}")
    path = Path(spec)
    if path.suffix in (".toml", ".yaml", ".yml"):
        scenario = _file_scenario(path, overrides)
        if extra_faults:
            faults = sorted([*scenario.faults, *extra_faults], key=lambda f: f.at)
            scenario = dataclasses.replace(scenario, faults=tuple(faults))
        return scenario
    raise ScenarioError(f"unknown scenario {spec!r}: give a preset ({', '.join(PRESETS)}) "
                        "or a scenario file ending in .toml, .yaml or .yml")

