"""Backoff per attempt and time to ``failed``, sampled through the client machine.

Each run takes a client whose stable stream has just dropped and lets every
attempt fail (the server refuses at once), feeding the client machine of
:mod:`model.client` fresh uniform draws until it reaches ``failed``. The delays
it asks for (its ``backoff`` timers) are the samples; the time from the drop to
``failed`` is their sum, since refused attempts take no time here.

The closed forms come from :mod:`model.backoff`: :func:`~model.backoff.mean_delay`
per attempt and :func:`~model.backoff.total_wait` cumulated. The spread of one
jittered delay is that of a uniform draw between ``delay(u=0)`` and
``delay(u→1)``, read from the model's own :func:`~model.backoff.delay`; the spread
of a sum of independent delays adds in variance. Decorrelated jitter has
neither an independent-sum spread nor a cheap per-attempt mean (each
``mean_delay`` call propagates a distribution over all earlier attempts), so its
closed form is evaluated at :data:`SPARSE_ATTEMPTS` in quick runs.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from model import client as cm
from model.backoff import (
    GRPC_POLICY,
    SEED_POLICY,
    BackoffPolicy,
    Kind,
    delay,
    mean_delay,
    next_attempt_at,
    total_wait,
)
from model.core import EventId, StartTimer

__all__ = ["FAMILY", "MAX_ATTEMPTS", "SETTINGS", "SPARSE_ATTEMPTS", "Z_LIMIT", "attempt_stats",
           "has_closed_form", "policies", "sample_delays", "table", "time_to_failed", "verdicts"]

#: The seed's maximum of reconnect attempts.
MAX_ATTEMPTS = 50
#: The two parameter sets every kind is evaluated at: the seed's and gRPC's.
SETTINGS: dict[str, BackoffPolicy] = {"seed": SEED_POLICY, "grpc": GRPC_POLICY}
#: Attempts at which decorrelated jitter's closed form is evaluated in quick runs.
SPARSE_ATTEMPTS: tuple[int, ...] = (1, 2, 3, 5, 8, 13, 21, 34, 50)
#: Largest |z| of a sampled mean against its closed form that counts as agreement
#: (600 comparisons: a false alarm at 4.5 sigma has odds of about 1 in 250 per report).
Z_LIMIT = 4.5
#: Relative error of the decorrelated closed form (a grid; model.backoff says < 0.1 %).
GRID_TOLERANCE = 1e-3


#: The AWS post's family and gRPC's, compared at each of :data:`SETTINGS`.
FAMILY: tuple[Kind, ...] = (Kind.NONE, Kind.EXPONENTIAL, Kind.FULL, Kind.EQUAL, Kind.DECORRELATED,
                            Kind.GRPC)


def policies() -> list[tuple[str, BackoffPolicy]]:
    """Every kind of :data:`FAMILY` at the seed's settings and at gRPC's."""
    out = []
    for setting, proto in SETTINGS.items():
        for kind in FAMILY:
            out.append((setting, dataclasses.replace(proto, kind=kind)))
    return out


def has_closed_form(policy: BackoffPolicy) -> bool:
    """Whether ``model.backoff`` has a mean for it (every policy but your own delay function)."""
    return policy.custom is None


def time_to_failed(delays: np.ndarray, policy: BackoffPolicy, attempt_s: float) -> np.ndarray:
    """Per run: seconds from the drop to ``failed`` when each attempt takes ``attempt_s``.

    The run's delays come from the client machine; when the next attempt starts is
    :func:`model.backoff.next_attempt_at` (gRPC counts a wait from the attempt's start).
    """
    out = np.empty(delays.shape[0])
    for i, row in enumerate(delays):
        started = failed = 0.0
        for wait in row:
            started = next_attempt_at(policy, started=started, failed=failed, wait=float(wait))
            failed = started + attempt_s
        out[i] = failed
    return out


def _run(cfg: cm.ClientConfig, rng: random.Random) -> list[float]:
    """One stable stream drops; every attempt is refused until ``failed``; the delays used."""
    s = cm.initial()
    s, _ = cm.step(cfg, s, cm.Start(now=0.0))
    s, _ = cm.step(cfg, s, cm.StreamOpened(now=0.0))
    # a first event: stable (the counter is reset) and a cursor to resume from, so each
    # reconnect is a stream attempt, not a re-hydration of a client that never had one
    s, _ = cm.step(cfg, s, cm.EventReceived(now=0.0, event_id=EventId(0, 1)))
    now = 0.0
    delays: list[float] = []
    s, acts = cm.step(cfg, s, cm.StreamClosed(now=now, u=rng.random()))
    while s.status is cm.Status.WAITING:
        at = next(a.at for a in acts if isinstance(a, StartTimer) and a.timer == cm.BACKOFF)
        delays.append(at - now)
        now = at
        s, _ = cm.step(cfg, s, cm.TimerFired(now=now, timer=cm.BACKOFF))
        s, acts = cm.step(cfg, s, cm.StreamFailed(now=now, u=rng.random()))
    if s.status is not cm.Status.FAILED:
        raise AssertionError(f"expected 'failed' after the attempts, got {s.status.value}")
    return delays


def sample_delays(policy: BackoffPolicy, runs: int, seed: int = 1,
                  max_attempts: int = MAX_ATTEMPTS) -> np.ndarray:
    """Delays before attempts 1..max_attempts of ``runs`` runs of the client machine (runs × attempts)."""
    cfg = cm.ClientConfig(max_attempts=max_attempts, policy=policy)
    rng = random.Random(seed)
    out = np.empty((runs, max_attempts))
    for i in range(runs):
        row = _run(cfg, rng)
        if len(row) != max_attempts:
            raise AssertionError(f"{policy}: {len(row)} delays for {max_attempts} attempts")
        out[i] = row
    return out


def _uniform_sd(policy: BackoffPolicy, attempt: int) -> float:
    """Spread of one delay, from the model's delay at u = 0 and u -> 1 (NaN for decorrelated)."""
    if policy.custom is not None or policy.kind not in (Kind.NONE, Kind.EXPONENTIAL, Kind.FULL,
                                                        Kind.EQUAL, Kind.GRPC):
        return math.nan  # not an independent draw linear in u
    if policy.immediate_first and attempt == 1:
        return 0.0
    lo = delay(policy, attempt, 0.0)
    hi = delay(policy, attempt, math.nextafter(1.0, 0.0))
    return abs(hi - lo) / math.sqrt(12.0)


def attempt_stats(setting: str, policy: BackoffPolicy, delays: np.ndarray,
                  closed_at: Iterable[int] | None = None) -> pd.DataFrame:
    """Per-attempt sampled mean and spread, next to the closed forms, with z-scores."""
    runs, attempts = delays.shape
    cum = np.cumsum(delays, axis=1)
    wanted = set(range(1, attempts + 1) if closed_at is None else closed_at)
    if not has_closed_form(policy):
        wanted = set()
    rows = []
    var_cum = 0.0
    for n in range(1, attempts + 1):
        d, c = delays[:, n - 1], cum[:, n - 1]
        sd1 = _uniform_sd(policy, n)
        var_cum += sd1 * sd1
        mean_c = mean_delay(policy, n) if n in wanted else math.nan
        cum_c = total_wait(policy, n) if n in wanted else math.nan
        rows.append({
            "settings": setting, "policy": policy.kind.value if policy.custom is None else str(policy),
            "attempt": n,
            "delay_mean_closed": mean_c, "delay_mean_sim": float(d.mean()),
            "delay_sd_closed": sd1, "delay_sd_sim": float(d.std(ddof=1)) if runs > 1 else math.nan,
            "delay_p05_sim": float(np.quantile(d, 0.05)), "delay_p95_sim": float(np.quantile(d, 0.95)),
            "wait_mean_closed": cum_c, "wait_mean_sim": float(c.mean()),
            "wait_sd_closed": math.sqrt(var_cum) if not math.isnan(var_cum) else math.nan,
            "wait_sd_sim": float(c.std(ddof=1)) if runs > 1 else math.nan,
            "wait_p05_sim": float(np.quantile(c, 0.05)), "wait_p95_sim": float(np.quantile(c, 0.95)),
        })
    frame = pd.DataFrame(rows)
    frame["runs"] = runs
    frame["z_delay"] = _z(frame["delay_mean_sim"], frame["delay_mean_closed"], frame["delay_sd_sim"], runs)
    frame["z_wait"] = _z(frame["wait_mean_sim"], frame["wait_mean_closed"], frame["wait_sd_sim"], runs)
    tol = GRID_TOLERANCE if policy.kind is Kind.DECORRELATED else 1e-9
    frame["agrees"] = [
        _agrees(ms, mc, sd, runs, tol) and _agrees(ws, wc, wsd, runs, tol)
        for ms, mc, sd, ws, wc, wsd in frame[["delay_mean_sim", "delay_mean_closed", "delay_sd_sim",
                                              "wait_mean_sim", "wait_mean_closed",
                                              "wait_sd_sim"]].itertuples(index=False)
    ]
    return frame


def _z(sim: pd.Series, closed: pd.Series, sd: pd.Series, runs: int) -> pd.Series:
    """(sampled - closed) / standard error; 0 where both agree to rounding (deterministic delays)."""
    se = sd / math.sqrt(runs)
    rounding = 1e-9 * (1 + closed.abs())
    z = (sim - closed) / se.where(se > rounding)
    exact = (sim - closed).abs() <= rounding
    return z.where(~exact, 0.0)


def _agrees(sim: float, closed: float, sd: float, runs: int, rel_tol: float) -> bool:
    """Within Z_LIMIT standard errors plus the closed form's own tolerance (True if not evaluated)."""
    if math.isnan(closed):
        return True
    slack = Z_LIMIT * (sd / math.sqrt(runs) if sd == sd else 0.0) + rel_tol * (1.0 + abs(closed))
    return abs(sim - closed) <= slack


def table(runs: int, seed: int = 1, *, sparse_decorrelated: bool = False,
          max_attempts: int = MAX_ATTEMPTS,
          only: Sequence[tuple[str, BackoffPolicy]] | None = None) -> pd.DataFrame:
    """The whole comparison: every policy of :func:`policies`, every attempt, one row each."""
    frames = []
    for i, (setting, policy) in enumerate(only or policies()):
        delays = sample_delays(policy, runs, seed + i, max_attempts)
        closed_at = (SPARSE_ATTEMPTS if sparse_decorrelated and policy.kind is Kind.DECORRELATED
                     else None)
        frames.append(attempt_stats(setting, policy, delays, closed_at))
    return pd.concat(frames, ignore_index=True)


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (settings, policy): time to ``failed`` closed vs sampled, and the verdict."""
    last = frame.loc[frame.groupby(["settings", "policy"], sort=False)["attempt"].idxmax()]
    per = frame.groupby(["settings", "policy"], sort=False)
    out = last[["settings", "policy", "attempt", "wait_mean_closed", "wait_mean_sim",
                "wait_sd_sim", "wait_p05_sim", "wait_p95_sim", "z_wait"]].copy()
    out = out.rename(columns={"attempt": "attempts"})
    out["max_abs_z"] = per["z_delay"].apply(lambda z: float(z.abs().max())).to_numpy()
    out["agrees"] = per["agrees"].all().to_numpy()
    return out.reset_index(drop=True)
