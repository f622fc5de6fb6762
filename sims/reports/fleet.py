"""Runs of the SimPy fleet (:mod:`sims.des`) and the per-second views the reports plot.

Everything here goes through the fleet's public API -- :func:`sims.des.load_scenario`,
:func:`sims.des.simulate`, the frames of :mod:`sims.des.metrics` and the verdicts of
:mod:`sims.des.verdict` -- so a report shows exactly what ``sselab simulate`` does.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from model.backoff import BackoffPolicy, parse_policy
from model.faults import Fault, fault_from_mapping
from model.fixes import FIXES
from sims.des import Result, Scenario, load_scenario, simulate
from sims.des.verdict import violations

__all__ = ["NO_FIX_OFF", "active", "after", "binned", "death_times", "detections", "disconnect_row",
           "fix_names", "herd_row", "in_status", "peak_rate", "per_second", "policy", "rates",
           "recreate", "run", "scenario", "sleep", "staleness_row", "staleness_series", "storm_row",
           "window_peak"]

#: The label of the run with every fix on, in grids keyed by the fix switched off.
NO_FIX_OFF = "(none)"


def policy(name: str) -> BackoffPolicy:
    """A backoff policy by name, the seed's settings otherwise (gRPC keeps its own)."""
    return parse_policy(name)


def scenario(preset: str, *, clients: int, duration: float, seed: int = 1,
             settings: Mapping[str, Any] | None = None, without: Sequence[str] = (),
             faults: Sequence[Fault] | None = None, extra_faults: Sequence[Fault] = (),
             name: str | None = None) -> Scenario:
    """A preset with overrides; ``faults`` replaces its schedule, ``extra_faults`` adds to it."""
    overrides: dict[str, Any] = {"clients": clients, "duration": duration, "seed": seed,
                                 **dict(settings or {})}
    sc = load_scenario(preset, overrides, extra_faults=extra_faults)
    if faults is not None:
        sc = dataclasses.replace(sc, faults=tuple(sorted(faults, key=lambda f: f.at)))
    if without:
        sc = dataclasses.replace(sc, settings=dataclasses.replace(
            sc.settings, fixes=sc.settings.fixes.without(*without)))
    if name is not None:
        sc = dataclasses.replace(sc, name=name)
    return sc


def run(preset: str, **kwargs: Any) -> Result:
    """Build :func:`scenario` ``(preset, **kwargs)`` and simulate it."""
    return simulate(scenario(preset, **kwargs))


def recreate(at: float) -> Fault:
    """A non-rolling deploy: every replica restarts at ``at`` (``replicas.restart``, stagger 0)."""
    return fault_from_mapping({"fault": "replicas.restart", "at": at, "replica": -1, "stagger": 0.0},
                              where="reports: recreate deploy")


def sleep(at: float, duration: float, fraction: float) -> Fault:
    """Laptops go offline: a share ``fraction`` of the clients sleeps ``duration`` seconds from ``at``."""
    return fault_from_mapping({"fault": "clients.sleep", "at": at, "fraction": fraction,
                               "duration": duration}, where="reports: long disconnect")


def per_second(times: Iterable[float], start: float, end: float,
               weights: Iterable[float] | None = None) -> np.ndarray:
    """Counts (or weighted sums) in 1-second bins from ``start`` to ``end``."""
    t = np.fromiter(times, dtype=float)
    w = None if weights is None else np.fromiter(weights, dtype=float)
    edges = np.arange(start, end + 1.0, 1.0)
    counts, _ = np.histogram(t, bins=edges, weights=w)
    return counts.astype(float)


def rates(result: Result, start: float, end: float) -> pd.DataFrame:
    """Per second from ``start``: attempts, reconnects, replay and head queries, DB rows by kind."""
    status = result.frames["status"]
    queries = result.frames["queries"]
    out = pd.DataFrame({"t": np.arange(start, end, 1.0)[: int(end - start)]})
    n = len(out)
    out["attempts"] = per_second(status.loc[status["status"] == "connecting", "t"], start, end)[:n]
    out["reconnects"] = per_second(status.loc[status["status"] == "connected", "t"], start, end)[:n]
    for kind in ("replay", "head", "snapshot"):
        q = queries[queries["kind"] == kind]
        out[f"{kind}_queries"] = per_second(q["t"], start, end)[:n]
        out[f"{kind}_rows"] = per_second(q["t"], start, end, q["rows"])[:n]
    out["db_rows"] = per_second(queries["t"], start, end, queries["rows"])[:n]
    out["query_errors"] = per_second(queries.loc[queries["error"] != "", "t"], start, end)[:n]
    return out


