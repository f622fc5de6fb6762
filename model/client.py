"""The client stream: reconnects, heartbeat monitor, counter, cursor, recovery.

What it owns. One browser-like client's view of its event stream: whether it
holds a stream, the reconnect counter, the last event id it applied, whether it
is re-hydrating from a snapshot, and its two timers. It decides when to open and
close the stream, how long to back off, when the heartbeat monitor gives up on a
silent stream, when to give up altogether (``failed``), and how to recover. The
shell (SimPy, the service's httpx client, the checker's world) only performs the
actions and reports what happened.

Rules.

* **One stream at a time.** ``OpenStream`` is only ever emitted when the client
  holds none; every path that opens one first closes the old one.
* **The counter counts real attempts.** ``attempts`` is the number of
  ``OpenStream`` actions since the last stable connection (or since ``Start`` /
  ``recover()``). It resets when the first message (event, heartbeat or control
  event) arrives on a stream -- *not* on open, so a stream that opens and drops
  at once keeps backing off (fix ``stable-reset``; off: reset on open).
* **Heartbeat monitor** (seed item 3). While connected, the timer ``heartbeat``
  is armed ``heartbeat_timeout`` after the last message. When it fires, the
  stream is presumed dead: the monitor stops itself, the stream is closed and a
  new attempt starts at once. With ``heartbeat-guard`` off (the seed's code) the
  monitor instead keeps checking every ``heartbeat_check_interval`` seconds and
  bumps the counter on every check, reconnecting only when not already
  connecting: the inflated counter the seed describes.
* **Backoff.** A failed attempt or a dropped stream waits
  ``backoff.delay(policy, max(attempts, snapshot_failures) + 1, u, previous)`` in
  ``waiting``, then tries again (``snapshot_failures`` counts failed snapshot loads,
  so a snapshot that keeps failing backs off too).
* **Max attempts** (seed item 5). When an attempt fails and ``attempts`` has
  reached ``max_attempts``, the client is ``failed`` and its cursor is cleared.
  Only ``recover()`` -- or an online / visible trigger, which call it -- leaves
  ``failed``. With ``max-reconnect`` off it retries forever.
* **Re-hydration** (seed items 1, 2, 5). ``replay-truncated`` and
  ``replay-failed`` start a re-hydration while the stream stays up;
  ``recover()`` re-hydrates *before* opening a stream. The shell reads the
  topic's head cursor, then the snapshot (fix ``head-before-snapshot``; off:
  snapshot first, then head, which can skip events committed in between), and
  reports ``RehydrateDone(head=...)``; the client then resumes from that head.
* **Triggers.** ``Online`` and ``Visible`` wake only a ``waiting`` client (one
  attempt at once) or a ``failed`` one (``recover()``); in any other state they
  do nothing, so a burst of triggers merges into one attempt.
* **Idempotent delivery.** An event whose id is not newer than the cursor is a
  duplicate and is not delivered again.
* **No stream without a cursor** (``announce-head``). A client that has no cursor
  (a fresh browser) adopts the head the server announces when its stream opens
  (``HeadAnnounced``), so its next reconnect resumes from there. If that stream is
  lost before the announcement arrived, what it missed is unknown: the client
  re-hydrates before its next stream (the snapshot's head becomes its cursor). A
  snapshot must report the head it read: ``RehydrateDone`` without one is refused.

States (``status``; ``rehydrating`` and ``stream`` are orthogonal flags):

============  =====================================================  =====================
status        meaning                                                timers armed
============  =====================================================  =====================
idle          not started, or stopped                                none
connecting    an attempt is in flight (or recovery's snapshot is)    heartbeat (guard off)
connected     the stream is open                                     heartbeat
waiting       backing off before the next attempt                    backoff
failed        gave up after max attempts; cursor cleared             none
============  =====================================================  =====================

A client "shows itself live" when it is ``connected`` and not ``rehydrating``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import NamedTuple

from model.backoff import SEED_POLICY, BackoffPolicy, delay
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
    "BACKOFF",
    "HEARTBEAT",
    "ClientConfig",
    "ClientInput",
    "ClientState",
    "CloseStream",
    "Deliver",
    "EventReceived",
    "HeadAnnounced",
    "HeartbeatReceived",
    "Online",
    "OpenStream",
    "RehydrateDone",
    "RehydrateFailed",
    "Rehydration",
    "Recover",
    "ReplayFailed",
    "ReplayTruncated",
    "Start",
    "StartRehydrate",
    "Status",
    "StatusChanged",
    "Stop",
    "StreamClosed",
    "StreamFailed",
    "StreamOpened",
    "TRANSITIONS",
    "TimerFired",
    "Visible",
    "initial",
    "is_live",
    "step",
]

#: Timer names the client arms.
HEARTBEAT = "heartbeat"
BACKOFF = "backoff"


class Status(enum.Enum):
    """The status a client shows its user."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    IDLE = "idle"  #: not started, or stopped by the user
    CONNECTING = "connecting"  #: an attempt (or recovery's snapshot) is in flight
    CONNECTED = "connected"  #: the stream is open
    WAITING = "waiting"  #: backing off before the next attempt
    FAILED = "failed"  #: gave up after max attempts; only recover() leaves it


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """Timings (seconds, or ticks in the world), limits, policy and fixes of a client."""

    heartbeat_timeout: float = 10.0
    heartbeat_check_interval: float = 1.0
    max_attempts: int = 50
    policy: BackoffPolicy = SEED_POLICY
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.heartbeat_timeout <= 0 or self.heartbeat_check_interval <= 0:
            raise ValueError("heartbeat_timeout and heartbeat_check_interval must be positive")


