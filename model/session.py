"""One SSE connection on a replica: bounded replay, signals, live fan-out, gaps.

What it owns. From the moment a replica accepts a client's stream until it
closes: the cursor (the last sequence number the client has been sent, or told
about), whether a replay query is running, and the live events that arrived
meanwhile. It decides what to replay, when a gap is too large to replay, what to
tell the client when replay fails, and when a hole in the live sequence needs a
catch-up. The shell runs the queries, writes the frames and reads the topic row.

Order of work on open. The shell subscribes the stream to live fan-out first,
then reads the topic row (``TopicHead``: epoch, head, retention floor) and
passes it with ``Open``. Every event committed after that read arrives live, so
the replay only has to cover ``(last, head]``.

Rules.

* **Bounded replay** (seed item 1, ``bounded-replay``). A replay never asks for
  more than ``replay_limit + 1`` rows; getting ``limit + 1`` back means the gap is
  too large: the session sends ``replay-truncated`` with the head, and the
  client re-hydrates. Off: the query has no limit and nothing is signalled.
* **Gap from the head** (``gap-from-head``). When ``head - last > limit`` the
  session answers ``replay-truncated`` without reading a row: a stale client
  costs O(1) rows. The query is bounded by ``seq <= head`` too.
* **Retention floor** (``retention-floor``). A cursor below the oldest kept row
  is ``replay-truncated`` (reason ``expired``), never "caught up" from the first
  rows that are left.
* **Epoch** (``event-epoch``). A cursor of another epoch, or beyond the head, is
  ``replay-truncated`` (reason ``unknown-id``).
* **Replay failure** (seed item 2, ``replay-failed-signal``). A failed query
  sends ``replay-failed``; off, it is logged and swallowed.
* **Live order and gaps** (``topic-sequence``). Live events are sent in sequence
  order; a duplicate is dropped; a hole (``seq > cursor + 1``) starts a catch-up
  replay of the hole, buffering what arrives meanwhile. Off (ids from a shared
  sequence with holes), holes cannot be told from gaps: every newer id is sent
  and an older one dropped.
* **Resync** (``resync-after-recovery``). When the replica's subscriber recovers,
  ``Resync`` makes a live stream catch up from its cursor to the head; a resync
  that arrives during a query is owed after it (:func:`owed_catch_up`). When the
  head read a resync needs fails (``ResyncFailed``), the session ends the stream
  (``EndStream``): the client reconnects with its cursor and its replay catches up.
* **Re-authorization** (``reauthorize``). When a re-check finds the stream's token
  revoked or expired (``Revoked``: the shell checks on every replay and every
  re-check interval), the session ends the stream (``EndStream``); the client may
  reconnect only with a valid token. Off: the stream keeps streaming.
* **Head announcement** (``announce-head``). A stream opened without a cursor goes
  live from the head and announces it (``AnnounceHead``: an id-only message, which a
  browser's ``EventSource`` adopts as its ``lastEventId``), so the client's next
  reconnect resumes from there instead of from a later head.
* **Head probe** (``head-probe``). Every probe interval the shell reads the
  topic head (batched per topic; ``SSELAB_PROBE_S`` in the service) and feeds
  ``HeadProbed``; a head past the cursor
  means a publish was lost after its commit, and the session catches up. Bound: a
  lost publish reaches every open stream within one probe interval plus one replay.
* Heartbeats go out when the stream has written nothing for ``heartbeat_interval``:
  every frame the session writes (an event, a head announcement, a truncation or
  failure signal) re-arms the heartbeat. The client's monitor is reset by any
  message, so any frame proves the connection; a stream that carries events
  needs no heartbeats, and a thousand busy streams do not write a thousand more
  frames every interval.

States (``phase``):

=========  ===============================================  ===================
phase      meaning                                          timers armed
=========  ===============================================  ===================
replaying  a replay or catch-up query is running            heartbeat
live       sending live events in order                     heartbeat
closed     the stream is gone                               none
=========  ===============================================  ===================
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Callable
from typing import NamedTuple

from model.core import (
    Action,
    CancelTimer,
    EventId,
    Input,
    LocalProtocolError,
    Log,
    StartTimer,
)
from model.fixes import Fixes

__all__ = [
    "HEARTBEAT",
    "Close",
    "LiveEvent",
    "Open",
    "Phase",
    "QueryReplay",
    "ReplayError",
    "ReplayRows",
    "Resync",
    "ResyncFailed",
    "Revoked",
    "Send",
    "SendFailed",
    "SendHeartbeat",
    "SendTruncated",
    "SessionConfig",
    "SessionInput",
    "SessionState",
    "EndStream",
    "AnnounceHead",
    "HeadProbed",
    "TRANSITIONS",
    "TimerFired",
    "TopicHead",
    "TruncateReason",
    "initial",
    "owed_catch_up",
    "step",
]

HEARTBEAT = "heartbeat"


class Phase(enum.Enum):
    """Where a session is."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    NEW = "new"  #: accepted, waiting for Open
    REPLAYING = "replaying"  #: a replay or catch-up query is running
    LIVE = "live"  #: sending live events in order
    CLOSED = "closed"  #: the stream is gone


