"""The tabs: one SimPy process per client, and the shell that carries out its machine's actions.

What it owns. A :class:`Client` is one browser tab: the :mod:`model.client`
machine's state, its timers (heartbeat monitor, backoff), the events it has
applied, its stream attempt, its laptop's sleep, and the attempts witness
(``bounded-counter`` judges the machine's counter against it). It is one SimPy
process that sleeps until the earliest armed deadline (or indefinitely) and is
woken by an interrupt when a deadline moves earlier; frames from the network are
fed to the machine by the delivery event's callback; a laptop lid is an
interrupt carrying the sleep.

:data:`ACTIONS` carries out the machine's actions: a ``{action class:
handler(client, action)}`` table run by :func:`model.core.dispatch` (an action
without a handler is an :class:`~model.core.UnhandledActionError`).
:class:`Clients` holds what every tab shares: the narrow collaborators a tab
talks to -- the network, the observer and the facts gatherer's ``judge`` -- so no
tab reaches back into the fleet.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import simpy

from model import client as cm
from model.core import CancelTimer, EventId, Log, StartTimer, dispatch
from model.delivery import cursor_moved_back, delivered_again
from model.invariants import NO_STREAM_WITHOUT_CURSOR, ORDERED_DELIVERY
from model.witness import AttemptsWitness, observe
from sims.des.context import Context
from sims.des.observer import FINE, NOTHING_MISSING_ALWAYS_OK, Observer
from sims.des.wire import (
    ANNOUNCED,
    EVENT,
    HEARTBEAT,
    OPENED,
    REFUSED,
    REPLAY_FAILED,
    TRUNCATED,
    Conn,
)

if TYPE_CHECKING:
    from sims.des.database import Database
    from sims.des.wire import Network

__all__ = ["ACTIONS", "Client", "Clients"]

INF = math.inf

_C_CONNECTED = cm.Status.CONNECTED
_C_CONNECTING = cm.Status.CONNECTING
_C_FAILED = cm.Status.FAILED
_R_RUNNING = cm.Rehydration.RUNNING

_client_step = cm.step
_EventReceived = cm.EventReceived
_Deliver = cm.Deliver


class Clients:
    """What every tab shares: its collaborators (network, observer, judge) and its config."""

    def __init__(self, ctx: Context, db: Database, observer: Observer) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.rng = ctx.rng
        self.cfg = ctx.ccfg
        self.head = db.head
        self.observer = observer
        self.verdict = observer.verdict
        self.watching = observer.watching
        self.net: Network  #: set when the fleet is wired
        self.judge: Callable[[Client], None]  #: set when the fleet is wired


# ---------------------------------------------------------------- the client machine's actions
# Each handler takes the client whose machine produced the action, then the action.


def _start_timer(c: Client, a: StartTimer) -> None:
    if a.timer == cm.HEARTBEAT:
        c.hb_at = a.at
    else:
        c.bo_at = a.at


def _cancel_timer(c: Client, a: CancelTimer) -> None:
    if a.timer == cm.HEARTBEAT:
        c.hb_at = None
    else:
        c.bo_at = None


def _deliver(c: Client, a: cm.Deliver) -> None:
    c.apply(a.event_id.seq)


def _status_changed(c: Client, a: cm.StatusChanged) -> None:
    """Record it; a user presses Retry some time after 'failed'."""
    shell = c.shell
    shell.observer.status_changed(c.idx, shell.env.now, a.status, a.attempts)
    if a.status is _C_FAILED:
        c.retry_gen += 1
        gen = c.retry_gen
        ev = shell.env.timeout(shell.rng.expovariate(1.0 / shell.ctx.settings.user_retry))
        ev.callbacks.append(lambda _e: c.user_retry(gen))


def _open(c: Client, a: cm.OpenStream) -> None:
    conn = Conn(c, a.last_event_id)
    c.conn = conn
    c.connects += 1
    c.shell.net.connect(conn)


def _close(c: Client, a: cm.CloseStream) -> None:
    conn = c.conn
    c.conn = None
    if conn is not None:
        if conn.detect is not None:
            conn.detect[5] = c.shell.env.now
            conn.detect = None
        if not conn.dead:
            c.shell.net.sever(conn, "client closed", tell_client=False)


def _rehydrate(c: Client, a: cm.StartRehydrate) -> None:
    shell = c.shell
    c.rehydrate_token += 1
    shell.observer.rehydration_started(c.idx, shell.env.now)
    shell.net.snapshot(c, c.rehydrate_token, a.head_first)


def _log(c: Client, a: Log) -> None:
    c.shell.ctx.log(a)


#: The client machine's actions, carried out: {action class: handler(client, action)}.
ACTIONS: dict[type[Any], Callable[..., object]] = {
    StartTimer: _start_timer,
    CancelTimer: _cancel_timer,
    cm.Deliver: _deliver,
    cm.StatusChanged: _status_changed,
    cm.OpenStream: _open,
    cm.CloseStream: _close,
    cm.StartRehydrate: _rehydrate,
    Log: _log,
}


class Client:
    """One browser tab: a SimPy process owning model.client's timers, fed by the network."""

    __slots__ = ("applied", "asleep", "beyond", "bo_at", "conn", "connects", "hb_at", "idle",
                 "idx", "last_input_at", "max_attempts", "mismatch", "page_loaded", "proc",
                 "rehydrate_lost",
                 "rehydrate_token", "retry_gen", "shell", "sleep_until", "start_at", "started",
                 "state", "topic", "wake_at", "waking", "witness")

    def __init__(self, shell: Clients, idx: int, topic: int, start_at: float) -> None:
        self.shell = shell
        self.idx = idx
        self.topic = topic
        self.start_at = start_at
        self.started = False
        self.state = cm.initial()
        self.conn: Conn | None = None
        self.hb_at: float | None = None
        self.bo_at: float | None = None
        self.sleep_until = INF
        self.waking = False
        self.asleep = False
        self.wake_at = 0.0
        self.last_input_at = 0.0
        self.applied = 0  #: every seq up to this is applied
        self.page_loaded = False  #: the page's own load is done (its first stream opened)
        self.beyond: list[int] = []  #: applied seqs above a hole (only ever after a bug)
        self.rehydrate_token = 0
        self.rehydrate_lost = False
        self.witness = AttemptsWitness()  #: attempts really started since the last stable stream
        self.max_attempts = 0
        self.connects = 0
        self.mismatch = 0
        self.retry_gen = 0
        env = shell.env
        self.idle = env.event()
        self.proc = env.process(self._run())

    # ------------------------------------------------------------ the process

    def _due(self) -> float:
        due = INF
        if not self.started:
            due = self.start_at
        hb = self.hb_at
        if hb is not None and hb < due:
            conn = self.conn
            if conn is None or not conn.virtual:
                due = hb
        bo = self.bo_at
        if bo is not None and bo < due:
            due = bo
        return due

    def _run(self) -> Generator[Any, Any, None]:
        env = self.shell.env
        while True:
            try:
                if self.asleep:
                    self.sleep_until = INF
                    yield env.timeout(max(0.0, self.wake_at - env.now))
                    self._on_wake()
                    continue
                due = self._due()
                self.sleep_until = due
                if due == INF:
                    yield self.idle
                else:
                    now = env.now
                    yield env.timeout(due - now if due > now else 0.0)
                    self.sleep_until = INF
                    self._fire()
            except simpy.Interrupt as interrupt:
                self.waking = False
                self.sleep_until = INF
                cause = interrupt.cause
                if cause is not None:
                    self._sleep(float(cause))

    def reschedule(self) -> None:
        """Wake the process if a deadline moved before the one it sleeps until."""
        if self.waking or self.asleep:
            return
        if self._due() < self.sleep_until and self.shell.env.active_process is not self.proc:
            self.waking = True
            self.proc.interrupt(None)

    def sleep(self, duration: float) -> None:
        """The laptop's lid closes for ``duration`` seconds (an interrupt to the process)."""
        self.proc.interrupt(duration)

    def _fire(self) -> None:
        shell = self.shell
        now = shell.env.now
        if not self.started:
            if self.start_at <= now:
                self.started = True
                # A fresh browser: no cursor. Its page load counts as done when its first
                # stream opens (page_load), as in model.world.
                self.state = cm.initial()
                self.feed(cm.Start(now=now))
                shell.judge(self)
            return
        hb = self.hb_at
        conn = self.conn
        if hb is not None and conn is not None and conn.virtual:
            hb = None
        bo = self.bo_at
        if bo is not None and bo <= now and (hb is None or bo <= hb):
            self.bo_at = None
            self.feed(cm.TimerFired(now=now, timer=cm.BACKOFF, u=shell.rng.random()))
        elif hb is not None and hb <= now:
            self.hb_at = None
            self.feed(cm.TimerFired(now=now, timer=cm.HEARTBEAT, u=shell.rng.random()))
        else:
            return  # the deadline moved; sleep again
        shell.judge(self)

    def _sleep(self, duration: float) -> None:
        shell = self.shell
        now = shell.env.now
        if self.asleep:
            if now + duration > self.wake_at:
                self.wake_at = now + duration
                shell.observer.slept(self.idx, now, now + duration)
            return
        self.asleep = True
        self.wake_at = now + duration
        shell.observer.slept(self.idx, now, now + duration)
        conn = self.conn
        if conn is not None:
            shell.net.silence(conn, now)
            if not conn.dead:
                shell.net.sever(conn, "laptop asleep", tell_client=False)
        shell.judge(self)

    def _on_wake(self) -> None:
        shell = self.shell
        now = shell.env.now
        self.asleep = False
        conn = self.conn
        st = self.state
        if conn is not None and st.status is _C_CONNECTING and st.stream:
            self.conn = None  # the attempt's answer was lost while the lid was closed
            self.feed(cm.StreamFailed(now=now, reason="interrupted by sleep", u=shell.rng.random()))
        elif conn is not None and conn.dead and st.status is _C_CONNECTED:
            conn.detect = shell.observer.woke(self.idx, now)
        if self.rehydrate_lost:
            self.rehydrate_lost = False
            if self.state.rehydration is _R_RUNNING:
                self.feed(cm.RehydrateFailed(now=now, reason="interrupted by sleep",
                                             u=shell.rng.random()))
        if self.started:
            self.feed(cm.Visible(now=now))
        shell.judge(self)

    def user_retry(self, gen: int) -> None:
        """The user presses Retry on a tab that is still ``failed`` (and awake)."""
        if gen != self.retry_gen or self.asleep or self.state.status is not _C_FAILED:
            return
        self.feed(cm.Recover(now=self.shell.env.now))
        self.reschedule()
        self.shell.judge(self)

    # ------------------------------------------------------------ the machine

    def feed(self, inp: cm.ClientInput) -> None:
        """Apply one input to the client machine and carry out its actions."""
        shell = self.shell
        shell.ctx.client_steps += 1
        self.last_input_at = inp.now
        old = self.state
        st, actions = _client_step(shell.cfg, old, inp)
        self.state = st
        was, now = old.last_event_id, st.last_event_id
        if was is not now and cursor_moved_back(was, now):
            assert was is not None and now is not None
            shell.observer.breach(ORDERED_DELIVERY, self.idx,
                                  f"cursor moved back from {was.seq} to {now.seq}")
        if actions:
            top = was.seq if was is not None else -1
            for a in actions:
                if a.__class__ is _Deliver:
                    seq = a.event_id.seq
                    if delivered_again(top, seq):
                        shell.observer.breach(ORDERED_DELIVERY, self.idx,
                                              f"event {seq} handed to the application again")
                    top = seq
            dispatch(ACTIONS, actions, self, shell="the fleet's client shell")
        self.witness = observe(self.witness, inp, old, st, actions)
        attempts = st.attempts
        if attempts > self.max_attempts:
            self.max_attempts = attempts
        gap = attempts - self.witness.started
        if gap:
            gap = abs(gap)
            if gap > self.mismatch:
                self.mismatch = gap

    def page_load(self, head: int) -> None:
        """A stream of this tab opened at ``head``: the first time, the page holds it.

        The same assumption as ``model.world``: the page's own load (what the app
        loaded before its first stream) is everything committed up to the head read
        for the first stream that opens (the client hears it open), so only what
        happens after that can go missing.
        """
        if not self.page_loaded:
            self.page_loaded = True
            self.apply_snapshot(head)

    def apply(self, seq: int) -> None:
        """The machine delivered ``seq`` to the application."""
        applied = self.applied
        if seq == applied + 1:
            applied = seq
            beyond = self.beyond
            while beyond and beyond[0] <= applied + 1:
                applied = max(applied, beyond.pop(0))
            self.applied = applied
        elif seq > applied + 1 and seq not in self.beyond:
            bisect.insort(self.beyond, seq)

    def apply_snapshot(self, upto: int) -> None:
        """A snapshot covering every seq up to ``upto`` was loaded."""
        if upto > self.applied:
            self.applied = upto
            beyond = self.beyond
            while beyond and beyond[0] <= self.applied + 1:
                self.applied = max(self.applied, beyond.pop(0))

    def rehydrated(self, token: int, ok: bool, head: int, covers: int, reason: str) -> None:
        """The snapshot's answer reached the client."""
        if token != self.rehydrate_token:
            return
        if self.asleep:
            self.rehydrate_lost = True
            return
        if self.state.rehydration is not _R_RUNNING:
            return
        shell = self.shell
        now = shell.env.now
        if ok:
            self.apply_snapshot(covers)
            self.feed(cm.RehydrateDone(now=now, head=EventId(0, head)))
        else:
            self.feed(cm.RehydrateFailed(now=now, reason=reason, u=shell.rng.random()))
        self.reschedule()
        shell.judge(self)

    def frames(self, conn: Conn, frames: list[tuple[Any, ...]]) -> None:
        """A batch of frames reached the client's end of ``conn``."""
        if conn is not self.conn or conn.dead or self.asleep:
            return
        if conn.stalled:
            conn.held.extend(frames)
            return
        shell = self.shell
        now = shell.env.now
        feed = self.feed
        for frame in frames:
            if conn is not self.conn:
                break  # the machine closed this stream part-way through the batch
            code = frame[0]
            if code != OPENED and code != REFUSED:
                conn.heard = True
            if code == EVENT:
                conn.wire.popleft()
                feed(_EventReceived(now=now, event_id=EventId(0, frame[1])))
            elif code == HEARTBEAT:
                feed(cm.HeartbeatReceived(now=now))
            elif code == OPENED:
                conn.opened = True
                self.page_load(conn.head_read)
                feed(cm.StreamOpened(now=now))
            elif code == TRUNCATED:
                conn.signals -= 1
                feed(cm.ReplayTruncated(now=now, head=EventId(0, frame[1]), reason=frame[2]))
            elif code == REPLAY_FAILED:
                conn.signals -= 1
                feed(cm.ReplayFailed(now=now, reason=frame[1]))
            elif code == ANNOUNCED:
                feed(cm.HeadAnnounced(now=now, head=EventId(0, frame[1])))
            else:  # REFUSED: the attempt failed before the stream opened
                self.conn = None
                conn.dead = True
                feed(cm.StreamFailed(now=now, reason=frame[1], u=shell.rng.random()))
        if conn is self.conn:
            st = self.state
            conn.virtual = st.stable and st.status is _C_CONNECTED and not conn.stalled
            if (conn.heard and st.last_event_id is None and st.status is _C_CONNECTED
                    and not conn.cursorless):
                conn.cursorless = True  # once per stream
                shell.observer.breach(NO_STREAM_WITHOUT_CURSOR, self.idx,
                                      "a message arrived on a stream of a client without a cursor")
        self.reschedule()
        idx = self.idx
        if (shell.verdict[idx] == FINE and shell.watching[idx] is None and not self.beyond
                and shell.head[self.topic] == self.applied and NOTHING_MISSING_ALWAYS_OK):
            return  # nothing missing, nothing followed: the judgement cannot change
        shell.judge(self)
