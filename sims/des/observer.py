"""The fleet's observer: judges staleness from facts, follows incidents, records.

What it owns. Nothing in the simulated world: it is told facts and keeps the
books. The shell (:mod:`sims.des.facts`) gathers each client's
:class:`~model.invariants.StaleFacts` and hands them to :meth:`Observer.judge`,
which asks :func:`model.invariants.covered` -- the one definition of "covered"
-- and classifies the client:

=========  ============================================================
verdict    meaning
=========  ============================================================
FINE       missing nothing that is not on its way (or not live)
COVERED    missing events, but a detector or signal covers them
SILENT     missing events nothing covers: silently stale
=========  ============================================================

It records the intervals a client spends COVERED or SILENT, follows the clients
a fault may disturb until they are back in sync (:class:`Watch`), opens the
detection rows of faults and closes the ones it is told about (a failed
replay's row closes when the client starts re-hydrating), and records status
changes and laptop sleeps.

Its verdicts are lists indexed by client (``verdict``, ``watching``) that the
shell may read to skip judging when nothing can change; it never reads the
shell's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model import client as cm
from model.faults import Fault
from model.invariants import StaleFacts, covered
from sims.des.metrics import Recorder

__all__ = ["COVERED", "FINE", "NOTHING_MISSING_ALWAYS_OK", "SILENT", "WATCH_HORIZON_S", "Observer", "Watch"]

#: A client a fault left untouched this long after its end is counted as unaffected.
WATCH_HORIZON_S = 300.0

FINE, COVERED, SILENT = 0, 1, 2

#: Facts of a client that misses nothing, live or not (judged by covered() once).
_NOTHING_MISSING = {live: StaleFacts(live, 0, 0, False, False, False) for live in (True, False)}
_NOTHING_MISSING_OK = {live: covered(f) for live, f in _NOTHING_MISSING.items()}
#: Whether a client that misses nothing is FINE whatever its state (so need not be judged).
NOTHING_MISSING_ALWAYS_OK = all(_NOTHING_MISSING_OK.values())

_C_FAILED = cm.Status.FAILED


class Watch:
    """A client a fault may disturb, followed until it is back in sync.

    Back in sync: live, missing nothing that is not on its way, and holding every
    event committed to its topic by the end of the fault (or by the moment it was
    disturbed, if that came later).
    """

    __slots__ = ("disturbed_at", "done", "end", "fault", "incident", "target")

    def __init__(self, incident: int, fault: str, end: float) -> None:
        self.incident = incident
        self.fault = fault
        self.end = end
        self.disturbed_at: float | None = None
        self.target: int | None = None  #: the seq the client must hold to be back in sync
        self.done = False


class Observer:
    """Judges clients from the facts it is fed, follows incidents, and keeps the records."""

    def __init__(self, clock: Callable[[], float], rec: Recorder, faults: tuple[Fault, ...],
                 clients: int) -> None:
        self.clock = clock  #: the simulated time, read only when a record needs it
        self.rec = rec
        #: (Fault, its str) per incident index
        self.faults: list[tuple[Fault, str]] = [(f, str(f)) for f in faults]
        self.verdict: list[int] = [FINE] * clients  #: per client: FINE, COVERED or SILENT
        self.since: list[float] = [0.0] * clients  #: per client: when the verdict last changed
        self.watching: list[list[Watch] | None] = [None] * clients  #: per client: open watches
        self.watches: list[tuple[int, Watch]] = []  #: every watch, in the order opened
        self._open_failed: dict[int, list[Any]] = {}  #: client -> its open `failed` row
        self._replay_failed: dict[int, list[list[Any]]] = {}  #: client -> detection rows
        self._sleep_incident: dict[int, int] = {}  #: client -> the incident that put it to sleep

    # ------------------------------------------------------------ staleness

    def judge(self, idx: int, live: bool, facts: StaleFacts | None, applied: int, head: int) -> None:
        """Judge client ``idx`` from its facts (None: it misses nothing) and follow its watches."""
        if facts is None:
            verdict = FINE if _NOTHING_MISSING_OK[live] else SILENT
        else:
            bare = facts._replace(signal_pending=False, stream_detector=False,
                                  subscriber_detector=False)
            verdict = FINE if covered(bare) else COVERED if covered(facts) else SILENT
        old = self.verdict[idx]
        if verdict != old:
            now = self.clock()
            if old:
                self.rec.stale.append((idx, self.since[idx], now, old == SILENT))
            self.verdict[idx] = verdict
            self.since[idx] = now
        if self.watching[idx] is not None:
            self._follow(idx, self.clock(), live and verdict == FINE, applied, head)

    def _follow(self, idx: int, now: float, good: bool, applied: int, head: int) -> None:
        keep: list[Watch] = []
        for w in self.watching[idx] or ():
            if w.disturbed_at is None:
                if not good:
                    w.disturbed_at = now
                    if now >= w.end:
                        w.target = max(w.target or 0, head)
                elif now > w.end + WATCH_HORIZON_S:
                    continue  # untouched: not affected
                keep.append(w)
            elif good and w.target is not None and applied >= w.target:
                w.done = True
                self.rec.resync.append((w.incident, w.fault, idx, w.end, w.disturbed_at, now))
            else:
                keep.append(w)
        self.watching[idx] = keep or None

    # ------------------------------------------------------------ incidents

    def watch(self, incident: int, idx: int) -> Watch:
        """Follow client ``idx`` until the incident's disturbance of it is over."""
        fault, text = self.faults[incident]
        w = Watch(incident, text, fault.end)
        watching = self.watching[idx]
        if watching is None:
            self.watching[idx] = [w]
        else:
            watching.append(w)
        self.watches.append((idx, w))
        return w

    @staticmethod
    def fault_over(w: Watch, head: int) -> bool:
        """The fault is over: the client must hold ``head``; whether it still needs judging."""
        if w.done:
            return False
        w.target = max(w.target or 0, head)
        return True

    def detection(self, incident: int, kind: str, target: str, now: float) -> list[Any]:
        """Open the detection row of ``incident`` (-1: a background sleep) on ``target``."""
        text = self.faults[incident][1] if incident >= 0 else "background sleep"
        return self.rec.detection(incident, text, kind, target, now)

    def replay_failed(self, idx: int, incident: int, now: float) -> None:
        """A replay of client ``idx`` failed by ``incident``: detected once it re-hydrates."""
        row = self.detection(incident, "replay-failed", f"client {idx}", now)
        self._replay_failed.setdefault(idx, []).append(row)

    def rehydration_started(self, idx: int, now: float) -> None:
        """A re-hydration is a reaction to a replay failure the client was told about."""
        rows = self._replay_failed.pop(idx, None)
        if rows:
            for row in rows:
                row[5] = now

    def put_to_sleep(self, idx: int, incident: int) -> None:
        """Client ``idx``'s lid is closed by ``incident``."""
        self._sleep_incident[idx] = incident

    def woke(self, idx: int, now: float) -> list[Any]:
        """Client ``idx`` woke to a dead stream: open the sleep's detection row."""
        incident = self._sleep_incident.pop(idx, -1)
        return self.detection(incident, "clients.sleep", f"client {idx}", now)

    # ------------------------------------------------------------ records

    def status_changed(self, idx: int, now: float, status: cm.Status, attempts: int) -> None:
        """Record a status change, and the time spent in ``failed``."""
        rec = self.rec
        rec.status.append((idx, now, status.value, attempts))
        if status is _C_FAILED:
            row: list[Any] = [idx, now, None]
            rec.failed.append(row)
            self._open_failed[idx] = row
        elif self._open_failed:
            open_row = self._open_failed.pop(idx, None)
            if open_row is not None:
                open_row[2] = now

    def breach(self, invariant: str, idx: int, detail: str) -> None:
        """Record that ``invariant`` (a name of :mod:`model.invariants`) broke for client ``idx``."""
        self.rec.breaches.append((invariant, idx, self.clock(), detail))

    def slept(self, idx: int, start: float, end: float) -> None:
        """Record a laptop sleep of client ``idx``."""
        self.rec.sleeps.append((idx, start, end))

    def finish(self, end: float) -> None:
        """Close the stale intervals and unresolved watches still open at ``end``."""
        rec = self.rec
        for idx, verdict in enumerate(self.verdict):
            if verdict:
                rec.stale.append((idx, self.since[idx], end, verdict == SILENT))
        for idx, w in self.watches:
            if w.disturbed_at is not None and not w.done:
                rec.resync.append((w.incident, w.fault, idx, w.end, w.disturbed_at, None))