class TruncateReason(enum.Enum):
    """Why a replay was not served in full."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    GAP = "gap"  #: more than the limit was missed
    EXPIRED = "expired"  #: the cursor is older than the retention floor
    UNKNOWN_ID = "unknown-id"  #: the cursor is from another epoch or beyond the head


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SessionConfig:
    """A replica's replay limit, heartbeat interval and fixes."""

    replay_limit: int = 1000
    heartbeat_interval: float = 5.0
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        if self.replay_limit < 1:
            raise ValueError(f"replay_limit must be at least 1, got {self.replay_limit}")


class TopicHead(NamedTuple):
    """The topic row: its epoch, highest committed seq and retention floor.

    ``floor`` is the highest seq *no longer kept*: rows ``floor+1 .. head`` exist.
    """

    epoch: int
    head: int
    floor: int = 0


class SessionState(NamedTuple):
    """A session's whole state."""

    phase: Phase = Phase.NEW
    epoch: int = 0
    cursor: int = 0  #: last seq sent to (or covered for) the client
    head: int = 0  #: the head read at open, or at the last resync
    buffer: tuple[int, ...] = ()  #: live seqs that arrived during a query, sorted
    upto: int | None = None  #: upper bound of the running query


def initial() -> SessionState:
    """A session that has been accepted and waits for ``Open``."""
    return SessionState()


# ---------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SessionInput(Input):
    """Base of the session's inputs."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Open(SessionInput):
    """The stream is accepted; ``last_event_id`` is the client's cursor, ``topic`` its row."""

    last_event_id: EventId | None
    topic: TopicHead


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ReplayRows(SessionInput):
    """The running query returned these seqs, in order, and the floor it saw."""

    seqs: tuple[int, ...]
    floor: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ReplayError(SessionInput):
    """The running query failed (error, timeout, terminated backend)."""

    reason: str = "replay query failed"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LiveEvent(SessionInput):
    """The replica's subscriber fanned out an event of this stream's topic.

    ``epoch`` is the event id's epoch when the shell knows it; an event of another
    epoch than the stream's is not part of its sequence and is dropped (``event-epoch``).
    """

    seq: int
    epoch: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Resync(SessionInput):
    """The subscriber recovered: catch up to ``topic.head``."""

    topic: TopicHead


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HeadProbed(SessionInput):
    """The periodic head probe read the topic row: catch up if the head passed the cursor.

    A publish lost after its commit (Redis down, the process died between commit and
    publish) never arrives live; the probe is what brings it (fix ``head-probe``).
    """

    topic: TopicHead


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Revoked(SessionInput):
    """A re-check found the stream's token revoked or expired (on a replay or periodically)."""

    reason: str = "revoked"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ResyncFailed(SessionInput):
    """The head read a resync needs failed (error, timeout, terminated backend)."""

    reason: str = "head read failed"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TimerFired(SessionInput):
    """The heartbeat timer is due."""

    timer: str = HEARTBEAT


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Close(SessionInput):
    """The client went away or the replica is closing the stream."""


# ---------------------------------------------------------------- actions


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class QueryReplay(Action):
    """Read rows ``after < seq [<= upto]`` in order, at most ``limit`` (None: unbounded)."""

    after: int
    upto: int | None
    limit: int | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Send(Action):
    """Write this event to the stream."""

    event_id: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SendTruncated(Action):
    """Write ``replay-truncated`` with the head, the limit and the reason."""

    head: EventId
    limit: int
    reason: TruncateReason


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SendFailed(Action):
    """Write ``replay-failed`` with the reason."""

    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SendHeartbeat(Action):
    """Write a heartbeat."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class AnnounceHead(Action):
    """Write an id-only message whose ``id:`` is the head: the client's cursor from now on."""

    head: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EndStream(Action):
    """End the stream cleanly; the client reconnects and resumes from its cursor."""

    reason: str


