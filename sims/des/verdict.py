"""Judge a run against the named invariants of :mod:`model.invariants`, in simulated time.

Each check reads the run's DataFrames and reports, under the invariant's own
name, what broke, for whom and when. The timed statements are:

* ``bounded-counter`` -- no client's counter ever differed from the attempts it
  really started since its last stable connection, and (``max-reconnect`` on) no
  counter exceeded the maximum;
* ``failed-only-after-max`` -- every ``failed`` came with the maximum of attempts;
* ``bounded-replay`` -- no replay read more than ``replay_limit + 1`` rows;
* ``no-silent-stale`` -- no client was ever silently stale (``covered()`` false);
* ``detection-bound`` -- every silent subscriber death was detected within the
  sentinel interval plus timeout, and no client stayed stale (covered or not) for
  longer than the detection bound plus one reconnect outside the faults' own
  windows (a sleep, an outage) -- the "per incident" bound;
* ``ordered-delivery``, ``no-stream-without-cursor``, ``revoked-stream-ends`` --
  no row of the ``breaches`` frame names them: the shells record the moment one
  breaks (an event sent on a stream at or below an id already sent on it, a
  cursor moving back, an event handed to the application again; a connected
  client without a cursor hearing a message on its stream; a revoked stream
  still open once its re-check was fed to the session);
* ``convergence`` -- when the run lasts long enough after its last fault
  (:func:`settle_time`), every client ends live and in sync, or ``failed``;
  clients whose background sleep ended too late are left out, and background
  drops (which never stop) skip the check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from model.invariants import (
    BOUNDED_COUNTER,
    BOUNDED_REPLAY,
    CONVERGENCE,
    DETECTION_BOUND,
    FAILED_ONLY_AFTER_MAX,
    NO_SILENT_STALE,
    NO_STREAM_WITHOUT_CURSOR,
    ORDERED_DELIVERY,
    REVOKED_STREAM_ENDS,
)
from sims.des.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from sims.des.run import Result

__all__ = ["settle_time", "violations"]


def settle_time(settings: Settings) -> float:
    """How long after the last fault (and the start-up) a fleet must be given to converge."""
    return 2.0 * (settings.backoff.cap + settings.detection_bound + settings.reconnect_allowance
                  + settings.heartbeat_timeout)


def _first(frame: pd.DataFrame, what: str) -> str:
    row = frame.iloc[0]
    return f"{len(frame)} {what}, first: " + ", ".join(f"{k}={row[k]}" for k in frame.columns)


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _outside(start: float, end: float, windows: list[tuple[float, float]]) -> float:
    inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in windows)
    return (end - start) - inside


def violations(result: Result) -> dict[str, str]:
    """The invariants the run broke, each with a message naming the first offender."""
    s = result.scenario.settings
    frames = result.frames
    out: dict[str, str] = {}

    counters = frames["counters"]
    off = counters[counters["counter_mismatch_max"] > 0]
    if len(off):
        out[BOUNDED_COUNTER] = _first(off, "clients whose counter is not their real attempts")
    elif s.fixes.max_reconnect and len(counters) and counters["max_attempts"].max() > s.max_attempts:
        out[BOUNDED_COUNTER] = f"a counter reached {counters['max_attempts'].max()} > {s.max_attempts}"

    status = frames["status"]
    early = status[(status["status"] == "failed") & (status["attempts"] < s.max_attempts)]
    if len(early):
        out[FAILED_ONLY_AFTER_MAX] = _first(early, "failures before the maximum of attempts")

    queries = frames["queries"]
    big = queries[(queries["kind"] == "replay") & (queries["rows"] > s.replay_limit + 1)]
    if len(big):
        out[BOUNDED_REPLAY] = _first(big, f"replays reading more than {s.replay_limit + 1} rows")

    stale = frames["stale"]
    silent = stale[stale["silent"]]
    if len(silent):
        out[NO_SILENT_STALE] = (f"{silent['seconds'].sum():.3f} s silently stale in total; "
                                + _first(silent, "silent intervals"))

    incidents = frames["incidents"]
    deaths = incidents[incidents["kind"] == "redis.subscriber_dies"]
    slow = deaths[deaths["latency_s"] > s.detection_bound + 2 * s.redis_latency + 1e-9]
    problems = []
    if len(slow):
        problems.append(_first(slow, f"deaths detected later than {s.detection_bound:g} s"))
    bound = s.detection_bound + s.reconnect_allowance
    if len(stale):
        fault_windows = [(f.at, f.end) for f in result.scenario.faults]
        sleeps = frames["sleeps"]
        by_client: dict[int, list[tuple[float, float]]] = {}
        for c, a, b in sleeps[["client", "start", "end"]].itertuples(index=False):
            by_client.setdefault(int(c), []).append((float(a), float(b)))
        long_rows = []
        for c, a, b in stale[["client", "start", "end"]].itertuples(index=False):
            windows = _merged(fault_windows + by_client.get(int(c), []))
            beyond = _outside(float(a), float(b), windows)
            if beyond > bound + 1e-9:
                long_rows.append((int(c), float(a), float(b), round(beyond, 3)))
        if long_rows:
            frame = pd.DataFrame(long_rows, columns=["client", "start", "end", "beyond_faults_s"])
            problems.append(_first(frame, f"stale intervals longer than {bound:.3f} s beyond "
                                          "the faults' windows"))
    if problems:
        out[DETECTION_BOUND] = "; ".join(problems)

    breaches = frames["breaches"]
    for name in (ORDERED_DELIVERY, NO_STREAM_WITHOUT_CURSOR, REVOKED_STREAM_ENDS):
        rows = breaches[breaches["invariant"] == name]
        if len(rows):
            out[name] = _first(rows.drop(columns="invariant"), "breaches")

    quiet_from = max(result.scenario.last_fault_end, s.startup)
    if s.duration - quiet_from >= settle_time(s) and s.drop_rate_per_h == 0:
        stuck = counters[~counters["final_in_sync"] & (counters["final_status"] != "failed")]
        sleeps = frames["sleeps"]
        napping = sleeps.loc[sleeps["end"] > s.duration - settle_time(s), "client"]
        stuck = stuck[~stuck["client"].isin(napping)]  # background sleeps are still going on
        if len(stuck):
            out[CONVERGENCE] = _first(stuck, "clients neither in sync nor failed at the end")
    return out
