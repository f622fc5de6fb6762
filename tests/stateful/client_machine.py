"""A Hypothesis state machine over ``model.client`` alone, on fake time with jittered backoff.

The world machine abstracts time to ticks; this one drives a single client the
way the service's shell does, with real-valued time and every backoff policy in
:mod:`model.backoff`, and checks its timing against an oracle kept beside it:

* ``single-stream`` -- attempts never overlap: ``OpenStream`` only while the
  shell holds no stream and no backoff is pending.
* ``backoff-policy`` -- every armed backoff waits exactly
  ``model.backoff.delay(policy, n + 1, u, previous delay)``, where ``n`` is the real
  attempts, or the failed snapshot loads in a row if more (at most the maximum):
  a snapshot that keeps failing backs off further each time.
* ``heartbeat-timing`` -- the heartbeat monitor is armed ``heartbeat_timeout``
  after the last message and never fires earlier.
* ``bounded-counter`` -- the counter equals the ``OpenStream`` actions since the
  last stable connection (first message on a stream), ``Start`` or ``recover()``,
  and never exceeds the maximum.
* ``failed-only-after-max`` -- ``failed`` only with the maximum spent, cursor cleared.

The shell here decides nothing: it carries out the machine's actions (timers,
streams, snapshots) and reports what the environment does, as rules.
"""

from __future__ import annotations

import math
from typing import ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from model import client as cl
from model.backoff import BackoffPolicy, Kind, delay
from model.core import Action, CancelTimer, EventId, Log, StartTimer
from model.fixes import Fixes
from model.invariants import BOUNDED_COUNTER, FAILED_ONLY_AFTER_MAX, SINGLE_STREAM
from model.witness import AttemptsWitness, observe

__all__ = ["BACKOFF_POLICY", "HEARTBEAT_TIMING", "ClientCheckFailed", "ClientMachine", "policies"]

#: Names of the client-only timing checks (the others are shared invariant names).
BACKOFF_POLICY = "backoff-policy"
HEARTBEAT_TIMING = "heartbeat-timing"

DRAWS = st.floats(0, 1, exclude_max=True)  #: the uniform draw for jitter, as every engine makes it


