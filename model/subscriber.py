"""A replica's Redis subscriber: lifecycle, sentinel round trips, health.

What it owns. The one pub/sub connection a replica fans out from. Heartbeats to
clients are made by the replica itself, so they stay green when this connection
dies; nothing else would notice that live events stopped. This machine decides
when the subscriber is healthy, when it is not and why, when to publish a
sentinel, when a missing sentinel means the link is dead, when to tear the
connection down and subscribe again, and when the replica's open streams must
catch up because events may have been lost (seed item 4).

Rules (fix ``subscriber-health`` on).

* Lifecycle inputs mirror the client library's events: ``Ready`` (subscribed),
  ``Reconnecting``, ``Closed`` (``close``) and ``Ended`` (``end``, no more
  retries). Each is logged with structured fields and moves the health state.
* Every ``sentinel_interval`` seconds while healthy, a sentinel with a fresh
  token is published on the replica's own channel; it must come back within
  ``sentinel_timeout``. If it does not, the subscriber is **unhealthy** (reason
  ``sentinel-timeout``), a critical line is logged and the connection is torn
  down and subscribed again (``Resubscribe``). A silently dead link is thus
  detected within ``sentinel_interval + sentinel_timeout`` (30 s + 5 s).
* When the subscriber becomes ready again after being down, the replica's open
  streams are resynced (``ResyncStreams``; fix ``resync-after-recovery``), since
  pub/sub delivers at most once and what was published meanwhile is gone.
* :func:`view` is the read-only health the ``/health/ready`` endpoint shows.

With ``subscriber-health`` off (the seed's code) there is only an error handler
that logs: lifecycle inputs are logged and otherwise ignored, no sentinel is
sent, nothing is resynced, and the health endpoint has nothing to report.

States (``health``):

============  ===========================================  ========================
health        meaning                                      timers armed
============  ===========================================  ========================
starting      not subscribed yet                           none
healthy       subscribed; last sentinel came back           sentinel (+ timeout)
reconnecting  the client library lost the link, retrying   none
unhealthy     a sentinel went missing; resubscribing        none
ended         the client library gave up                   none
============  ===========================================  ========================
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import NamedTuple

from model.core import (
    Action,
    CancelTimer,
    Input,
    LocalProtocolError,
    Log,
    StartTimer,
)
from model.fixes import Fixes

__all__ = [
    "SENTINEL",
    "SENTINEL_TIMEOUT",
    "Closed",
    "Ended",
    "Health",
    "HealthChanged",
    "HealthView",
    "PublishSentinel",
    "Ready",
    "Reconnecting",
    "Resubscribe",
    "ResyncStreams",
    "SentinelReceived",
    "SubscriberConfig",
    "SubscriberInput",
    "SubscriberState",
    "TRANSITIONS",
    "TimerFired",
    "initial",
    "step",
    "view",
    "will_resync",
]

#: Timer names the subscriber arms.
SENTINEL = "sentinel"
SENTINEL_TIMEOUT = "sentinel-timeout"


class Health(enum.Enum):
    """The subscriber's health."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    STARTING = "starting"  #: not subscribed yet
    HEALTHY = "healthy"  #: subscribed and the last sentinel came back
    RECONNECTING = "reconnecting"  #: the client library lost the link and retries
    UNHEALTHY = "unhealthy"  #: a sentinel went missing; resubscribing
    ENDED = "ended"  #: the client library gave up; needs a new connection


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SubscriberConfig:
    """Sentinel timings (seconds, or ticks in the world), token space and fixes."""

    sentinel_interval: float = 30.0
    sentinel_timeout: float = 5.0
    token_space: int = 2**31  #: tokens wrap modulo this (the world uses 2)
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        if self.sentinel_interval <= 0 or self.sentinel_timeout <= 0:
            raise ValueError("sentinel_interval and sentinel_timeout must be positive")
        if self.token_space < 2:
            raise ValueError("token_space must be at least 2")

    @property
    def detection_bound(self) -> float:
        """The longest a silent death can go unnoticed: interval + timeout."""
        return self.sentinel_interval + self.sentinel_timeout


