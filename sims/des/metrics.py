"""What a run records, and the pandas DataFrames and summary metrics built from it.

The simulation appends plain tuples to a :class:`Recorder` while it runs (cheap
on the hot path) and :func:`build_frames` turns them into DataFrames at the end:

==============  ===========================================================================
frame           one row per
==============  ===========================================================================
status          status change of a client: ``client, t, status, attempts``
queries         Postgres query: ``t, replica, kind, queue_wait_s, duration_s, rows, error``
incidents       (fault, target) pair that has a detection: ``incident, fault, kind,
                target, start, detected_at, latency_s, detected, note``
stale           interval in which a live client missed a committed event that was not on
                its way: ``client, start, end, seconds, silent`` (``silent``: not
                :func:`model.invariants.covered`; otherwise a detector or signal covered it)
counters        client: ``client, topic, max_attempts, connects, counter_mismatch_max,
                final_status, final_in_sync`` (``counter_mismatch_max``: the largest gap
                between the machine's counter and the attempts really started since the
                last stable connection; ``final_in_sync``: live and missing nothing that
                is not on its way when the run ended)
failed          time a client reached ``failed``: ``client, failed_at, recovered_at``
resync          (fault, client) the fault disturbed: ``incident, fault, client, fault_end,
                disturbed_at, resynced_at, seconds, resolved``
health          subscriber health change: ``replica, t, health, reason``
sleeps          laptop sleep: ``client, start, end``
breaches        moment a delivery invariant broke: ``invariant, client, t, detail``
                (``invariant`` is its name in :mod:`model.invariants`:
                ordered-delivery, no-stream-without-cursor, revoked-stream-ends)
==============  ===========================================================================

:func:`summary` reduces them to the metrics ``sselab simulate --json`` prints. A
metric that does not apply is ``None``, never 0: no replay ran (``replay_rows_max``),
no fault has a detection (``detection_latency_s_max``), no client needed a resync
(``resync_s_*``), or ``max-reconnect`` is off so no client can fail
(``failed_clients``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["FRAMES", "METRICS", "Recorder", "build_frames", "summary"]

#: Names of the DataFrames a run produces, in the order they are written.
FRAMES: tuple[str, ...] = ("status", "queries", "incidents", "stale", "counters", "failed",
                           "resync", "health", "sleeps", "breaches")

#: Keys of the summary metrics, in the order ``--json`` prints them.
METRICS: tuple[str, ...] = (
    "silent_stale_seconds_total",
    "silent_stale_seconds_max",
    "max_reconnect_attempts",
    "failed_clients",
    "replay_rows_max",
    "db_rows_total",
    "detection_latency_s_max",
    "resync_s_p50",
    "resync_s_p99",
)


class Recorder:
    """Rows appended while a run goes; plain lists of tuples, turned into frames at the end."""

    def __init__(self) -> None:
        self.status: list[tuple[int, float, str, int]] = []
        self.queries: list[tuple[float, int, str, float, float, int, str]] = []
        self.stale: list[tuple[int, float, float, bool]] = []
        self.health: list[tuple[int, float, str, str]] = []
        #: [incident, fault, kind, target, start, detected_at, note]; filled in as detected
        self.detections: list[list[Any]] = []
        self.resync: list[tuple[int, str, int, float, float, float | None]] = []
        self.failed: list[list[Any]] = []  #: [client, failed_at, recovered_at]
        self.counters: list[tuple[int, int, int, int, int, str, bool]] = []
        self.sleeps: list[tuple[int, float, float]] = []
        #: (invariant name, client, t, detail): a delivery invariant broke
        self.breaches: list[tuple[str, int, float, str]] = []
        self.publishes = 0
        self.lost_messages = 0
        self.logs: dict[str, int] = {}

    def detection(self, incident: int, fault: str, kind: str, target: str, start: float
                  ) -> list[Any]:
        """Open a detection row; the caller fills ``[5]`` (detected_at) or ``[6]`` (note)."""
        row: list[Any] = [incident, fault, kind, target, start, None, ""]
        self.detections.append(row)
        return row


def _frame(rows: list[Any], columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    return frame.astype(dtypes) if len(frame) or dtypes else frame


def build_frames(rec: Recorder, end: float) -> dict[str, pd.DataFrame]:
    """The run's DataFrames; ``end`` is the end of the run (undetected rows are cut there)."""
    status = _frame(rec.status, ["client", "t", "status", "attempts"],
                    {"client": "int64", "t": "float64", "status": "string", "attempts": "int64"})
    queries = _frame(rec.queries,
                     ["t", "replica", "kind", "queue_wait_s", "duration_s", "rows", "error"],
                     {"t": "float64", "replica": "int64", "kind": "string",
                      "queue_wait_s": "float64", "duration_s": "float64", "rows": "int64",
                      "error": "string"})
    inc_rows = []
    for incident, fault, kind, target, start, detected_at, note in rec.detections:
        detected = detected_at is not None
        if detected:
            latency = detected_at - start
        elif note:  # healed before anything had to notice it
            latency = math.nan
        else:  # never detected: at least until the end of the run
            latency = end - start
            note = "not detected before the end of the run"
        inc_rows.append((incident, fault, kind, target, start,
                         detected_at if detected else math.nan, latency, detected, note))
    incidents = _frame(inc_rows, ["incident", "fault", "kind", "target", "start", "detected_at",
                                  "latency_s", "detected", "note"],
                       {"incident": "int64", "fault": "string", "kind": "string",
                        "target": "string", "start": "float64", "detected_at": "float64",
                        "latency_s": "float64", "detected": "bool", "note": "string"})
    stale = _frame([(c, s, e, e - s, silent) for c, s, e, silent in rec.stale],
                   ["client", "start", "end", "seconds", "silent"],
                   {"client": "int64", "start": "float64", "end": "float64",
                    "seconds": "float64", "silent": "bool"})
    counters = _frame(rec.counters,
                      ["client", "topic", "max_attempts", "connects", "counter_mismatch_max",
                       "final_status", "final_in_sync"],
                      {"client": "int64", "topic": "int64", "max_attempts": "int64",
                       "connects": "int64", "counter_mismatch_max": "int64",
                       "final_status": "string", "final_in_sync": "bool"})
    failed = _frame([(c, f, math.nan if r is None else r) for c, f, r in rec.failed],
                    ["client", "failed_at", "recovered_at"],
                    {"client": "int64", "failed_at": "float64", "recovered_at": "float64"})
    res_rows = []
    for incident, fault, client, fault_end, disturbed_at, resynced_at in rec.resync:
        resolved = resynced_at is not None
        done = resynced_at if resynced_at is not None else end
        res_rows.append((incident, fault, client, fault_end, disturbed_at,
                         done if resolved else math.nan,
                         max(0.0, done - max(fault_end, disturbed_at)), resolved))
    resync = _frame(res_rows, ["incident", "fault", "client", "fault_end", "disturbed_at",
                               "resynced_at", "seconds", "resolved"],
                    {"incident": "int64", "fault": "string", "client": "int64",
                     "fault_end": "float64", "disturbed_at": "float64",
                     "resynced_at": "float64", "seconds": "float64", "resolved": "bool"})
    health = _frame(rec.health, ["replica", "t", "health", "reason"],
                    {"replica": "int64", "t": "float64", "health": "string", "reason": "string"})
    sleeps = _frame(rec.sleeps, ["client", "start", "end"],
                    {"client": "int64", "start": "float64", "end": "float64"})
    breaches = _frame(rec.breaches, ["invariant", "client", "t", "detail"],
                      {"invariant": "string", "client": "int64", "t": "float64",
                       "detail": "string"})
    return {"status": status, "queries": queries, "incidents": incidents, "stale": stale,
            "counters": counters, "failed": failed, "resync": resync, "health": health,
            "sleeps": sleeps, "breaches": breaches}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if math.isnan(number):
        return None
    return round(number, 6)


