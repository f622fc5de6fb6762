"""The facts a client's staleness is judged on, gathered from the simulated world.

The one place that reads the shell's state to state
:class:`~model.invariants.StaleFacts` for a client: is it live, how many events
committed to its topic does it miss, how many of those are on their way (in
Redis towards its replica, queued in its session, on the wire, inside a running
replay or a catch-up the session owes -- :func:`model.session.owed_catch_up`
says when), and whether a signal or a detector
covers the rest. It hands them to the :class:`~sims.des.observer.Observer`, which
judges them with :func:`model.invariants.covered`.

Actors call :meth:`Facts.judge` whenever something a client's facts depend on
changed; it is the only callable of judging they hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import client as cm
from model import session as sm
from model.invariants import StaleFacts
from model.session import owed_catch_up
from sims.des.context import Context
from sims.des.database import Database
from sims.des.observer import FINE, NOTHING_MISSING_ALWAYS_OK, Observer

if TYPE_CHECKING:
    from sims.des.client import Client
    from sims.des.replica import Session
    from sims.des.wire import Conn

__all__ = ["Facts"]

_C_CONNECTED = cm.Status.CONNECTED
_R_NONE = cm.Rehydration.NONE
_P_REPLAYING = sm.Phase.REPLAYING
_P_NEW = sm.Phase.NEW
_P_CLOSED = sm.Phase.CLOSED


class Facts:
    """Gathers a client's StaleFacts and feeds them to the observer."""

    def __init__(self, ctx: Context, db: Database, observer: Observer) -> None:
        self.scfg = ctx.scfg
        self.probing = ctx.settings.fixes.head_probe
        self.head = db.head
        self.observe = observer.judge
        self.verdict = observer.verdict
        self.watching = observer.watching

    def judge(self, c: Client) -> None:
        """Gather the client's facts and hand them to the observer."""
        st = c.state
        live = st.status is _C_CONNECTED and st.rehydration is _R_NONE
        head = self.head[c.topic]
        missing = head - c.applied - len(c.beyond)
        facts: StaleFacts | None = None
        if missing <= 0:
            idx = c.idx
            if (NOTHING_MISSING_ALWAYS_OK and self.verdict[idx] == FINE
                    and self.watching[idx] is None):
                return  # nothing missing, FINE already, nothing followed: nothing can change
        else:
            conn = c.conn
            session = conn.session if conn is not None else None
            facts = StaleFacts(
                live=live,
                missing=missing,
                in_flight=self._in_flight(c, conn, session, head),
                signal_pending=conn is not None and conn.signals > 0,
                stream_detector=conn is not None and (conn.stalled or conn.dead) and st.monitor,
                subscriber_detector=session is not None and session.replica.detector(),
                probe_detector=self._probe_covers(c, session, head),
            )
        self.observe(c.idx, live, facts, c.applied, head)

    def _probe_covers(self, c: Client, session: Session | None, head: int) -> bool:
        """The replica's next head probe brings what the client misses (``head-probe``).

        As :func:`model.invariants.client_facts` has it: the probe runs on the replica
        of an open session, and covers only events past the head that session already
        knows (a head it learnt and never caught up to is not covered).
        """
        if not self.probing or session is None or session.closed or not session.replica.up:
            return False
        ss = session.state
        if ss.phase is _P_NEW or ss.phase is _P_CLOSED:
            return False
        known = max(ss.cursor, ss.head)
        if head <= known:
            return False
        beyond = c.beyond
        return not beyond or any(s not in beyond for s in range(max(known, c.applied) + 1, head + 1))

    def _in_flight(self, c: Client, conn: Conn | None, session: Session | None, head: int) -> int:
        """How many of the events the client misses are on their way to it."""
        applied = c.applied
        lo = hi = 0
        seen: set[int] = set()
        if conn is not None:
            seen.update(s for s in conn.wire if s > applied)
        if session is not None:
            ss = session.state
            seen.update(s for s in session.pending if s > applied)
            seen.update(s for s in ss.buffer if s > applied)
            if ss.phase is _P_REPLAYING:
                top = head if ss.upto is None else ss.upto
                if ss.head > top and owed_catch_up(self.scfg, ss):
                    top = ss.head  # a resync arrived during the query: the session owes it
                lo = max(ss.cursor, applied)
                hi = min(top, head)
            topic = session.topic
            for t, s in session.replica.inflight:
                if t == topic and s > applied:
                    seen.add(s)
        if c.beyond:
            seen.difference_update(c.beyond)
            inside = sum(1 for s in range(lo + 1, hi + 1) if s not in c.beyond) if hi > lo else 0
        else:
            inside = hi - lo if hi > lo else 0
        outside = sum(1 for s in seen if s <= head and not lo < s <= hi)
        return inside + outside
