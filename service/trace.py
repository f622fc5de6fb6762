"""Trace recording: what each machine was fed and what it did, as JSON lines.

Off by default. ``SSELAB_TRACE=/path/file.jsonl`` (or a ``trace_path`` given to
the client) switches it on; every shell then writes one line per machine step::

    {"t": 12.3, "wall": 1718000000.1, "machine": "client", "id": "c0",
     "input": {"type": "EventReceived", "event_id": "7-1", ...},
     "state": "connected", "detail": {...}, "actions": ["Deliver", ...]}

and test harnesses add environment lines (``{"machine": "env", "kind":
"publish", ...}``, a fault name, or ``"config"``) so a trace says what the world
did to the machines. Several processes may append to one file: each line is one
``write`` on an ``O_APPEND`` descriptor. ``sselab conform`` reads these files.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["Tracer", "encode", "for_path", "from_env"]

_LOCK = threading.Lock()
_OPEN: dict[str, Tracer] = {}


def encode(value: Any) -> Any:
    """A machine input, state part or action as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"type": value.__class__.__name__}
        for f in dataclasses.fields(value):
            out[f.name] = encode(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "_asdict") and hasattr(value, "epoch") and hasattr(value, "seq") \
            and len(value) == 2:
        return f"{value.epoch}-{value.seq}"  # an EventId
    if hasattr(value, "_asdict"):
        return {k: encode(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


class Tracer:
    """An append-only JSON-lines trace file shared by every shell of a process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a line."""
        line = json.dumps(record, separators=(",", ":"), default=repr) + "\n"
        os.write(self._fd, line.encode())

    def step(self, machine: str, ident: str, event: Any, state: str, actions: Iterable[Any],
             *, now: float, detail: dict[str, Any] | None = None) -> None:
        """Record one machine step: its input, the state after, and its actions."""
        record: dict[str, Any] = {"t": now, "wall": time.time(), "machine": machine, "id": ident,
                                  "input": encode(event), "state": state,
                                  "actions": [a.__class__.__name__ for a in actions]}
        if detail:
            record["detail"] = detail
        self.write(record)

    def env(self, kind: str, **fields: Any) -> None:
        """Record what the environment did: a publish, a fault by name, or a config."""
        self.write({"t": time.monotonic(), "wall": time.time(), "machine": "env", "kind": kind,
                    **{k: encode(v) for k, v in fields.items()}})


def for_path(path: str | os.PathLike[str] | None) -> Tracer | None:
    """The process's tracer writing to ``path`` (None: tracing off)."""
    if not path:
        return None
    key = os.fspath(path)
    with _LOCK:
        tracer = _OPEN.get(key)
        if tracer is None:
            tracer = _OPEN[key] = Tracer(key)
        return tracer


def from_env() -> Tracer | None:
    """The tracer ``SSELAB_TRACE`` asks for, or None when it is unset."""
    return for_path(os.environ.get("SSELAB_TRACE") or None)