def summary(frames: dict[str, pd.DataFrame], *, failures_possible: bool) -> dict[str, Any]:
    """The summary metrics of a run, keyed as :data:`METRICS`."""
    stale = frames["stale"]
    silent = stale.loc[stale["silent"], "seconds"]
    counters = frames["counters"]
    queries = frames["queries"]
    replays = queries.loc[queries["kind"] == "replay", "rows"]
    latency = frames["incidents"]["latency_s"].dropna()
    resync = frames["resync"]["seconds"]
    out: dict[str, Any] = {
        "silent_stale_seconds_total": _num(silent.sum()) if len(silent) else 0.0,
        "silent_stale_seconds_max": _num(silent.max()) if len(silent) else 0.0,
        "max_reconnect_attempts": int(counters["max_attempts"].max()) if len(counters) else None,
        "failed_clients": (int(frames["failed"]["client"].nunique()) if failures_possible
                           else None),
        "replay_rows_max": int(replays.max()) if len(replays) else None,
        "db_rows_total": int(queries["rows"].sum()),
        "detection_latency_s_max": _num(latency.max()) if len(latency) else None,
        "resync_s_p50": _num(resync.quantile(0.5)) if len(resync) else None,
        "resync_s_p99": _num(resync.quantile(0.99)) if len(resync) else None,
    }
    assert tuple(out) == METRICS
    return out
