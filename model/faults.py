"""The one fault vocabulary: what can go wrong, said the same way by every engine.

Each :class:`FaultKind` has a dotted name (``redis.subscriber_dies``), the
sentence the checker's world prints when it happens to one actor
(``"redis: subscriber of replica 0 dies silently"``), and the parameters a
timed schedule gives it (``at`` and the kind's own). The checker labels its
transitions with :func:`label`; the SimPy fleet, the scenario files, the
Hypothesis schedule strategy and the real-stack runner all build :class:`Fault`
values with :func:`parse_fault` or :func:`fault_from_mapping`, and print them
back with ``str()``, which parses again::

    >>> str(parse_fault("redis.outage(at=1800, duration=60)"))
    'redis.outage(at=1800, duration=60)'

=========================  ==========================================================
fault                      what happens
=========================  ==========================================================
network.drop               a client's stream closes; both ends see it
network.stall              a client's stream goes silent without closing (half-open)
clients.sleep              a laptop lid closes: the client's timers and stream freeze
redis.subscriber_dies      a replica's subscriber link dies silently: no error, no data
redis.disconnect           a replica's subscriber link drops visibly and reconnects
redis.outage               the Redis server is down: every link drops, publishes fail
redis.publish_lost         a publish to Redis fails after its commit (or the process
                           dies between the two): the event never arrives live
postgres.replay_fails      a replay query fails (error, timeout, terminated backend)
auth.revoke                a client's token is revoked (or expires) while it streams
postgres.errors            a share of queries fail for a while
postgres.prune             retention removes the oldest kept events
postgres.snapshot_fails    a client's snapshot (re-hydration) load fails
replicas.down              replicas refuse connections for a while
replicas.restart           replicas restart: streams drop, subscribers reconnect
=========================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "FAULTS",
    "Fault",
    "FaultError",
    "FaultKind",
    "Param",
    "fault_from_mapping",
    "label",
    "parse_fault",
]


class FaultError(ValueError):
    """A fault or schedule entry that cannot be understood; the message says why."""


class Param(NamedTuple):
    """A parameter of a timed fault."""

    name: str
    kind: type
    default: float | None  #: None: required
    doc: str


class FaultKind(NamedTuple):
    """A kind of fault: name, one-line summary, world sentence and timed parameters."""

    name: str
    summary: str
    sentence: str  #: the world's label; ``{client}``/``{replica}``/``{seq}`` filled in
    params: tuple[Param, ...]


_AT = Param("at", float, None, "when it starts, seconds from the start of the run")
_DURATION = Param("duration", float, None, "how long it lasts, seconds")
_FRACTION = Param("fraction", float, 1.0, "share of clients it hits, 0..1")
_REPLICA = Param("replica", int, -1, "which replica (-1: all)")

FAULTS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("network.drop", "a client's stream closes; both ends see it",
              "network: client {client}'s stream drops", (_AT, _FRACTION)),
    FaultKind("network.stall", "a client's stream goes silent without closing",
              "network: client {client}'s stream stalls silently",
              (_AT, _FRACTION, Param("duration", float, 0.0, "how long it lasts (0: until reset)"))),
    FaultKind("clients.sleep", "laptop lids close: timers and streams freeze",
              "client {client}: laptop sleeps", (_AT, _FRACTION, _DURATION)),
    FaultKind("redis.subscriber_dies", "a subscriber link dies silently",
              "redis: subscriber of replica {replica} dies silently", (_AT, _REPLICA)),
    FaultKind("redis.disconnect", "a subscriber link drops visibly, then reconnects",
              "redis: subscriber of replica {replica} is disconnected",
              (_AT, _REPLICA, Param("duration", float, 1.0, "seconds until it reconnects"))),
    FaultKind("redis.outage", "the Redis server is down: links drop, publishes fail",
              "redis: the server goes down", (_AT, _DURATION)),
    FaultKind("redis.publish_lost", "a publish to Redis fails after its commit",
              "redis: publisher {client}'s publish is lost after its commit",
              (_AT, Param("count", int, 1, "how many publishes are lost"))),
    FaultKind("auth.revoke", "a client's token is revoked while it streams",
              "auth: client {client}'s token is revoked", (_AT, _FRACTION)),
    FaultKind("postgres.replay_fails", "a replay query fails",
              "postgres: the replay query for client {client} fails",
              (_AT, Param("count", int, 1, "how many replay queries fail"))),
    FaultKind("postgres.errors", "a share of queries fail for a while",
              "postgres: queries fail", (_AT, _DURATION,
                                         Param("rate", float, 1.0, "share of queries, 0..1"))),
    FaultKind("postgres.snapshot_fails", "a snapshot load fails",
              "postgres: client {client}'s snapshot load fails",
              (_AT, Param("count", int, 1, "how many snapshot loads fail"))),
    FaultKind("postgres.prune", "retention removes the oldest kept events",
              "postgres: retention prunes events up to {seq}",
              (_AT, Param("keep", int, 0, "events to keep per topic"))),
    FaultKind("replicas.down", "replicas refuse connections for a while",
              "replica {replica} goes down", (_AT, _DURATION, _REPLICA)),
    FaultKind("replicas.restart", "replicas restart: streams drop, subscribers reconnect",
              "replica {replica} restarts",
              (_AT, _REPLICA, Param("stagger", float, 0.0, "seconds between replicas"))),
)}


def label(kind: str, **who: object) -> str:
    """The world's sentence for a fault happening to one actor."""
    return FAULTS[kind].sentence.format(**who)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One timed fault of a schedule: its kind, start time and parameters."""

    kind: str
    at: float
    args: tuple[tuple[str, float], ...] = ()

    def get(self, name: str) -> Any:
        """A parameter's value, or its default."""
        for key, value in self.args:
            if key == name:
                return value
        for param in FAULTS[self.kind].params:
            if param.name == name:
                return param.default
        raise KeyError(name)

    @property
    def end(self) -> float:
        """When the fault's effect ends (``at`` for instantaneous ones)."""
        try:
            duration = self.get("duration")
        except KeyError:
            return self.at
        return self.at + float(duration or 0.0)

    def __str__(self) -> str:
        parts = [f"at={_num(self.at)}"] + [f"{k}={_num(v)}" for k, v in self.args]
        return f"{self.kind}({', '.join(parts)})"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def fault_from_mapping(data: Mapping[str, Any], *, where: str = "fault") -> Fault:
    """Build a Fault from a mapping ``{"fault": "redis.outage", "at": 1800, ...}``."""
    if not isinstance(data, Mapping):
        raise FaultError(f"{where}: expected a table with 'fault' and 'at', got {data!r}")
    kind_name = data.get("fault", data.get("kind"))
    if not isinstance(kind_name, str) or kind_name not in FAULTS:
        raise FaultError(f"{where}: unknown fault {kind_name!r}; accepted: "
                         + ", ".join(FAULTS))
    kind = FAULTS[kind_name]
    known = {p.name: p for p in kind.params}
    extra = set(data) - set(known) - {"fault", "kind"}
    if extra:
        raise FaultError(f"{where}: {kind_name} takes no {sorted(extra)}; it takes "
                         + ", ".join(f"{p.name}" + ("" if p.default is None else f"={p.default}")
                                     for p in kind.params))
    values: dict[str, float] = {}
    for param in kind.params:
        if param.name not in data:
            if param.default is None:
                raise FaultError(f"{where}: {kind_name} needs {param.name} ({param.doc})")
            continue
        raw = data[param.name]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise FaultError(f"{where}: {kind_name} {param.name} must be a number, got {raw!r}")
        if param.kind is int and not float(raw).is_integer():
            raise FaultError(f"{where}: {kind_name} {param.name} must be a whole number")
        value = float(raw)
        if param.name in ("at", "duration", "stagger") and value < 0:
            raise FaultError(f"{where}: {kind_name} {param.name} must be >= 0, got {raw}")
        if param.name in ("fraction", "rate") and not 0 <= value <= 1:
            raise FaultError(f"{where}: {kind_name} {param.name} must be in [0, 1], got {raw}")
        values[param.name] = int(value) if param.kind is int else value
    at = values.pop("at")
    return Fault(kind_name, at, tuple(values.items()))


_CALL = re.compile(r"^\s*([a-z_]+\.[a-z_]+)\s*\((.*)\)\s*$", re.S)


def parse_fault(text: str) -> Fault:
    """Parse ``"redis.outage(at=1800, duration=60)"`` into a Fault."""
    match = _CALL.match(text)
    if match is None:
        raise FaultError(f"cannot read fault {text!r}; write it as "
                         "'kind(at=SECONDS, name=value, ...)', e.g. 'redis.outage(at=1800, duration=60)'")
    data: dict[str, Any] = {"fault": match.group(1)}
    body = match.group(2).strip()
    for part in filter(None, (p.strip() for p in body.split(","))):
        if "=" not in part:
            raise FaultError(f"in {text!r}: {part!r} is not name=value")
        key, _, raw = part.partition("=")
        try:
            data[key.strip()] = float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            raise FaultError(f"in {text!r}: {key.strip()} must be a number, got {raw.strip()!r}"
                             ) from None
    return fault_from_mapping(data, where=text.strip())
