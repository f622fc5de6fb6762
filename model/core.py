"""The contract every sselab machine follows: inputs, actions, errors, event ids.

Every machine in ``model/`` is a pure function ``step(config, state, event) ->
(state, actions)``. This module holds what they share:

* :class:`Input` and :class:`Action`, the base classes of every machine's inputs
  and outputs. Both are frozen, keyword-only dataclasses whose reprs paste back as
  Python, so a counterexample printed by Hypothesis or the checker can be re-run.
* Time is an argument: every input carries ``now`` (seconds in the service and
  the simulation, ticks in the world). A machine never reads a clock; it asks the
  shell for a timer with :class:`StartTimer` and hears back with the machine's own
  ``TimerFired`` input.
* Randomness is an argument: an input that may schedule a jittered delay carries
  ``u``, a uniform draw in [0, 1).
* :class:`LocalProtocolError` is raised when *our* shell fed a machine an input its
  state does not accept (a bug in the caller); :class:`RemoteProtocolError` when the
  peer sent something malformed (a bad ``Last-Event-ID``). Either leaves the state
  the caller holds untouched, because states are immutable.
* :func:`dispatch` is the one action-dispatch contract of every shell: a table from
  action class to handler, where an action the shell has no entry for raises
  :class:`UnhandledActionError` -- loudly, in every engine, never dropped.
* :class:`EventId` is the wire form ``"{epoch}-{seq}"`` of an event id.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "Action",
    "CancelTimer",
    "EventId",
    "Input",
    "LocalProtocolError",
    "Log",
    "ProtocolError",
    "RemoteProtocolError",
    "StartTimer",
    "UnhandledActionError",
    "dispatch",
    "ignore",
]


class ProtocolError(Exception):
    """A machine refused an input; ``hint`` says what to do about it."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message if not hint else f"{message} ({hint})")
        self.message = message
        self.hint = hint


class LocalProtocolError(ProtocolError):
    """The caller (our own shell) gave a machine an input its state cannot take."""


class RemoteProtocolError(ProtocolError):
    """The remote peer sent something malformed or not allowed."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Input:
    """Base of every machine input; ``now`` is the time the input happened."""

    now: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """Base of every action a machine asks its shell to carry out."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StartTimer(Action):
    """Arm (or re-arm) the named timer to fire at absolute time ``at``."""

    timer: str
    at: float


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CancelTimer(Action):
    """Disarm the named timer; cancelling a timer that is not armed is fine."""

    timer: str


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Log(Action):
    """Write a structured log line; ``fields`` are key/value pairs."""

    level: str
    message: str
    fields: tuple[tuple[str, Any], ...] = ()


class UnhandledActionError(LocalProtocolError):
    """A shell was asked to carry out an action it has no handler for."""


Handlers = Mapping[type[Action], Callable[..., object]]


def ignore(*args: object) -> None:
    """A handler for actions a shell deliberately does not carry out (say why where used)."""


def dispatch(handlers: Handlers, actions: Iterable[Action], *context: object, shell: str) -> None:
    """Carry out ``actions`` by ``handlers[type(action)](*context, action)``; unknown ones raise."""
    for action in actions:
        handler = handlers.get(action.__class__)
        if handler is None:
            known = ", ".join(sorted(t.__name__ for t in handlers))
            raise UnhandledActionError(
                f"{shell} cannot carry out {action!r}",
                hint=f"add a handler for {action.__class__.__name__} to its table; it handles {known}",
            )
        handler(*context, action)


_EVENT_ID = re.compile(r"^(0|[1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})$")


class EventId(NamedTuple):
    """An event's position: the topic's ``epoch`` and its ``seq`` within it.

    The epoch changes when a topic's log is reset or restored, so a cursor from
    before the reset is recognised as unknown instead of silently matching.
    """

    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """Parse the wire form ``"EPOCH-SEQ"``; raise RemoteProtocolError if malformed."""
        match = _EVENT_ID.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            shown = text if len(str(text)) <= 40 else str(text)[:40] + "..."
            raise RemoteProtocolError(
                f"malformed event id {shown!r}",
                hint="an event id is EPOCH-SEQ, two non-negative integers, e.g. '0-42'",
            )
        return cls(int(match.group(1)), int(match.group(2)))