class Rehydration(enum.Enum):
    """Where the client stands with its snapshot."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    NONE = "none"  #: no snapshot owed
    RUNNING = "running"  #: a snapshot load is in flight
    RETRY = "retry"  #: the last load failed; the next wake-up loads it again


class ClientState(NamedTuple):
    """A client's whole state: small, immutable and hashable."""

    status: Status = Status.IDLE
    attempts: int = 0
    last_event_id: EventId | None = None
    rehydration: Rehydration = Rehydration.NONE
    stream: bool = False  #: a stream is requested or open
    stable: bool = False  #: the current stream has delivered its first message
    monitor: bool = False  #: the heartbeat monitor is running
    last_delay: float = 0.0  #: the previous backoff delay (decorrelated jitter)
    snapshot_failures: int = 0  #: failed snapshot loads since the last one that worked

    @property
    def rehydrating(self) -> bool:
        """Whether the client owes itself a snapshot (loading or to retry)."""
        return self.rehydration is not Rehydration.NONE


def initial(last_event_id: EventId | None = None) -> ClientState:
    """A client that has not started, resuming from ``last_event_id`` when it does."""
    return ClientState(last_event_id=last_event_id)


def is_live(state: ClientState) -> bool:
    """Whether the client shows itself live: connected and not re-hydrating."""
    return state.status is Status.CONNECTED and not state.rehydrating


# ---------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ClientInput(Input):
    """Base of the client's inputs."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Start(ClientInput):
    """The application starts the stream."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Stop(ClientInput):
    """The application stops the stream (logout, unmount)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StreamOpened(ClientInput):
    """The server answered 200 with ``text/event-stream``."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StreamFailed(ClientInput):
    """The attempt failed before the stream opened (refused, 5xx, timeout)."""

    reason: str = "connect failed"
    u: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StreamClosed(ClientInput):
    """The open stream ended or errored."""

    reason: str = "stream closed"
    u: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EventReceived(ClientInput):
    """A data event arrived."""

    event_id: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HeartbeatReceived(ClientInput):
    """A heartbeat arrived."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HeadAnnounced(ClientInput):
    """The stream was opened without a cursor and the server told the head (an id-only message).

    A browser's ``EventSource`` adopts any message's ``id:`` as its ``lastEventId``, data
    or not, so the next reconnect resumes from here instead of from a later head.
    """

    head: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ReplayTruncated(ClientInput):
    """The server could not replay everything missed; ``head`` is the topic's head."""

    head: EventId
    reason: str = "gap"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ReplayFailed(ClientInput):
    """The server's replay query failed."""

    reason: str = "replay failed"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TimerFired(ClientInput):
    """A timer the client armed is due; ``u`` is a draw for any backoff it starts."""

    timer: str
    u: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Online(ClientInput):
    """The browser went online."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Visible(ClientInput):
    """The page became visible."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Recover(ClientInput):
    """The user pressed Retry: ``recover()``."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RehydrateDone(ClientInput):
    """The snapshot is loaded; ``head`` is the head cursor read for it."""

    head: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RehydrateFailed(ClientInput):
    """Loading the snapshot failed; ``u`` is a draw for the backoff."""

    reason: str = "snapshot failed"
    u: float = 0.0


# ---------------------------------------------------------------- actions


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OpenStream(Action):
    """Open a stream resuming after ``last_event_id`` (none: from now on)."""

    last_event_id: EventId | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CloseStream(Action):
    """Close the current stream (or abandon the attempt in flight)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Deliver(Action):
    """Hand a new event to the application."""

    event_id: EventId


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StartRehydrate(Action):
    """Load a full snapshot and report ``RehydrateDone(head)``.

    ``head_first``: read the head cursor before the snapshot (the safe order).
    """

    head_first: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class StatusChanged(Action):
    """The status shown to the user changed."""

    status: Status
    attempts: int


