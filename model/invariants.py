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
ordered-delivery          safety    on one stream event ids strictly increase (a browser's
                                    EventSource does not deduplicate); a client's cursor
                                    never moves backwards; each event is handed to the
                                    application at most once
revoked-stream-ends       safety    a stream whose token is revoked ends within the
                                    re-check bound once a re-check has found it
no-stream-without-cursor  safety    a client whose stream has delivered a message holds a
                                    cursor (a fresh browser is told the head on open), so
                                    its next reconnect resumes instead of skipping events
========================  ========  =======================================================

Bounds of "covered" (each clause starts a recovery within a stated time):

* a stream detector: the heartbeat monitor ends a silent stream within
  ``heartbeat_timeout + heartbeat_check_interval`` (:func:`stall_bound`; each stalled
  stream carries its age, so a monitor that keeps re-arming covers nothing after);
* an owed catch-up (a resync or probe during a replay) covers only while that
  replay runs; one that never starts covers nothing;
* a subscriber detector: a silent death is detected within ``sentinel_interval +
  sentinel_timeout`` (``detection-bound`` checks that clock), and a known-down
  subscriber resyncs its streams when it is ready again;
* a probe detector: a publish lost after its commit is read by the next head probe,
  within ``probe_interval``, then caught up by one replay; it covers only events past
  the head the session already knows;
* a signal on the wire (replay-truncated / replay-failed) reaches the client before
  any time passes.