class SubscriberState(NamedTuple):
    """A subscriber's whole state."""

    health: Health = Health.STARTING
    reason: str = "not subscribed yet"
    outstanding: int | None = None  #: token of the sentinel awaited
    token: int = 0  #: last token used
    last_ok_at: float | None = None  #: when a sentinel last came back
    was_down: bool = False  #: streams may have missed events since the last ready


def initial() -> SubscriberState:
    """A subscriber that is connecting for the first time."""
    return SubscriberState()


class HealthView(NamedTuple):
    """What the health endpoint shows."""

    ready: bool
    state: str
    reason: str
    last_sentinel_age: float | None


def view(cfg: SubscriberConfig, state: SubscriberState, now: float) -> HealthView:
    """The read-only health of a subscriber at time ``now``."""
    age = None if state.last_ok_at is None else max(0.0, now - state.last_ok_at)
    if not cfg.fixes.subscriber_health:
        return HealthView(True, "unmonitored", "subscriber-health is off", None)
    return HealthView(state.health is Health.HEALTHY, state.health.value, state.reason, age)


def will_resync(cfg: SubscriberConfig, state: SubscriberState) -> bool:
    """Whether the replica's open streams will be resynced when this subscriber is ready again."""
    return (state.health is not Health.HEALTHY and state.was_down
            and cfg.fixes.resync_after_recovery)


# ---------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SubscriberInput(Input):
    """Base of the subscriber's inputs."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Ready(SubscriberInput):
    """The connection is up and subscribed (``ready``)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Reconnecting(SubscriberInput):
    """The client library lost the connection and retries (``reconnecting``)."""

    reason: str = "connection lost"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Closed(SubscriberInput):
    """The connection closed (``close``)."""

    reason: str = "connection closed"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Ended(SubscriberInput):
    """The client library will not reconnect (``end``)."""

    reason: str = "connection ended"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SentinelReceived(SubscriberInput):
    """A sentinel came back on the replica's channel."""

    token: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TimerFired(SubscriberInput):
    """A subscriber timer is due."""

    timer: str