class ClientCheckFailed(AssertionError):
    """A client check broke; ``check`` is its name."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


@st.composite
def policies(draw: st.DrawFn, /) -> BackoffPolicy:
    """Any backoff policy of :class:`model.backoff.Kind`, with small bases and caps."""
    kind = draw(st.sampled_from(Kind))
    base = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    cap = base + draw(st.sampled_from([0.0, 1.0, 4.0, 30.0]))
    factor = draw(st.sampled_from([1.0, 1.6, 2.0]))
    jitter = draw(st.sampled_from([0.0, 0.2, 0.5]))
    return BackoffPolicy(kind=kind, base=base, cap=cap, factor=factor, jitter=jitter)


class ClientMachine(RuleBasedStateMachine):
    """One client on fake time: the environment's moves as rules, the timing oracle as invariants."""

    #: Fixes the client runs with; teeth tests switch one off.
    fixes: ClassVar[Fixes] = Fixes.all()

    def __init__(self) -> None:
        super().__init__()
        self.cfg = cl.ClientConfig()
        self.m = cl.initial()
        self.now = 0.0
        self.timers: dict[str, float] = {}
        self.stream: str | None = None  #: None, "connecting" or "open"
        self.heard = False  #: a message arrived on the current stream
        self.last_heard = 0.0  #: when the monitor was last (re)started by the stream
        self.snapshot = False  #: a snapshot load is in flight
        self.snapshot_failures = 0  #: failed loads since the last one that worked
        self.witness = AttemptsWitness()  #: attempts really started (model.witness, shared)
        self.previous: float | None = None  #: the last backoff delay in this run of attempts
        self.seq = 0
        self.delivered = 0

    # -- setup

    @initialize(policy=policies(), max_attempts=st.integers(1, 6),
                heartbeat_timeout=st.sampled_from([0.5, 3.0, 10.0]),
                check_interval=st.sampled_from([0.25, 1.0]))
    def start(self, policy: BackoffPolicy, max_attempts: int, heartbeat_timeout: float,
              check_interval: float) -> None:
        """Configure the client and start it: its first attempt opens a stream."""
        self.cfg = cl.ClientConfig(heartbeat_timeout=heartbeat_timeout,
                                   heartbeat_check_interval=check_interval,
                                   max_attempts=max_attempts, policy=policy,
                                   fixes=type(self).fixes)
        self.feed(cl.Start(now=self.now))

    # -- the shell: feed an input, carry out the actions, keep the oracle

    def feed(self, event: cl.ClientInput, u: float = 0.0) -> None:
        """Step the client with ``event`` and carry out what it asks."""
        before = self.m
        self.m, actions = cl.step(self.cfg, before, event)
        note(f"t={self.now:g}: {type(event).__name__} -> {self.m.status.value}, "
             f"attempts {self.m.attempts}")
        self.witness = observe(self.witness, event, before, self.m, actions)
        if isinstance(event, cl.Start) or (
                before.status is cl.Status.FAILED and self.m.status is not cl.Status.FAILED):
            self.previous = None  # Start and recover() begin a new run of delays
        for action in actions:
            self.carry_out(action, u)

    def carry_out(self, action: Action, u: float) -> None:
        """Carry out one action and check it against the oracle."""
        if isinstance(action, StartTimer):
            if action.at < self.now:
                self.fail(HEARTBEAT_TIMING, f"timer {action.timer} armed in the past")
            if action.timer == cl.BACKOFF:
                self.check_backoff(action.at - self.now, u)
            elif self.cfg.fixes.heartbeat_guard and not math.isclose(
                    action.at, self.now + self.cfg.heartbeat_timeout):
                self.fail(HEARTBEAT_TIMING, f"monitor armed for {action.at - self.now:g} s, "
                          f"not the heartbeat timeout {self.cfg.heartbeat_timeout:g} s")
            if action.timer == cl.HEARTBEAT:
                self.last_heard = self.now
            self.timers[action.timer] = action.at
        elif isinstance(action, CancelTimer):
            self.timers.pop(action.timer, None)
        elif isinstance(action, cl.OpenStream):
            if self.stream is not None:
                self.fail(SINGLE_STREAM, f"OpenStream while a stream is {self.stream}")
            if cl.BACKOFF in self.timers:
                self.fail(SINGLE_STREAM, "OpenStream while a backoff is still pending")
            self.stream, self.heard = "connecting", False
        elif isinstance(action, cl.CloseStream):
            self.stream = None
        elif isinstance(action, cl.StartRehydrate):
            if self.snapshot:
                self.fail(SINGLE_STREAM, "a second snapshot while one is loading")
            self.snapshot = True
        elif isinstance(action, cl.Deliver):
            if action.event_id.seq <= self.delivered:
                self.fail(SINGLE_STREAM, f"event {action.event_id} delivered twice")
            self.delivered = action.event_id.seq
        elif not isinstance(action, cl.StatusChanged | Log):
            raise AssertionError(f"the shell cannot carry out {action!r}")

    def check_backoff(self, wait: float, u: float) -> None:
        """The armed delay is the policy's for this attempt number, draw and previous delay."""
        if self.stream is not None:
            self.fail(SINGLE_STREAM, "backing off while holding a stream")
        attempt = max(self.witness.started, self.snapshot_failures) + 1
        expected = delay(self.cfg.policy, attempt, u, self.previous)
        if not math.isclose(wait, expected, rel_tol=1e-9, abs_tol=1e-9):
            self.fail(BACKOFF_POLICY, f"waits {wait!r} before attempt {attempt}, "
                      f"the policy {self.cfg.policy} says {expected!r} (u={u!r}, "
                      f"previous={self.previous!r})")
        self.previous = wait

    def message(self, event: cl.ClientInput) -> None:
        """A message on the open stream: the first one makes the connection stable."""
        if not self.heard:
            self.heard = True
            self.previous = None
        self.feed(event)

    def fail(self, check: str, message: str) -> None:
        """Raise the named check's failure."""
        raise ClientCheckFailed(check, f"{message} (t={self.now:g}, {self.m})")

    # -- rules: what the network, the server, the browser and the user do

    @precondition(lambda self: self.stream == "connecting")
    @rule()
    def stream_opens(self) -> None:
        """The server answers 200 text/event-stream."""
        self.stream = "open"
        self.feed(cl.StreamOpened(now=self.now))

    @precondition(lambda self: self.stream == "connecting")
    @rule(u=DRAWS)
    def attempt_fails(self, u: float) -> None:
        """The attempt fails before the stream opens (refused, 5xx, timeout)."""
        self.stream = None
        self.feed(cl.StreamFailed(now=self.now, u=u), u)

    @precondition(lambda self: self.stream == "open")
    @rule(u=DRAWS)
    def stream_drops(self, u: float) -> None:
        """The open stream ends or errors."""
        self.stream = None
        self.feed(cl.StreamClosed(now=self.now, u=u), u)

    @precondition(lambda self: self.stream == "open")
    @rule()
    def event_arrives(self) -> None:
        """A data event arrives."""
        self.seq += 1
        self.message(cl.EventReceived(now=self.now, event_id=EventId(0, self.seq)))

    @precondition(lambda self: self.stream == "open")
    @rule()
    def heartbeat_arrives(self) -> None:
        """A server heartbeat arrives."""
        self.message(cl.HeartbeatReceived(now=self.now))

    @precondition(lambda self: self.stream == "open")
    @rule(failed=st.booleans())
    def replay_signal(self, failed: bool) -> None:
        """The server sends replay-truncated or replay-failed."""
        self.message(cl.ReplayFailed(now=self.now) if failed
                     else cl.ReplayTruncated(now=self.now, head=EventId(0, self.seq + 1)))

    @precondition(lambda self: self.snapshot)
    @rule(ok=st.booleans(), u=DRAWS)
    def snapshot_finishes(self, ok: bool, u: float) -> None:
        """The snapshot loads (head read) or fails."""
        self.snapshot = False
        if ok:
            self.snapshot_failures = 0
            self.feed(cl.RehydrateDone(now=self.now, head=EventId(0, self.seq)))
        else:
            self.snapshot_failures = min(self.snapshot_failures + 1, self.cfg.max_attempts)
            self.feed(cl.RehydrateFailed(now=self.now, u=u), u)

    @precondition(lambda self: bool(self.timers))
    @rule(u=DRAWS)
    def next_timer_fires(self, u: float) -> None:
        """Time jumps to the earliest armed timer, which fires."""
        name = min(self.timers, key=lambda t: (self.timers[t], t))
        self.now = max(self.now, self.timers.pop(name))
        if (name == cl.HEARTBEAT and self.cfg.fixes.heartbeat_guard and self.stream == "open"
                and self.now - self.last_heard < self.cfg.heartbeat_timeout - 1e-9):
            self.fail(HEARTBEAT_TIMING, f"monitor fired {self.now - self.last_heard:g} s after "
                      f"the last message, before the timeout {self.cfg.heartbeat_timeout:g} s")
        self.feed(cl.TimerFired(now=self.now, timer=name, u=u), u)

    @rule(dt=st.floats(0, 5, allow_nan=False))
    def time_passes(self, dt: float) -> None:
        """Time passes, but not beyond the earliest armed timer."""
        self.now = min([self.now + dt, *self.timers.values()])

    @rule(which=st.sampled_from(["online", "visible"]))
    def browser_trigger(self, which: str) -> None:
        """The browser goes online or the page becomes visible."""
        self.feed(cl.Online(now=self.now) if which == "online" else cl.Visible(now=self.now))

    @precondition(lambda self: self.m.status is cl.Status.FAILED)
    @rule()
    def user_presses_retry(self) -> None:
        """The user presses Retry: recover()."""
        self.feed(cl.Recover(now=self.now))

    # -- invariants: the oracle

    @invariant()
    def counter_counts_real_attempts(self) -> None:
        """The counter equals the real attempts since the last stable connection, at most the max."""
        if self.m.attempts != self.witness.started:
            self.fail(BOUNDED_COUNTER, f"counter {self.m.attempts}, real attempts {self.witness.started}")
        if self.m.attempts > self.cfg.max_attempts:
            self.fail(BOUNDED_COUNTER, f"counter {self.m.attempts} over the max {self.cfg.max_attempts}")

    @invariant()
    def one_stream_at_a_time(self) -> None:
        """The client holds a stream exactly when the shell does; never one while backing off."""
        if self.m.stream != (self.stream is not None):
            self.fail(SINGLE_STREAM, f"client thinks stream={self.m.stream}, shell has {self.stream}")
        if self.stream is not None and cl.BACKOFF in self.timers:
            self.fail(SINGLE_STREAM, "a stream and a pending backoff at once")

    @invariant()
    def failed_only_after_max(self) -> None:
        """Failed only with every attempt spent and the cursor cleared."""
        if self.m.status is cl.Status.FAILED and (
                self.witness.started != self.cfg.max_attempts or self.m.last_event_id is not None):
            self.fail(FAILED_ONLY_AFTER_MAX, f"failed after {self.witness.started} real attempts "
                      f"of {self.cfg.max_attempts}, cursor {self.m.last_event_id}")

    @invariant()
    def timers_match_status(self) -> None:
        """Waiting exactly when a backoff is armed; connected with the monitor armed."""
        if (self.m.status is cl.Status.WAITING) != (cl.BACKOFF in self.timers):
            self.fail(BACKOFF_POLICY, f"status {self.m.status.value} with timers {self.timers}")
        if (self.cfg.fixes.heartbeat_guard and self.m.status is cl.Status.CONNECTED
                and cl.HEARTBEAT not in self.timers):
            self.fail(HEARTBEAT_TIMING, "connected without a heartbeat monitor")
