"""The attempts witness: what ``bounded-counter`` judges the client's counter against.

What it owns. An independent count of the connection attempts a client *really*
started since its last stable connection, kept beside the client machine by every
engine (the checker's world, the SimPy fleet, the Hypothesis tests, the service's
client and ``sselab conform``), so they all judge the counter the same way.

It is a reducer: feed it each input the client machine took, the states before and
after, and the actions the machine produced; it returns the new witness. It never
reads the machine's own counter, so a machine bug cannot hide behind it.

Rules (DESIGN.md, "bounded counter").

* ``Start`` begins a new count, and so does leaving ``failed`` (``recover()`` or an
  online / visible trigger): the user asked for a fresh start.
* Every ``OpenStream`` action is one attempt really started.
* The first message on a stream (an event, a heartbeat, a control event) makes the
  connection stable: the count restarts at zero. Later messages change nothing.

The machine's ``stable-reset`` fix states the same rule from the inside; with it off
the machine resets on open instead, and the witness shows the difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from model import client as cl
from model.core import Action

__all__ = ["MESSAGES", "AttemptsWitness", "observe"]

#: Client inputs that are a message arriving on the current stream.
MESSAGES: tuple[type[cl.ClientInput], ...] = (
    cl.EventReceived, cl.HeartbeatReceived, cl.HeadAnnounced, cl.ReplayTruncated, cl.ReplayFailed,
)


class AttemptsWitness(NamedTuple):
    """Attempts really started since the last stable connection, and whether the
    current stream has delivered a message yet."""

    started: int = 0
    heard: bool = False


def observe(witness: AttemptsWitness, event: cl.ClientInput, before: cl.ClientState,
            after: cl.ClientState, actions: Iterable[Action]) -> AttemptsWitness:
    """The witness after the client machine took ``event`` and produced ``actions``."""
    started, heard = witness
    if isinstance(event, cl.Start) or (before.status is cl.Status.FAILED
                                       and after.status is not cl.Status.FAILED):
        started, heard = 0, False
    if isinstance(event, MESSAGES) and before.stream and not heard:
        started, heard = 0, True
    for action in actions:
        if action.__class__ is cl.OpenStream:
            started, heard = started + 1, False
    if (started, heard) == witness:
        return witness
    return AttemptsWitness(started, heard)
