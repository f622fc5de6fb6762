"""Reading traces: JSON lines per machine step, normalised to what the world can feed.

Each machine instance's inputs become a sequence of *keys*: the input's type and
the fields the world decides (event seqs, heads, timers), without times, reasons,
jitter draws, epochs or sentinel tokens. Inputs the world abstracts away are
dropped: a client's ``Start`` and a subscriber's first ``Ready`` (the world's
initial state has taken them), a client's ``HeartbeatReceived`` once its stream
is stable (the world's heartbeats are implicit), a session's heartbeat
``TimerFired``. ``Stop`` (client) and ``Close`` (session) end an instance's
recording: the world never feeds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Instance", "Line", "Trace", "TraceError", "input_key", "read_traces"]

MACHINES = ("client", "session", "subscriber")
Key = tuple[Any, ...]


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, the line and why."""


class Line(NamedTuple):
    """One recorded input of one machine instance."""

    file: str
    lineno: int
    key: Key
    raw: Mapping[str, Any]
    wall: float


class Instance(NamedTuple):
    """A machine instance of the trace and its normalised inputs."""

    machine: str
    ident: str
    lines: tuple[Line, ...]
    ended: bool  #: its recording ended with Stop / Close
    raw_lines: tuple[Line, ...] = ()  #: every recorded line, before normalising


class Trace(NamedTuple):
    """Every instance, the environment's publishes and faults, and the recorded configs."""

    instances: tuple[Instance, ...]
    env: tuple[Line, ...]  #: publishes and faults, in order
    configs: tuple[Mapping[str, Any], ...]


def _seq(text: Any) -> int:
    if text is None:
        return 0
    if isinstance(text, str) and "-" in text:
        return int(text.rsplit("-", 1)[1])
    raise ValueError(f"expected an event id EPOCH-SEQ, got {text!r}")


def input_key(machine: str, inp: Mapping[str, Any]) -> Key:
    """The world-relevant part of an input (JSON form from ``service.trace.encode``)."""
    kind = inp["type"]
    if machine == "client":
        if kind == "EventReceived":
            return (kind, _seq(inp["event_id"]))
        if kind in ("ReplayTruncated", "RehydrateDone", "HeadAnnounced"):
            return (kind, _seq(inp["head"]))
        if kind == "TimerFired":
            return (kind, str(inp["timer"]))
        return (kind,)
    if machine == "session":
        if kind == "Open":
            topic = inp["topic"]
            cursor = inp["last_event_id"]  # None (a client without a cursor) is not 0
            return (kind, None if cursor is None else _seq(cursor), int(topic["head"]),
                    int(topic["floor"]))
        if kind == "ReplayRows":
            return (kind, tuple(int(s) for s in inp["seqs"]), int(inp.get("floor", 0)))
        if kind == "LiveEvent":
            return (kind, int(inp["seq"]))
        if kind in ("Resync", "HeadProbed"):
            topic = inp["topic"]
            return (kind, int(topic["head"]), int(topic["floor"]))
        if kind == "TimerFired":
            return (kind, str(inp.get("timer", "heartbeat")))
        return (kind,)
    if kind == "TimerFired":
        return (kind, str(inp["timer"]))
    return (kind,)


def read_traces(paths: Sequence[str]) -> Trace:
    """Read and normalise trace files; raise TraceError naming the first bad line."""
    raw: dict[tuple[str, str], list[Line]] = {}
    env: list[Line] = []
    configs: list[Mapping[str, Any]] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
        for n, row in enumerate(text.splitlines(), 1):
            if not row.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(row)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{where}: not JSON ({exc.msg}); expected one JSON object "
                                 "per line as service/trace.py writes") from None
            if not isinstance(rec, dict) or "machine" not in rec:
                raise TraceError(f"{where}: expected an object with 'machine' "
                                 "(client, session, subscriber or env)")
            machine = rec["machine"]
            wall = float(rec.get("wall", 0.0))
            if machine == "env":
                kind = rec.get("kind")
                if not isinstance(kind, str):
                    raise TraceError(f"{where}: an env line needs 'kind' (a fault name, "
                                     "'publish' or 'config')")
                if kind == "config":
                    configs.append(rec)
                else:
                    env.append(Line(path, n, (kind,), rec, wall))
                continue
            if machine not in MACHINES:
                raise TraceError(f"{where}: unknown machine {machine!r}; expected one of "
                                 + ", ".join((*MACHINES, "env")))
            inp = rec.get("input")
            if not isinstance(rec.get("id"), str) or not isinstance(inp, dict) \
                    or not isinstance(inp.get("type"), str):
                raise TraceError(f"{where}: a {machine} line needs 'id' (a string) and 'input' "
                                 "(an object with 'type')")
            try:
                key = input_key(machine, inp)
            except (KeyError, ValueError, TypeError) as exc:
                raise TraceError(f"{where}: {machine} input {inp['type']} is malformed: "
                                 f"{exc!r}") from None
            raw.setdefault((machine, rec["id"]), []).append(Line(path, n, key, rec, wall))
    instances = [_normalise(machine, ident, lines) for (machine, ident), lines in raw.items()]
    order = {"client": 0, "subscriber": 1, "session": 2}
    instances.sort(key=lambda i: (order[i.machine], i.lines[0].wall if i.lines else 0.0))
    return Trace(tuple(instances), tuple(env), tuple(configs))


def _normalise(machine: str, ident: str, lines: list[Line]) -> Instance:
    out: list[Line] = []
    ended = False
    stable = False
    for k, line in enumerate(lines):
        kind = line.key[0]
        if machine == "client":
            if kind == "Start" and k == 0:
                continue
            if kind == "Stop":
                ended = True
                break
            if kind == "HeartbeatReceived" and stable:
                stable = bool(line.raw.get("detail", {}).get("stable", True))
                continue
            stable = bool(line.raw.get("detail", {}).get("stable", False))
        elif machine == "session":
            if kind == "TimerFired":
                continue
            if kind == "Close":
                ended = True
                break
        elif kind == "Ready" and k == 0:
            continue
        out.append(line)
    return Instance(machine, ident, tuple(out), ended, tuple(lines))