def window_peak(per_sec: pd.DataFrame, column: str) -> tuple[float, float]:
    """The largest 1-second value of ``column`` and the second it happened (seconds)."""
    if not len(per_sec) or per_sec[column].max() <= 0:
        return 0.0, math.nan
    i = int(per_sec[column].to_numpy().argmax())
    return float(per_sec[column].iloc[i]), float(per_sec["t"].iloc[i])


def peak_rate(times: pd.Series, width: float = 0.1) -> float:
    """The highest rate per second over bins ``width`` seconds wide (0 when there are no times)."""
    if not len(times):
        return 0.0
    t = times.to_numpy(dtype=float)
    edges = np.arange(math.floor(t.min()), math.ceil(t.max()) + 2 * width, width)
    counts, _ = np.histogram(t, bins=edges)
    return float(counts.max()) / width


def after(times: pd.Series, t0: float, q: float) -> float:
    """The ``q`` quantile of ``times - t0`` over the times at or after ``t0`` (NaN if none)."""
    later = times[times >= t0] - t0
    return float(later.quantile(q)) if len(later) else math.nan


def staleness_row(preset: str, fix_off: str, result: Result) -> dict[str, Any]:
    """One cell of the staleness grid: silent-stale seconds and the invariants the run broke."""
    stale = result.frames["stale"]
    silent = stale[stale["silent"]]
    broken = violations(result)
    return {
        "scenario": preset,
        "fix_off": fix_off,
        "silent_stale_s": float(silent["seconds"].sum()),
        "silent_stale_max_s": float(silent["seconds"].max()) if len(silent) else 0.0,
        "silent_clients": int(silent["client"].nunique()),
        "covered_stale_s": float(stale.loc[~stale["silent"], "seconds"].sum()),
        "violations": ",".join(sorted(broken)),
    }


def active(starts: Iterable[float], ends: Iterable[float], grid: np.ndarray) -> np.ndarray:
    """How many of the intervals [start, end) contain each time of ``grid``."""
    s = np.sort(np.fromiter(starts, dtype=float))
    e = np.sort(np.fromiter(ends, dtype=float))
    counts: np.ndarray = np.searchsorted(s, grid, side="right") - np.searchsorted(e, grid, side="right")
    return counts


def in_status(status: pd.DataFrame, name: str, grid: np.ndarray) -> np.ndarray:
    """How many clients show status ``name`` at each time of ``grid`` (from the status frame)."""
    frame = status.sort_values(["client", "t"], kind="stable")
    nxt = frame.groupby("client")["t"].shift(-1).fillna(np.inf)
    mask = (frame["status"] == name).to_numpy()
    return active(frame["t"].to_numpy()[mask], nxt.to_numpy()[mask], grid)


def fix_names() -> list[str]:
    """Every fix, by its canonical name, in table order."""
    return [info.name for info in FIXES]


def death_times(first: float, spacing: float, count: int, seed: int,
                jitter: float | None = None) -> list[float]:
    """``count`` silent deaths, the k-th at ``first + k * spacing`` plus a uniform draw up to ``jitter``.

    ``jitter`` defaults to half the spacing. To meet a periodic detector at a
    uniformly random phase, make it at least the detector's period.
    """
    rng = random.Random(seed)
    width = spacing / 2 if jitter is None else jitter
    return [round(first + k * spacing + rng.uniform(0.0, width), 3) for k in range(count)]


def detections(result: Result) -> pd.DataFrame:
    """The silent subscriber deaths of a run and how long each took to be detected."""
    inc = result.frames["incidents"]
    deaths = inc[inc["kind"] == "redis.subscriber_dies"]
    return deaths[["incident", "target", "start", "detected_at", "latency_s", "detected",
                   "note"]].reset_index(drop=True)