# ---------------------------------------------------------------- actions


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PublishSentinel(Action):
    """Publish a sentinel with this token on the replica's own channel."""

    token: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Resubscribe(Action):
    """Tear the pub/sub connection down and subscribe on a new one."""

    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ResyncStreams(Action):
    """Make every open stream on this replica catch up from its cursor."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HealthChanged(Action):
    """The health shown by ``/health/ready`` changed."""

    health: Health
    reason: str


Actions = list[Action]
Handler = Callable[[SubscriberConfig, SubscriberState, SubscriberInput],
                   tuple[SubscriberState, Actions]]


def _move(s: SubscriberState, health: Health, reason: str, acts: Actions, level: str
          ) -> SubscriberState:
    if s.health is not health:
        acts.append(HealthChanged(health=health, reason=reason))
        acts.append(Log(level=level, message=f"redis subscriber {health.value}",
                        fields=(("event", health.value), ("reason", reason),
                                ("previous", s.health.value))))
    return s._replace(health=health, reason=reason)


def _stop_sentinel(s: SubscriberState, acts: Actions) -> SubscriberState:
    if s.health is Health.HEALTHY:
        acts.append(CancelTimer(timer=SENTINEL))
    if s.outstanding is not None:
        acts.append(CancelTimer(timer=SENTINEL_TIMEOUT))
    return s._replace(outstanding=None)


def _on_ready(cfg: SubscriberConfig, s: SubscriberState, e: SubscriberInput
              ) -> tuple[SubscriberState, Actions]:
    acts: Actions = []
    if s.health is Health.HEALTHY:
        return s, acts  # a repeated ready: nothing changes
    n = _move(s, Health.HEALTHY, "subscribed", acts, "info")
    acts.append(StartTimer(timer=SENTINEL, at=e.now + cfg.sentinel_interval))
    if will_resync(cfg, s):
        acts.append(ResyncStreams())
    return n._replace(was_down=False, outstanding=None), acts


def _on_down(cfg: SubscriberConfig, s: SubscriberState, e: SubscriberInput
             ) -> tuple[SubscriberState, Actions]:
    assert isinstance(e, Reconnecting | Closed | Ended)
    acts: Actions = []
    n = _stop_sentinel(s, acts)
    health = Health.ENDED if isinstance(e, Ended) else Health.RECONNECTING
    if s.health is Health.UNHEALTHY and health is Health.RECONNECTING:
        health = Health.UNHEALTHY  # our own Resubscribe closing the link: keep the reason
        return n._replace(was_down=True), acts
    n = _move(n, health, e.reason, acts, "critical" if health is Health.ENDED else "warning")
    return n._replace(was_down=s.health is not Health.STARTING or s.was_down), acts


def _on_sentinel(cfg: SubscriberConfig, s: SubscriberState, e: SubscriberInput
                 ) -> tuple[SubscriberState, Actions]:
    assert isinstance(e, SentinelReceived)
    if e.token != s.outstanding:
        return s, []  # a stale round trip
    acts: Actions = [CancelTimer(timer=SENTINEL_TIMEOUT)]
    return s._replace(outstanding=None, last_ok_at=e.now), acts


def _on_timer(cfg: SubscriberConfig, s: SubscriberState, e: SubscriberInput
              ) -> tuple[SubscriberState, Actions]:
    assert isinstance(e, TimerFired)
    acts: Actions = []
    if e.timer == SENTINEL:
        if s.health is not Health.HEALTHY:
            raise LocalProtocolError(f"sentinel timer fired while {s.health.value}",
                                     hint="the shell must drop a timer it was told to cancel")
        token = (s.token + 1) % cfg.token_space
        acts.append(PublishSentinel(token=token))
        acts.append(StartTimer(timer=SENTINEL, at=e.now + cfg.sentinel_interval))
        if s.outstanding is None:
            acts.append(StartTimer(timer=SENTINEL_TIMEOUT, at=e.now + cfg.sentinel_timeout))
        return s._replace(token=token, outstanding=token), acts
    if e.timer == SENTINEL_TIMEOUT:
        if s.outstanding is None:
            raise LocalProtocolError("sentinel timeout fired with no sentinel outstanding",
                                     hint="the shell must drop a timer it was told to cancel")
        reason = f"sentinel-timeout: no round trip within {cfg.sentinel_timeout:g}s"
        n = _stop_sentinel(s, acts)
        n = _move(n, Health.UNHEALTHY, reason, acts, "critical")
        acts.append(Resubscribe(reason=reason))
        return n._replace(was_down=True), acts
    raise LocalProtocolError(f"unknown subscriber timer {e.timer!r}",
                             hint=f"subscriber timers are {SENTINEL!r} and {SENTINEL_TIMEOUT!r}")


def _seed_logs_only(cfg: SubscriberConfig, s: SubscriberState, e: SubscriberInput
                    ) -> tuple[SubscriberState, Actions]:
    """The seed's code: only an error handler that logs."""
    if isinstance(e, Reconnecting | Closed | Ended):
        return s, [Log(level="error", message="redis subscriber error",
                       fields=(("reason", e.reason),))]
    if isinstance(e, TimerFired):
        raise LocalProtocolError("subscriber timer fired, but subscriber-health is off",
                                 hint="with the fix off the subscriber arms no timers")
    return s, []


#: (health, input type) -> handler, with ``subscriber-health`` on.
TRANSITIONS: dict[tuple[Health, type[SubscriberInput]], Handler] = {}
for _h in Health:
    TRANSITIONS[(_h, Ready)] = _on_ready
    TRANSITIONS[(_h, SentinelReceived)] = _on_sentinel
    TRANSITIONS[(_h, TimerFired)] = _on_timer
    for _t in (Reconnecting, Closed, Ended):
        if _h is not Health.ENDED:
            TRANSITIONS[(_h, _t)] = _on_down


def step(cfg: SubscriberConfig, state: SubscriberState, event: SubscriberInput
         ) -> tuple[SubscriberState, list[Action]]:
    """Apply one input to a subscriber; return its next state and the actions to carry out."""
    if not cfg.fixes.subscriber_health:
        return _seed_logs_only(cfg, state, event)
    handler = TRANSITIONS.get((state.health, event.__class__))
    if handler is None:
        raise LocalProtocolError(
            f"subscriber in {state.health.value!r} cannot take {event.__class__.__name__}",
            hint="accepted here: " + ", ".join(
                sorted(t.__name__ for (h, t) in TRANSITIONS if h is state.health)),
        )
    return handler(cfg, state, event)
