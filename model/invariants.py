"""What "verified" means: the named invariants every engine checks.

Names are used verbatim by the checker, the Hypothesis tests, the SimPy metrics,
the service's tests and every report, so a violation reads the same anywhere.

========================  ========  =======================================================
name                      kind      it holds when
========================  ========  =======================================================
bounded-counter           safety    the reconnect counter equals the connection attempts
                                    really started since the last stable connection, and
                                    never exceeds the maximum
failed-only-after-max     safety    ``failed`` is reached only after the maximum of real
                                    attempts; it clears the cursor; only recover() (or an
                                    online / visible trigger) leaves it, re-hydrating
                                    before it streams
bounded-replay            safety    no replay reads more than ``limit + 1`` rows
no-silent-stale           safety    a client that shows itself live and not re-hydrating
                                    has every committed event of its topic applied, on its
                                    way, or covered by a detector or signal that starts a
                                    recovery within a stated bound (:func:`covered`)
detection-bound           safety+   a silently dead subscriber is detected within the
                          liveness  sentinel interval plus its timeout
convergence               liveness  once faults stop, every client ends live and up to
                                    date, or ``failed`` and, after recover(), live and up
                                    to date
single-stream             safety    a client never holds two open streams
========================  ========  =======================================================

:func:`covered` is the one definition of "covered" (DESIGN.md, "Making no
silent stale state checkable"); each engine gathers :class:`StaleFacts` about a
client from its own world and asks it. World-level predicates live at the end of
this module, next to the names they implement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from model.world import World

__all__ = [
    "BOUNDED_COUNTER",
    "BOUNDED_REPLAY",
    "CONVERGENCE",
    "DETECTION_BOUND",
    "FAILED_ONLY_AFTER_MAX",
    "INVARIANTS",
    "LIVENESS",
    "NO_SILENT_STALE",
    "SAFETY",
    "SINGLE_STREAM",
    "InvariantInfo",
    "StaleFacts",
    "check",
    "covered",
    "silently_stale",
]

BOUNDED_COUNTER = "bounded-counter"
FAILED_ONLY_AFTER_MAX = "failed-only-after-max"
BOUNDED_REPLAY = "bounded-replay"
NO_SILENT_STALE = "no-silent-stale"
DETECTION_BOUND = "detection-bound"
CONVERGENCE = "convergence"
SINGLE_STREAM = "single-stream"


class InvariantInfo(NamedTuple):
    """An invariant's name, whether it is a safety or liveness property, and its meaning."""

    name: str
    kind: str
    doc: str


INVARIANTS: tuple[InvariantInfo, ...] = (
    InvariantInfo(BOUNDED_COUNTER, "safety",
                  "the reconnect counter equals the attempts really started since the last "
                  "stable connection and never exceeds the maximum"),
    InvariantInfo(FAILED_ONLY_AFTER_MAX, "safety",
                  "failed only after max real attempts; it clears the cursor; only recover() "
                  "leaves it, re-hydrating before streaming"),
    InvariantInfo(BOUNDED_REPLAY, "safety", "no replay reads more than limit + 1 rows"),
    InvariantInfo(NO_SILENT_STALE, "safety",
                  "a live, not re-hydrating client misses no committed event that is not "
                  "in flight or covered by a detector or signal"),
    InvariantInfo(DETECTION_BOUND, "safety",
                  "a silently dead subscriber is detected within sentinel interval + timeout"),
    InvariantInfo(CONVERGENCE, "liveness",
                  "after the last fault every client ends live and up to date, or failed and, "
                  "after recover(), live and up to date"),
    InvariantInfo(SINGLE_STREAM, "safety", "a client never holds two open streams"),
)

#: Names of the invariants checked on every state.
SAFETY: tuple[str, ...] = tuple(i.name for i in INVARIANTS if i.kind == "safety")
#: Names of the invariants checked on whole runs (the checker's graph, a heal phase).
LIVENESS: tuple[str, ...] = (CONVERGENCE, DETECTION_BOUND)


class StaleFacts(NamedTuple):
    """What an engine knows about one client when judging ``no-silent-stale``.

    ``missing`` counts committed events of the client's topic it has not applied;
    ``in_flight`` how many of those are on their way to it (in Redis towards its
    replica, buffered in its session, on the wire, or inside a running replay).
    """

    live: bool  #: connected and not re-hydrating (model.client.is_live)
    missing: int
    in_flight: int
    signal_pending: bool  #: replay-truncated / replay-failed on its way to the client
    stream_detector: bool  #: its stream is silently dead and its heartbeat monitor is armed
    subscriber_detector: bool  #: its replica's subscriber is dead and the sentinel is armed,
    #: or the subscriber is known down and will resync its streams when it recovers


def covered(facts: StaleFacts) -> bool:
    """Whether every event the client misses is in flight or covered by a recovery."""
    if not facts.live or facts.missing <= facts.in_flight:
        return True
    return facts.signal_pending or facts.stream_detector or facts.subscriber_detector


def silently_stale(facts: StaleFacts) -> bool:
    """Whether the client shows itself live while missing an uncovered event."""
    return not covered(facts)


def check(world: World) -> list[str]:
    """Names of the safety invariants ``world`` violates (empty when all hold)."""
    from model.world import violations

    return violations(world)