Actions = list[Action]
Handler = Callable[[SessionConfig, SessionState, SessionInput], tuple[SessionState, Actions]]


# ---------------------------------------------------------------- helpers


def _query(cfg: SessionConfig, s: SessionState, after: int, upto: int | None,
           acts: Actions) -> SessionState:
    limit = cfg.replay_limit + 1 if cfg.fixes.bounded_replay else None
    if not cfg.fixes.gap_from_head:
        upto = None
    acts.append(QueryReplay(after=after, upto=upto, limit=limit))
    return s._replace(phase=Phase.REPLAYING, upto=upto)


def _truncate(cfg: SessionConfig, s: SessionState, reason: TruncateReason, acts: Actions
              ) -> SessionState:
    acts.append(SendTruncated(head=EventId(s.epoch, s.head), limit=cfg.replay_limit,
                              reason=reason))
    return s._replace(cursor=max(s.cursor, s.head))


def _send(s: SessionState, seq: int, acts: Actions) -> SessionState:
    acts.append(Send(event_id=EventId(s.epoch, seq)))
    return s._replace(cursor=seq)


def _live(cfg: SessionConfig, s: SessionState, seq: int, acts: Actions) -> SessionState:
    """One live seq while live: send it, drop it, or start a catch-up for the hole."""
    if seq <= s.cursor:
        return s  # duplicate (or, without topic-sequence, an id that committed late)
    if not cfg.fixes.topic_sequence or seq == s.cursor + 1:
        return _send(s, seq, acts)
    # A hole: catch up (cursor, seq - 1] and hold `seq` until then.
    s = s._replace(buffer=_insert(s.buffer, seq), head=max(s.head, seq))
    return _catch_up(cfg, s, seq - 1, acts)


def _catch_up(cfg: SessionConfig, s: SessionState, upto: int, acts: Actions) -> SessionState:
    if cfg.fixes.bounded_replay and cfg.fixes.gap_from_head and upto - s.cursor > cfg.replay_limit:
        s = _truncate(cfg, s._replace(head=max(s.head, upto)), TruncateReason.GAP, acts)
        return _flush(cfg, s._replace(phase=Phase.LIVE), acts)
    return _query(cfg, s, s.cursor, upto, acts)


def _insert(buffer: tuple[int, ...], seq: int) -> tuple[int, ...]:
    if seq in buffer:
        return buffer
    return tuple(sorted((*buffer, seq)))


def _flush(cfg: SessionConfig, s: SessionState, acts: Actions) -> SessionState:
    """After a query: hand the buffered live events to the live path, in order."""
    buffer = s.buffer
    s = s._replace(buffer=(), upto=None, phase=Phase.LIVE)
    for i, seq in enumerate(buffer):
        s = _live(cfg, s, seq, acts)
        if s.phase is Phase.REPLAYING:  # a new hole: keep the rest for later
            rest = buffer[i + 1 :]
            return s._replace(buffer=tuple(sorted(set(s.buffer) | set(rest))))
    if owed_catch_up(cfg, s):
        return _catch_up(cfg, s, s.head, acts)  # a resync arrived during the query
    return s


def owed_catch_up(cfg: SessionConfig, s: SessionState) -> bool:
    """Whether the session owes a catch-up to a head beyond what its running query brings."""
    return s.head > max(s.cursor, s.upto or 0) and (cfg.fixes.resync_after_recovery
                                                     or cfg.fixes.head_probe)


# ---------------------------------------------------------------- handlers


def _on_open(cfg: SessionConfig, s: SessionState, e: SessionInput) -> tuple[SessionState, Actions]:
    assert isinstance(e, Open)
    topic = e.topic
    fx = cfg.fixes
    acts: Actions = [StartTimer(timer=HEARTBEAT, at=e.now + cfg.heartbeat_interval)]
    n = SessionState(phase=Phase.LIVE, epoch=topic.epoch, cursor=topic.head, head=topic.head)
    last = e.last_event_id
    if last is None:  # no cursor: live from the head on, and tell the client where that is
        if fx.announce_head:
            acts.append(AnnounceHead(head=EventId(topic.epoch, topic.head)))
        return n, acts
    if fx.bounded_replay:
        reason: TruncateReason | None = None
        if (fx.event_epoch and last.epoch != topic.epoch) or last.seq > topic.head:
            reason = TruncateReason.UNKNOWN_ID
        elif fx.retention_floor and last.seq < topic.floor:
            reason = TruncateReason.EXPIRED
        elif fx.gap_from_head and topic.head - last.seq > cfg.replay_limit:
            reason = TruncateReason.GAP
        if reason is not None:
            return _truncate(cfg, n, reason, acts), acts
    if last.seq >= topic.head:
        return n._replace(cursor=last.seq), acts  # caught up: nothing to read
    n = n._replace(cursor=last.seq)
    return _query(cfg, n, last.seq, topic.head, acts), acts