Actions = list[Action]
Handler = Callable[[ClientConfig, ClientState, ClientInput], tuple[ClientState, Actions]]


# ---------------------------------------------------------------- helpers


def _status(state: ClientState, old: ClientState, actions: Actions) -> ClientState:
    if state.status is not old.status:
        actions.append(StatusChanged(status=state.status, attempts=state.attempts))
    return state


def _open(cfg: ClientConfig, state: ClientState, now: float, actions: Actions, *, count: bool = True
          ) -> ClientState:
    """Start an attempt: the one place that emits OpenStream."""
    if state.stream:
        raise LocalProtocolError("client already holds a stream", hint="close it first")
    actions.append(OpenStream(last_event_id=state.last_event_id))
    return state._replace(
        status=Status.CONNECTING,
        attempts=state.attempts + 1 if count else state.attempts,
        stream=True,
        stable=False,
    )


def _stop_monitor(state: ClientState, actions: Actions) -> ClientState:
    if state.monitor:
        actions.append(CancelTimer(timer=HEARTBEAT))
    return state._replace(monitor=False)


def _start_monitor(cfg: ClientConfig, state: ClientState, now: float, actions: Actions
                   ) -> ClientState:
    actions.append(StartTimer(timer=HEARTBEAT, at=now + cfg.heartbeat_timeout))
    return state._replace(monitor=True)


def _close(state: ClientState, actions: Actions) -> ClientState:
    if state.stream:
        actions.append(CloseStream())
    return state._replace(stream=False, stable=False)


def _rehydrate(cfg: ClientConfig, state: ClientState, actions: Actions) -> ClientState:
    if state.rehydration is Rehydration.RUNNING:
        return state  # one snapshot at a time; the running one covers this signal too
    actions.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
    return state._replace(rehydration=Rehydration.RUNNING)


def _after_loss(cfg: ClientConfig, state: ClientState, now: float, u: float, reason: str,
                actions: Actions) -> ClientState:
    """An attempt failed or the stream dropped: back off, or give up after the maximum.

    The delay grows with the stream attempts or, while a snapshot keeps failing, with
    the failed loads, whichever is further along, so neither retries at the first delay.
    """
    if cfg.fixes.max_reconnect and state.attempts >= cfg.max_attempts:
        state = _stop_monitor(state, actions)
        actions.append(Log(level="error", message="reconnect attempts exhausted",
                           fields=(("attempts", state.attempts), ("reason", reason))))
        # A snapshot already in flight stays RUNNING: its result is still reported.
        rehydration = (Rehydration.RUNNING if state.rehydration is Rehydration.RUNNING
                       else Rehydration.NONE)
        return state._replace(status=Status.FAILED, last_event_id=None, rehydration=rehydration)
    wait = delay(cfg.policy, max(state.attempts, state.snapshot_failures) + 1, u,
                 state.last_delay or None)
    actions.append(StartTimer(timer=BACKOFF, at=now + wait))
    return state._replace(status=Status.WAITING, last_delay=wait)


def _mark_stable(cfg: ClientConfig, state: ClientState, now: float, actions: Actions
                 ) -> ClientState:
    """A message arrived on the open stream: restart the monitor; maybe reset the counter."""
    if not state.stable:
        state = state._replace(stable=True, last_delay=0.0)
        if cfg.fixes.stable_reset and state.attempts:
            state = state._replace(attempts=0)
    return _start_monitor(cfg, state, now, actions)