:func:`covered` is the one definition of "covered" (DESIGN.md, "Making no
silent stale state checkable"); each engine gathers :class:`StaleFacts` about a
client from its own world and asks it. The judging of ``model.world`` states
lives here too, next to the names it implements: :func:`client_facts` gathers
the facts of a world client, :func:`violations` names the safety invariants a
state breaks, and :func:`converged` / :func:`undetected` are what the liveness
checks (the checker's graph, a heal phase) ask of each state. This module imports
the world's types; the world never imports it.
"""

from __future__ import annotations

from typing import NamedTuple

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.memo import Memo, remember
from model.world import (
    DELIVERY_FLAGS,
    FAILED_FLAGS,
    REAUTH_BOUND,
    ClientSlot,
    Frame,
    Link,
    Pub,
    State,
    StreamPhase,
    WorldConfig,
    seqs,
)
from model.world_shell import machine_configs

__all__ = [
    "BOUNDED_COUNTER",
    "BOUNDED_REPLAY",
    "CONVERGENCE",
    "DETECTION_BOUND",
    "FAILED_ONLY_AFTER_MAX",
    "INVARIANTS",
    "LIVENESS",
    "NO_SILENT_STALE",
    "NO_STREAM_WITHOUT_CURSOR",
    "REVOKED_STREAM_ENDS",
    "ORDERED_DELIVERY",
    "SAFETY",
    "SINGLE_STREAM",
    "InvariantInfo",
    "StaleFacts",
    "client_facts",
    "converged",
    "covered",
    "silently_stale",
    "stall_bound",
    "undetected",
    "violations",
]

BOUNDED_COUNTER = "bounded-counter"
FAILED_ONLY_AFTER_MAX = "failed-only-after-max"
BOUNDED_REPLAY = "bounded-replay"
NO_SILENT_STALE = "no-silent-stale"
DETECTION_BOUND = "detection-bound"
CONVERGENCE = "convergence"
SINGLE_STREAM = "single-stream"
ORDERED_DELIVERY = "ordered-delivery"
NO_STREAM_WITHOUT_CURSOR = "no-stream-without-cursor"
REVOKED_STREAM_ENDS = "revoked-stream-ends"


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
    InvariantInfo(ORDERED_DELIVERY, "safety",
                  "on one stream ids strictly increase; a cursor never moves backwards; each "
                  "event is applied at most once"),
    InvariantInfo(REVOKED_STREAM_ENDS, "safety",
                  "a stream whose token is revoked ends within the re-check bound"),
    InvariantInfo(NO_STREAM_WITHOUT_CURSOR, "safety",
                  "a client whose stream delivered a message holds a cursor (told the head on "
                  "open)"),
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
    probe_detector: bool = False  #: its replica's head probe is armed (a lost publish is read)


def covered(facts: StaleFacts) -> bool:
    """Whether every event the client misses is in flight or covered by a recovery."""
    if not facts.live or facts.missing <= facts.in_flight:
        return True
    return (facts.signal_pending or facts.stream_detector or facts.subscriber_detector
            or facts.probe_detector)


def silently_stale(facts: StaleFacts) -> bool:
    """Whether the client shows itself live while missing an uncovered event."""
    return not covered(facts)


# ---------------------------------------------------------------- judging world states


def _bit(seq: int) -> int:
    return 1 << (seq - 1)


def client_facts(cfg: WorldConfig, s: State, i: int) -> StaleFacts:
    """What the world knows about client i for ``no-silent-stale``."""
    slot = s.clients[i]
    db = s.db
    missing = db.committed & ~slot.applied
    if not missing:
        return StaleFacts(cl.is_live(slot.machine), 0, 0, False, False, False)
    flight = 0
    for phase, seq in s.pubs:
        if phase is Pub.COMMITTED:
            flight |= _bit(seq)
    signal = False
    stream_detector = False
    subscriber_detector = False
    probe_detector = False
    _, scfg, subcfg = machine_configs(cfg)  # built once per config, not once per judgement
    for stream in slot.streams:
        if stream.phase is StreamPhase.STALLED or slot.asleep:
            # the monitor covers a silent stream only within its bound (a monitor that
            # keeps re-arming without reconnecting covers nothing)
            stream_detector = stream_detector or (
                slot.heartbeat_left >= 0 and stream.stalled_for <= stall_bound(cfg))
        if stream.phase is StreamPhase.REGISTERED:
            for seq in stream.early:
                flight |= _bit(seq)
            for msg in s.replicas[stream.replica].queue:
                if msg > 0:
                    flight |= _bit(msg)
        if stream.phase is not StreamPhase.OPEN:
            continue
        for frame, seq in stream.wire:
            if frame is Frame.EVENT:
                flight |= _bit(seq)
            elif frame is not Frame.HEAD:
                signal = True
        sess = stream.session
        if sess is not None:
            for seq in sess.buffer:
                flight |= _bit(seq)
            if stream.query is not None and se.owed_catch_up(scfg, sess):
                # a catch-up to the head it learnt of is owed after the running query (only
                # while that query runs: an owed catch-up that never starts covers nothing)
                for seq in seqs(missing):
                    if sess.cursor < seq <= sess.head:
                        flight |= _bit(seq)
            if stream.query is not None:
                q = stream.query
                top = q.upto if q.upto is not None else db.head
                for seq in seqs(missing):
                    if q.after < seq <= top:
                        flight |= _bit(seq)
        rep = s.replicas[stream.replica]
        if cfg.fixes.head_probe and rep.probe_left >= 0 and sess is not None:
            # the next probe reads the head and the session catches up: only past what the
            # session already knows (a head it learnt and never caught up to is not covered)
            for seq in seqs(missing):
                if seq > max(sess.cursor, sess.head):
                    probe_detector = True
        for msg in rep.queue:
            if msg > 0:
                flight |= _bit(msg)
        if cfg.fixes.subscriber_health:
            health = rep.subscriber.health
            if rep.link is Link.DEAD and health is sb.Health.HEALTHY and rep.sentinel_left >= 0:
                subscriber_detector = True
            if sb.will_resync(subcfg, rep.subscriber):
                subscriber_detector = True
    n_missing = bin(missing).count("1")
    n_flight = bin(missing & flight).count("1")
    return StaleFacts(cl.is_live(slot.machine), n_missing, n_flight, signal, stream_detector,
                      subscriber_detector, probe_detector)


def stall_bound(cfg: WorldConfig) -> int:
    """Ticks within which the heartbeat monitor must end a silent stream."""
    return cfg.heartbeat_timeout + cfg.heartbeat_check_interval


_COUNTER, _FAILED, _ORDERED, _CURSORLESS, _SINGLE, _REVOKED, _LIVE = (1 << n for n in range(7))


def _slot_breaches(cfg: WorldConfig, slot: ClientSlot) -> int:
    """What a client slot alone shows: a bit per breached invariant, and whether it is live."""
    m = slot.machine
    bits = 0
    if m.attempts != slot.attempts_started or m.attempts > cfg.max_attempts:
        bits |= _COUNTER
    if slot.flags & FAILED_FLAGS or (m.status is cl.Status.FAILED and m.last_event_id is not None):
        bits |= _FAILED
    if slot.flags & DELIVERY_FLAGS:
        bits |= _ORDERED
    if (m.last_event_id is None and m.status is cl.Status.CONNECTED and slot.streams
            and slot.streams[-1].heard):
        bits |= _CURSORLESS
    if len(slot.streams) > 1:
        bits |= _SINGLE
    if any(st.revoked_for > REAUTH_BOUND and st.phase is StreamPhase.OPEN for st in slot.streams):
        bits |= _REVOKED
    if cl.is_live(m):
        bits |= _LIVE
    return bits


def violations(cfg: WorldConfig, s: State, memo: Memo | None = None) -> list[str]:
    """Names of the safety invariants state ``s`` of ``cfg`` violates (empty when all hold).

    ``memo`` (the one ``model.world.enabled`` is given) remembers what each client slot
    alone shows; the verdict is the same without it.
    """
    out: list[str] = []
    bits = 0
    stale = False
    judged = memo.judged if memo is not None else None
    for i, slot in enumerate(s.clients):
        if judged is None:
            mine = _slot_breaches(cfg, slot)
        else:
            hit = judged.get(id(slot))
            if hit is not None and hit[0] is slot:
                mine = hit[1]
            else:
                mine = remember(judged, slot, _slot_breaches(cfg, slot))
        bits |= mine
        if not stale and mine & _LIVE and not covered(client_facts(cfg, s, i)):
            stale = True
    counter, failed, ordered = bits & _COUNTER, bits & _FAILED, bits & _ORDERED
    cursorless, single, revoked = bits & _CURSORLESS, bits & _SINGLE, bits & _REVOKED
    if counter:
        out.append(BOUNDED_COUNTER)
    if failed:
        out.append(FAILED_ONLY_AFTER_MAX)
    if s.overrun > 0:
        out.append(BOUNDED_REPLAY)
    if stale:
        out.append(NO_SILENT_STALE)
    if any(rep.dead_for > cfg.detection_bound for rep in s.replicas):
        out.append(DETECTION_BOUND)
    if single:
        out.append(SINGLE_STREAM)
    if ordered:
        out.append(ORDERED_DELIVERY)
    if cursorless:
        out.append(NO_STREAM_WITHOUT_CURSOR)
    if revoked:
        out.append(REVOKED_STREAM_ENDS)
    return out


def converged(cfg: WorldConfig, s: State, i: int) -> bool:
    """Whether client i is live and has applied every committed event."""
    slot = s.clients[i]
    return cl.is_live(slot.machine) and not (s.db.committed & ~slot.applied)


def undetected(cfg: WorldConfig, s: State, r: int) -> bool:
    """Whether replica r's subscriber link is dead while it still reports healthy."""
    rep = s.replicas[r]
    return rep.link is Link.DEAD and (not cfg.fixes.subscriber_health
                                      or rep.subscriber.health is sb.Health.HEALTHY)