def _on_rows(cfg: SessionConfig, s: SessionState, e: SessionInput) -> tuple[SessionState, Actions]:
    assert isinstance(e, ReplayRows)
    acts: Actions = []
    seqs = e.seqs
    if any(b <= a for a, b in itertools.pairwise(seqs)) or (seqs and seqs[0] <= s.cursor):
        raise LocalProtocolError(f"replay rows {seqs!r} are not ascending after {s.cursor}",
                                 hint="order the replay query by seq and filter seq > after")
    if cfg.fixes.bounded_replay and cfg.fixes.retention_floor and e.floor > s.cursor:
        # Rows after the cursor were pruned while we were not looking: not caught up.
        n = s._replace(head=max(s.head, s.upto or 0, seqs[-1] if seqs else 0))
        n = _truncate(cfg, n, TruncateReason.EXPIRED, acts)
        return _flush(cfg, n, acts), acts
    if cfg.fixes.bounded_replay and len(seqs) > cfg.replay_limit:
        n = s._replace(head=max(s.head, seqs[-1]))
        n = _truncate(cfg, n, TruncateReason.GAP, acts)
        acts.append(Log(level="warning", message="replay truncated",
                        fields=(("rows", len(seqs)), ("limit", cfg.replay_limit))))
        return _flush(cfg, n, acts), acts
    n = s
    for seq in seqs:
        n = _send(n, seq, acts)
    if s.upto is not None and n.cursor < s.upto:
        n = n._replace(cursor=s.upto)  # rows the query bound covered but that are gone
    return _flush(cfg, n, acts), acts


def _on_error(cfg: SessionConfig, s: SessionState, e: SessionInput) -> tuple[SessionState, Actions]:
    assert isinstance(e, ReplayError)
    acts: Actions = []
    upto = s.upto if s.upto is not None else s.head
    if cfg.fixes.replay_failed_signal:
        acts.append(SendFailed(reason=e.reason))
        acts.append(Log(level="error", message="replay failed; client told to re-hydrate",
                        fields=(("reason", e.reason),)))
    else:
        acts.append(Log(level="error", message="replay failed", fields=(("reason", e.reason),)))
    n = s._replace(cursor=max(s.cursor, upto))
    return _flush(cfg, n, acts), acts


def _on_live(cfg: SessionConfig, s: SessionState, e: SessionInput) -> tuple[SessionState, Actions]:
    assert isinstance(e, LiveEvent)
    acts: Actions = []
    if cfg.fixes.event_epoch and e.epoch is not None and e.epoch != s.epoch:
        return s, acts  # another epoch's log: not this stream's sequence
    if s.phase is Phase.REPLAYING:
        if e.seq <= s.cursor:
            return s, acts
        return s._replace(buffer=_insert(s.buffer, e.seq)), acts
    return _live(cfg, s, e.seq, acts), acts


def _on_resync(cfg: SessionConfig, s: SessionState, e: SessionInput
               ) -> tuple[SessionState, Actions]:
    assert isinstance(e, Resync)
    acts: Actions = []
    if not cfg.fixes.resync_after_recovery:
        return s, acts
    if s.phase is Phase.REPLAYING:
        # The running query ends at `upto`; remember the new head via the buffer path.
        return s._replace(head=max(s.head, e.topic.head)), acts
    n = s._replace(head=max(s.head, e.topic.head))
    if n.head <= n.cursor:
        return n, acts
    return _catch_up(cfg, n, n.head, acts), acts


def _on_probe(cfg: SessionConfig, s: SessionState, e: SessionInput
              ) -> tuple[SessionState, Actions]:
    assert isinstance(e, HeadProbed)
    acts: Actions = []
    if not cfg.fixes.head_probe or e.topic.head <= max(s.cursor, s.head):
        return s, acts
    if s.phase is Phase.REPLAYING:
        return s._replace(head=e.topic.head), acts  # owed after the running query
    acts.append(Log(level="warning", message="head probe found events never delivered live",
                    fields=(("cursor", s.cursor), ("head", e.topic.head))))
    return _catch_up(cfg, s._replace(head=e.topic.head), e.topic.head, acts), acts