# ---------------------------------------------------------------- handlers


def _on_start(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    acts: Actions = []
    if s.rehydration is Rehydration.RETRY:  # a snapshot is still owed: load it before streaming
        acts.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
        n = s._replace(status=Status.CONNECTING, attempts=0, rehydration=Rehydration.RUNNING)
        return _status(n, s, acts), acts
    return _status(_open(cfg, s._replace(attempts=0), e.now, acts), s, acts), acts


def _on_stop(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    acts: Actions = []
    n = _close(_stop_monitor(s, acts), acts)
    if s.status is Status.WAITING:
        acts.append(CancelTimer(timer=BACKOFF))
    n = n._replace(status=Status.IDLE, attempts=0)
    return _status(n, s, acts), acts


def _on_opened(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    if not s.stream:
        raise LocalProtocolError("stream opened, but no attempt is in flight",
                                 hint="report StreamOpened only for an OpenStream action")
    acts: Actions = []
    n = s._replace(status=Status.CONNECTED, stable=False)
    if not cfg.fixes.stable_reset:
        n = n._replace(attempts=0)  # the seed's code: onopen resets the counter
    n = _start_monitor(cfg, n, e.now, acts)  # connectUserStream (re)starts the monitor
    return _status(n, s, acts), acts


def _on_failed(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    assert isinstance(e, StreamFailed)
    if not s.stream:
        raise LocalProtocolError("attempt failed, but no attempt is in flight",
                                 hint="report StreamFailed only for an OpenStream action")
    acts: Actions = []
    n = s._replace(stream=False, stable=False)
    if cfg.fixes.heartbeat_guard:
        n = _stop_monitor(n, acts)
    n = _after_loss(cfg, n, e.now, e.u, e.reason, acts)
    return _status(n, s, acts), acts


def _on_closed(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    assert isinstance(e, StreamClosed)
    acts: Actions = []
    n = _stop_monitor(s, acts)._replace(stream=False, stable=False)
    n = _owe_snapshot_if_cursorless(cfg, n)
    n = _after_loss(cfg, n, e.now, e.u, e.reason, acts)
    return _status(n, s, acts), acts


def _owe_snapshot_if_cursorless(cfg: ClientConfig, s: ClientState) -> ClientState:
    """A stream lost before the client learnt a cursor: what it missed is unknown, so the
    next attempt re-hydrates first (its head becomes the cursor) instead of resuming at a
    later head."""
    if cfg.fixes.announce_head and s.last_event_id is None and s.rehydration is Rehydration.NONE:
        return s._replace(rehydration=Rehydration.RETRY)
    return s


def _on_event(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    assert isinstance(e, EventReceived)
    acts: Actions = []
    n = _mark_stable(cfg, s, e.now, acts)
    last = n.last_event_id
    if last is None or e.event_id.epoch != last.epoch or e.event_id.seq > last.seq:
        acts.append(Deliver(event_id=e.event_id))
        n = n._replace(last_event_id=e.event_id)
    return n, acts


def _on_heartbeat(cfg: ClientConfig, s: ClientState, e: ClientInput
                  ) -> tuple[ClientState, Actions]:
    acts: Actions = []
    return _mark_stable(cfg, s, e.now, acts), acts


def _on_head_announced(cfg: ClientConfig, s: ClientState, e: ClientInput
                       ) -> tuple[ClientState, Actions]:
    assert isinstance(e, HeadAnnounced)
    acts: Actions = []
    n = _mark_stable(cfg, s, e.now, acts)
    if n.last_event_id is None:
        n = n._replace(last_event_id=e.head)  # resume from here: no stream without a cursor
    return n, acts


def _on_truncated(cfg: ClientConfig, s: ClientState, e: ClientInput
                  ) -> tuple[ClientState, Actions]:
    assert isinstance(e, ReplayTruncated)
    acts: Actions = []
    n = _mark_stable(cfg, s, e.now, acts)
    if not cfg.fixes.bounded_replay:
        acts.append(Log(level="warning", message="ignored replay-truncated (fix off)"))
        return n, acts
    return _rehydrate(cfg, n, acts), acts


def _on_replay_failed(cfg: ClientConfig, s: ClientState, e: ClientInput
                      ) -> tuple[ClientState, Actions]:
    acts: Actions = []
    n = _mark_stable(cfg, s, e.now, acts)
    if not cfg.fixes.replay_failed_signal:
        acts.append(Log(level="warning", message="ignored replay-failed (fix off)"))
        return n, acts
    return _rehydrate(cfg, n, acts), acts


def _on_heartbeat_timer(cfg: ClientConfig, s: ClientState, e: ClientInput
                        ) -> tuple[ClientState, Actions]:
    """handleProactiveReconnection(): the stream has been silent too long."""
    acts: Actions = []
    if cfg.fixes.heartbeat_guard:
        if s.status is not Status.CONNECTED:
            return s, acts  # the guard: `if (this.isConnecting) return`
        n = _stop_monitor(s, acts)  # stopHeartbeatMonitor() before reconnecting
        n = _owe_snapshot_if_cursorless(cfg, _close(n, acts))
        if cfg.fixes.max_reconnect and n.attempts >= cfg.max_attempts:
            # The stream never became stable and the maximum is spent: the proactive path
            # obeys the maximum too (the checker found this path bypassing it).
            assert isinstance(e, TimerFired)
            n = _after_loss(cfg, n, e.now, e.u, "heartbeat timeout", acts)
        elif n.rehydration is Rehydration.RETRY:  # no cursor: re-hydrate, then stream
            acts.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
            n = n._replace(status=Status.CONNECTING, rehydration=Rehydration.RUNNING)
        else:
            n = _open(cfg, n, e.now, acts)
        return _status(n, s, acts), acts
    # The seed's code: every check bumps the counter, reconnecting only if not connecting.
    n = s._replace(attempts=s.attempts + 1)
    acts.append(StartTimer(timer=HEARTBEAT, at=e.now + cfg.heartbeat_check_interval))
    if s.status is Status.CONNECTING:
        return n, acts
    if s.status is Status.WAITING:
        acts.append(CancelTimer(timer=BACKOFF))
    n = _owe_snapshot_if_cursorless(cfg, _close(n, acts))
    if n.rehydration is Rehydration.RETRY:  # announce-head's rule holds on this path too
        acts.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
        n = n._replace(status=Status.CONNECTING, rehydration=Rehydration.RUNNING)
    else:
        n = _open(cfg, n, e.now, acts, count=False)
    return _status(n, s, acts), acts


def _wake(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    """The backoff timer fired, or a trigger woke a waiting client: try now."""
    acts: Actions = []
    if e.__class__ is not TimerFired:
        acts.append(CancelTimer(timer=BACKOFF))
    if s.rehydration is Rehydration.RETRY:
        acts.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
        n = s._replace(status=Status.CONNECTING, rehydration=Rehydration.RUNNING)
    else:
        n = _open(cfg, s, e.now, acts)
    return _status(n, s, acts), acts


def _on_recover(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    """recover(): reset, re-hydrate from a snapshot, then reconnect."""
    acts: Actions = []
    n = s._replace(status=Status.CONNECTING, attempts=0, last_delay=0.0, stream=False,
                   stable=False, monitor=False)
    if s.rehydration is not Rehydration.RUNNING:  # a load still in flight serves
        acts.append(StartRehydrate(head_first=cfg.fixes.head_before_snapshot))
        n = n._replace(rehydration=Rehydration.RUNNING)
    return _status(n, s, acts), acts


def _on_rehydrated(cfg: ClientConfig, s: ClientState, e: ClientInput
                   ) -> tuple[ClientState, Actions]:
    assert isinstance(e, RehydrateDone)
    if not isinstance(e.head, EventId):
        raise LocalProtocolError("snapshot reported without a head cursor",
                                 hint="a snapshot must report the head it read (the topic row's "
                                      "epoch-seq), or report RehydrateFailed")
    if s.rehydration is not Rehydration.RUNNING:
        raise LocalProtocolError("snapshot reported, but none is in flight",
                                 hint="report RehydrateDone only after StartRehydrate")
    acts: Actions = []
    if s.status is Status.FAILED:  # the cursor stays cleared; recover() loads anew
        return s._replace(rehydration=Rehydration.NONE), acts
    last = s.last_event_id
    head = e.head
    if last is None or head.epoch != last.epoch or head.seq > last.seq:
        last = head
    n = s._replace(rehydration=Rehydration.NONE, last_event_id=last, snapshot_failures=0)
    if s.status is Status.CONNECTING and not s.stream:
        n = _open(cfg, n, e.now, acts)  # recovery: stream only after the snapshot
    return _status(n, s, acts), acts


def _on_rehydrate_failed(cfg: ClientConfig, s: ClientState, e: ClientInput
                         ) -> tuple[ClientState, Actions]:
    assert isinstance(e, RehydrateFailed)
    if s.rehydration is not Rehydration.RUNNING:
        raise LocalProtocolError("snapshot failure reported, but none is in flight",
                                 hint="report RehydrateFailed only after StartRehydrate")
    acts: Actions = []
    if s.status in (Status.FAILED, Status.WAITING, Status.IDLE):  # down: retry on wake-up
        retry = Rehydration.NONE if s.status is Status.FAILED else Rehydration.RETRY
        failures = min(s.snapshot_failures + 1, cfg.max_attempts)  # bounded: states stay finite
        return s._replace(rehydration=retry, snapshot_failures=failures), acts
    # The client cannot call itself up to date: drop the stream, back off, load again.
    n = _close(_stop_monitor(s, acts), acts)._replace(
        rehydration=Rehydration.RETRY,
        snapshot_failures=min(s.snapshot_failures + 1, cfg.max_attempts))
    n = _after_loss(cfg, n, e.now, e.u, e.reason, acts)
    if n.status is Status.FAILED:
        n = n._replace(rehydration=Rehydration.NONE)
    return _status(n, s, acts), acts


def _ignore(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    return s, []


I_, C, K, W, F = Status.IDLE, Status.CONNECTING, Status.CONNECTED, Status.WAITING, Status.FAILED

#: (status, input type) -> handler; a pair that is missing raises LocalProtocolError.
TRANSITIONS: dict[tuple[Status, type[ClientInput]], Handler] = {
    (I_, Start): _on_start,
    **{(st, Stop): _on_stop for st in (I_, C, K, W, F)},
    (C, StreamOpened): _on_opened,
    (C, StreamFailed): _on_failed,
    (K, StreamClosed): _on_closed,
    (K, EventReceived): _on_event,
    (K, HeartbeatReceived): _on_heartbeat,
    (K, HeadAnnounced): _on_head_announced,
    (K, ReplayTruncated): _on_truncated,
    (K, ReplayFailed): _on_replay_failed,
    **{(st, RehydrateDone): _on_rehydrated for st in (I_, C, K, W, F)},
    **{(st, RehydrateFailed): _on_rehydrate_failed for st in (I_, C, K, W, F)},
    (W, Online): _wake,
    (W, Visible): _wake,
    (F, Online): _on_recover,
    (F, Visible): _on_recover,
    (F, Recover): _on_recover,
    **{(st, Online): _ignore for st in (I_, C, K)},
    **{(st, Visible): _ignore for st in (I_, C, K)},
}

def _on_timer(cfg: ClientConfig, s: ClientState, e: ClientInput) -> tuple[ClientState, Actions]:
    assert isinstance(e, TimerFired)
    if e.timer == HEARTBEAT:
        if not s.monitor:
            raise LocalProtocolError("heartbeat timer fired while the monitor is stopped",
                                     hint="the shell must drop a timer it was told to cancel")
        return _on_heartbeat_timer(cfg, s, e)
    if e.timer == BACKOFF:
        if s.status is not Status.WAITING:
            raise LocalProtocolError(f"backoff timer fired while {s.status.value}",
                                     hint="the shell must drop a timer it was told to cancel")
        return _wake(cfg, s, e)
    raise LocalProtocolError(f"unknown client timer {e.timer!r}",
                             hint=f"client timers are {HEARTBEAT!r} and {BACKOFF!r}")


for _st in Status:
    TRANSITIONS[(_st, TimerFired)] = _on_timer


def step(cfg: ClientConfig, state: ClientState, event: ClientInput
         ) -> tuple[ClientState, list[Action]]:
    """Apply one input to a client; return its next state and the actions to carry out."""
    handler = TRANSITIONS.get((state.status, event.__class__))
    if handler is None:
        raise LocalProtocolError(
            f"client in status {state.status.value!r} cannot take {event.__class__.__name__}",
            hint="accepted here: " + ", ".join(
                sorted(t.__name__ for (st, t) in TRANSITIONS if st is state.status)),
        )
    return handler(cfg, state, event)