def binned(result: Result, start: float, end: float, width: float = 0.1) -> pd.DataFrame:
    """Reconnects and Postgres queries per second in bins ``width`` seconds wide: t, reconnects, queries."""
    status = result.frames["status"]
    queries = result.frames["queries"]
    edges = np.arange(start, end + width / 2, width)
    connected, _ = np.histogram(status.loc[status["status"] == "connected", "t"].to_numpy(float), edges)
    asked, _ = np.histogram(queries["t"].to_numpy(float), edges)
    return pd.DataFrame({"t": edges[:-1], "reconnects": connected / width, "queries": asked / width})


def herd_row(result: Result, t0: float) -> dict[str, Any]:
    """The reconnect-herd fleet table's row for one run whose fault began at ``t0``."""
    per_sec = rates(result, t0 - 10.0, t0 + 150.0)
    status = result.frames["status"]
    connected = status.loc[(status["status"] == "connected") & (status["t"] >= t0), "t"]
    queries = result.frames["queries"]
    replays = queries.loc[(queries["kind"] == "replay") & (queries["t"] >= t0), "t"]
    db_queries = per_sec["replay_queries"] + per_sec["head_queries"] + per_sec["snapshot_queries"]
    return {
        "peak reconnects/s": window_peak(per_sec, "reconnects")[0],
        "peak reconnects/s (100 ms bins)": peak_rate(connected, 0.1),
        "peak replay queries/s": window_peak(per_sec, "replay_queries")[0],
        "peak DB queries/s": float(db_queries.max()) if len(db_queries) else 0.0,
        "reconnects": len(connected), "replay queries": len(replays),
        "p99 reconnect after fault (s)": after(connected, t0, 0.99),
        "p99 replay after fault (s)": after(replays, t0, 0.99),
        "failed clients": result.metrics["failed_clients"],
        "silent-stale s": result.metrics["silent_stale_seconds_total"],
    }


def storm_row(result: Result, t0: float) -> dict[str, Any]:
    """The replay-storm table's row for one deploy that began at ``t0``: Postgres work and resync times."""
    per_sec = rates(result, t0 - 5.0, result.scenario.settings.duration)
    q = result.frames["queries"]
    later = q[q["t"] >= t0]
    m = result.metrics
    return {"peak DB rows/s": window_peak(per_sec, "db_rows")[0],
            "DB rows after the deploy": float(later["rows"].sum()),
            "largest replay (rows)": m["replay_rows_max"],
            "snapshots": int((later["kind"] == "snapshot").sum()),
            "p99 pool wait (s)": float(later["queue_wait_s"].quantile(0.99)) if len(later) else 0.0,
            "query errors": int((later["error"] != "").sum()),
            "p50 resync (s)": m["resync_s_p50"], "p99 resync (s)": m["resync_s_p99"],
            "failed clients": m["failed_clients"],
            "silent-stale s": m["silent_stale_seconds_total"]}


def disconnect_row(result: Result, wake: float) -> dict[str, Any]:
    """Postgres work of the clients waking at ``wake`` from a long disconnect: rows by kind, largest query."""
    q = result.frames["queries"]
    later = q[q["t"] >= wake]
    rows = later.groupby("kind")["rows"].sum()
    replays = later[later["kind"] == "replay"]
    return {"rows read after waking": float(later["rows"].sum()),
            "replay rows": float(rows.get("replay", 0.0)),
            "snapshot rows": float(rows.get("snapshot", 0.0)),
            "replays": len(replays),
            "snapshots": int((later["kind"] == "snapshot").sum()),
            "largest query (rows)": float(later["rows"].max()) if len(later) else 0.0,
            "p99 resync (s)": result.metrics["resync_s_p99"],
            "silent-stale s": result.metrics["silent_stale_seconds_total"]}


def staleness_series(result: Result, grid: np.ndarray) -> pd.DataFrame:
    """Clients shown connected, silently stale and stale with recovery under way at each time of ``grid``."""
    stale = result.frames["stale"]
    silent = stale[stale["silent"]]
    covered = stale[~stale["silent"]]
    return pd.DataFrame({
        "t": grid,
        "connected_clients": in_status(result.frames["status"], "connected", grid),
        "silently_stale_clients": active(silent["start"], silent["end"], grid),
        "stale_covered_clients": active(covered["start"], covered["end"], grid)})