def _on_revoked(cfg: SessionConfig, s: SessionState, e: SessionInput
                ) -> tuple[SessionState, Actions]:
    assert isinstance(e, Revoked)
    if not cfg.fixes.reauthorize:
        return s, [Log(level="warning", message="token revoked; stream kept (reauthorize off)",
                       fields=(("reason", e.reason),))]
    acts: Actions = [
        EndStream(reason=e.reason),
        Log(level="info", message="token no longer valid; ending the stream",
            fields=(("reason", e.reason),)),
        CancelTimer(timer=HEARTBEAT),
    ]
    return s._replace(phase=Phase.CLOSED, buffer=(), upto=None), acts


def _on_resync_failed(cfg: SessionConfig, s: SessionState, e: SessionInput
                      ) -> tuple[SessionState, Actions]:
    assert isinstance(e, ResyncFailed)
    if not cfg.fixes.resync_after_recovery:
        return s, []
    # Without the head the session cannot tell what it missed while the subscriber was
    # down. Ending the stream makes the client reconnect with its cursor, and that
    # replay (bounded, with its own failure signal) catches it up: the only path that
    # needs no second guess about the head.
    acts: Actions = [
        EndStream(reason="resync-failed"),
        Log(level="warning", message="resync head read failed; ending the stream",
            fields=(("reason", e.reason),)),
        CancelTimer(timer=HEARTBEAT),
    ]
    return s._replace(phase=Phase.CLOSED, buffer=(), upto=None), acts


def _on_timer(cfg: SessionConfig, s: SessionState, e: SessionInput
              ) -> tuple[SessionState, Actions]:
    assert isinstance(e, TimerFired)
    if e.timer != HEARTBEAT:
        raise LocalProtocolError(f"unknown session timer {e.timer!r}",
                                 hint=f"the session's only timer is {HEARTBEAT!r}")
    return s, [SendHeartbeat(), StartTimer(timer=HEARTBEAT, at=e.now + cfg.heartbeat_interval)]


def _on_close(cfg: SessionConfig, s: SessionState, e: SessionInput
              ) -> tuple[SessionState, Actions]:
    return s._replace(phase=Phase.CLOSED, buffer=(), upto=None), [CancelTimer(timer=HEARTBEAT)]


N, R, L = Phase.NEW, Phase.REPLAYING, Phase.LIVE

#: (phase, input type) -> handler; a missing pair raises LocalProtocolError.
TRANSITIONS: dict[tuple[Phase, type[SessionInput]], Handler] = {
    (N, Open): _on_open,
    (N, Close): _on_close,
    (R, ReplayRows): _on_rows,
    (R, ReplayError): _on_error,
    (R, LiveEvent): _on_live,
    (L, LiveEvent): _on_live,
    (R, Resync): _on_resync,
    (L, Resync): _on_resync,
    (R, ResyncFailed): _on_resync_failed,
    (R, HeadProbed): _on_probe,
    (R, Revoked): _on_revoked,
    (L, Revoked): _on_revoked,
    (L, HeadProbed): _on_probe,
    (L, ResyncFailed): _on_resync_failed,
    (R, TimerFired): _on_timer,
    (L, TimerFired): _on_timer,
    (R, Close): _on_close,
    (L, Close): _on_close,
}


def step(cfg: SessionConfig, state: SessionState, event: SessionInput
         ) -> tuple[SessionState, list[Action]]:
    """Apply one input to a session; return its next state and the actions to carry out."""
    handler = TRANSITIONS.get((state.phase, event.__class__))
    if handler is None:
        raise LocalProtocolError(
            f"session in phase {state.phase.value!r} cannot take {event.__class__.__name__}",
            hint="accepted here: " + ", ".join(
                sorted(t.__name__ for (ph, t) in TRANSITIONS if ph is state.phase)),
        )
    n, actions = handler(cfg, state, event)
    if n.phase is not Phase.CLOSED and any(isinstance(a, _FRAMES) for a in actions) \
            and not any(isinstance(a, StartTimer) for a in actions):
        # A frame went out: the connection is proven, the next heartbeat is due an
        # interval from now (the session's only timer is the heartbeat).
        actions.append(StartTimer(timer=HEARTBEAT, at=event.now + cfg.heartbeat_interval))
    return n, actions


#: What the session writes on the wire besides heartbeats; each re-arms the heartbeat.
_FRAMES = (Send, SendTruncated, SendFailed, AnnounceHead)
