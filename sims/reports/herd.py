"""A reconnect herd: N clients lose their replica at once; it returns after an outage.

The idealised herd. At time 0 every client's stable stream drops (its replica
died). The server refuses every connection that reaches it before ``outage``
seconds and accepts every one after; a connection request takes ``latency``
seconds each way. Each client is the client machine of :mod:`model.client`,
with its own draws, so it backs off, counts attempts and gives up after the
maximum exactly as the service does. Clients do not interact (the server has
room for all), so each is run on its own -- the same as a discrete-event run,
at a fraction of the cost. The fleet with pools, replicas and Redis is
:mod:`sims.reports.fleet`.

The exact arrival density. For the policies whose delays are independent
draws (``none``, ``exponential``, ``full``, ``equal``, ``grpc``), the time at
which attempt k reaches the server is a sum of independent delays, so its
distribution is the convolution of the delays' distributions -- each a point
or a uniform between ``delay(u=0)`` and ``delay(u→1)`` of
:func:`model.backoff.delay`. :func:`arrival_density` carries that convolution on
a fine grid, keeping only the mass still refused before each next attempt, and
returns the expected attempts and reconnects per second without sampling.
Decorrelated jitter's delays depend on the previous one, so it has no such
closed form and is only simulated.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import numpy as np
import pandas as pd

from model import client as cm
from model.backoff import SEED_POLICY, BackoffPolicy, Kind, delay, parse_policy
from model.core import EventId, StartTimer

__all__ = ["DEFAULT", "HerdConfig", "POLICIES", "arrival_density", "closed_form_kinds", "compare",
           "per_bin", "per_second", "simulate_herd", "summarise"]

#: The policies the herd is run with, in plot order.
POLICIES: tuple[str, ...] = ("none", "exponential", "full", "equal", "decorrelated", "grpc")


class HerdConfig(NamedTuple):
    """The herd: clients, outage length and one-way latency (seconds), max attempts."""

    clients: int = 10_000
    outage: float = 60.0
    latency: float = 0.05
    max_attempts: int = 50
    horizon: float = 240.0  #: seconds after the drop that are counted


#: The herd of the report: 10,000 clients, a one-minute outage, 50 ms each way.
DEFAULT = HerdConfig()


def _policy(name: str, policy: BackoffPolicy | None = None) -> BackoffPolicy:
    if policy is not None:
        return policy
    return SEED_POLICY if name == "exponential" else parse_policy(name)


def _exact(policy: BackoffPolicy) -> bool:
    """Whether the arrival density has a closed form: independent draws, linear in the draw."""
    return policy.custom is None and policy.kind in _EXACT_KINDS


_EXACT_KINDS = (Kind.NONE, Kind.EXPONENTIAL, Kind.FULL, Kind.EQUAL, Kind.GRPC)


def closed_form_kinds() -> tuple[str, ...]:
    """The policies with an exact arrival density (independent delays)."""
    return tuple(p for p in POLICIES if _exact(_policy(p)))


def simulate_herd(name: str, cfg: HerdConfig = DEFAULT, seed: int = 1,
                  policy: BackoffPolicy | None = None) -> pd.DataFrame:
    """Every connection request that reaches the server: ``client, t, accepted`` (plus failures)."""
    policy = _policy(name, policy)
    ccfg = cm.ClientConfig(max_attempts=cfg.max_attempts, policy=policy)
    rng = random.Random(seed)
    rows: list[tuple[int, float, bool]] = []
    failed: list[tuple[int, float]] = []
    lat = cfg.latency
    for c in range(cfg.clients):
        s = cm.initial()
        s, _ = cm.step(ccfg, s, cm.Start(now=-1.0))
        s, _ = cm.step(ccfg, s, cm.StreamOpened(now=-1.0))
        # a first event: stable, with a cursor, so every retry is a stream attempt
        s, _ = cm.step(ccfg, s, cm.EventReceived(now=-0.5, event_id=EventId(0, 1)))
        now = 0.0
        s, acts = cm.step(ccfg, s, cm.StreamClosed(now=now, u=rng.random()))
        while s.status is cm.Status.WAITING:
            now = next(a.at for a in acts if isinstance(a, StartTimer) and a.timer == cm.BACKOFF)
            s, _ = cm.step(ccfg, s, cm.TimerFired(now=now, timer=cm.BACKOFF))
            arrive = now + lat
            if arrive >= cfg.outage:
                rows.append((c, arrive, True))
                s, _ = cm.step(ccfg, s, cm.StreamOpened(now=arrive + lat))
                break
            rows.append((c, arrive, False))
            now = arrive + lat
            s, acts = cm.step(ccfg, s, cm.StreamFailed(now=now, u=rng.random()))
        if s.status is cm.Status.FAILED:
            failed.append((c, now))
    frame = pd.DataFrame.from_records(rows, columns=["client", "t", "accepted"])
    frame.attrs["failed"] = len(failed)
    frame.attrs["failed_by"] = max((t for _, t in failed), default=math.nan)
    return frame


def _delay_range(policy: BackoffPolicy, attempt: int) -> tuple[float, float]:
    lo = delay(policy, attempt, 0.0)
    hi = delay(policy, attempt, math.nextafter(1.0, 0.0))
    mid = delay(policy, attempt, 0.5)
    if abs(mid - (lo + hi) / 2) > 1e-9 * (1 + hi):
        raise ValueError(f"{policy}: delay is not linear in the draw; no uniform closed form")
    return lo, hi


def arrival_density(name: str, cfg: HerdConfig = DEFAULT, dt: float = 0.005,
                    policy: BackoffPolicy | None = None) -> pd.DataFrame:
    """Expected requests and reconnects reaching the server per second, exactly (on a grid)."""
    policy = _policy(name, policy)
    if not _exact(policy):
        raise ValueError(f"{name}: {policy.kind.value} delays have no closed-form arrival density")
    size = math.ceil(cfg.horizon / dt) + 1
    down = math.ceil(cfg.outage / dt)  # grid index from which the server accepts
    lat = round(cfg.latency / dt)
    requests = np.zeros(size)
    accepted = np.zeros(size)
    # mass[i]: probability that the client sends its next attempt's timer base at time i*dt,
    # i.e. its previous attempt was refused (or the stream dropped) then.
    base = np.zeros(size)
    base[0] = 1.0
    failed = 0.0
    for attempt in range(1, cfg.max_attempts + 1):
        lo, hi = _delay_range(policy, attempt)
        shift = lat + (0 if attempt == 1 else lat)  # refused reply travels back, request out
        arrive = _add_delay(base, lo, hi, dt)
        arrive = np.concatenate([np.zeros(shift), arrive])[:size]
        requests += arrive
        accepted[down:] += arrive[down:]
        refused = arrive.copy()
        refused[down:] = 0.0
        if attempt == cfg.max_attempts:
            failed = float(refused.sum())
            break
        base = refused
        if base.sum() < 1e-12:
            break
    t = np.arange(size) * dt
    frame = pd.DataFrame({"t": t, "requests": requests * cfg.clients,
                          "reconnects": accepted * cfg.clients})
    frame.attrs["failed"] = failed * cfg.clients
    return frame


def _add_delay(mass: np.ndarray, lo: float, hi: float, dt: float) -> np.ndarray:
    """The distribution of ``time + delay`` for delay uniform on [lo, hi] (a point if lo == hi)."""
    a = round(lo / dt)
    b = round(hi / dt)
    size = len(mass)
    if b <= a:
        return np.concatenate([np.zeros(a), mass])[:size]
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    idx = np.arange(size)
    upper = np.clip(idx - a + 1, 0, size)
    lower = np.clip(idx - b, 0, size)
    out: np.ndarray = (cum[upper] - cum[lower]) / (b - a + 1)
    return out


def per_second(times: pd.Series, horizon: float) -> np.ndarray:
    """Counts in 1-second bins [k, k+1) for k = 0 .. horizon-1."""
    counts, _ = np.histogram(times.to_numpy(dtype=float), bins=np.arange(0.0, horizon + 1.0, 1.0))
    return counts.astype(float)


def per_bin(times: np.ndarray, start: float, end: float, width: float) -> pd.DataFrame:
    """Arrivals per second in bins ``width`` seconds wide from ``start`` to ``end``: ``t, rate``."""
    edges = np.arange(start, end + width / 2, width)
    counts, _ = np.histogram(np.asarray(times, dtype=float), bins=edges)
    return pd.DataFrame({"t": edges[:-1], "rate": counts / width})


def _bin_density(density: pd.DataFrame, column: str, horizon: float) -> np.ndarray:
    k = np.floor(density["t"].to_numpy() + 1e-9).astype(int)
    values = density[column].to_numpy()
    out = np.zeros(int(horizon))
    keep = k < len(out)
    np.add.at(out, k[keep], values[keep])
    return out


def compare(name: str, cfg: HerdConfig = DEFAULT, seed: int = 1,
            policy: BackoffPolicy | None = None) -> pd.DataFrame:
    """Per second: simulated requests and reconnects, and the exact expectation where one exists."""
    policy = _policy(name, policy)
    sim = simulate_herd(name, cfg, seed, policy)
    horizon = cfg.horizon
    out = pd.DataFrame({"policy": name, "second": np.arange(int(horizon)),
                        "requests_sim": per_second(sim["t"], horizon),
                        "reconnects_sim": per_second(sim.loc[sim["accepted"], "t"], horizon)})
    if not _exact(policy):
        out["requests_exact"] = math.nan
        out["reconnects_exact"] = math.nan
        exact_failed = math.nan
    else:
        dens = arrival_density(name, cfg, policy=policy)
        out["requests_exact"] = _bin_density(dens, "requests", horizon)
        out["reconnects_exact"] = _bin_density(dens, "reconnects", horizon)
        exact_failed = float(dens.attrs["failed"])
    out.attrs["failed_sim"] = int(sim.attrs["failed"])
    out.attrs["failed_exact"] = exact_failed
    out.attrs["reconnect_times"] = sim.loc[sim["accepted"], "t"].to_numpy()
    return out


def summarise(per_sec: pd.DataFrame, cfg: HerdConfig = DEFAULT) -> dict[str, float]:
    """Peak and tail of one policy's herd (one :func:`compare` frame), simulated and exact."""
    times = np.asarray(per_sec.attrs["reconnect_times"], dtype=float)
    after = times - cfg.outage
    sim_peak = float(per_sec["reconnects_sim"].max())
    exact = per_sec["reconnects_exact"]
    exact_peak = float(exact.max()) if exact.notna().all() else math.nan
    if exact.notna().all() and exact.sum() > 0:
        cum = exact.cumsum() / exact.sum()
        exact_p99 = float(per_sec["second"][cum >= 0.99].iloc[0] + 1 - cfg.outage)
    else:
        exact_p99 = math.nan
    expected = per_sec["reconnects_exact"]
    dev = ((per_sec["reconnects_sim"] - expected) / np.sqrt(expected + 1.0)).abs()
    return {
        "reconnected": float(len(times)),
        "failed_sim": float(per_sec.attrs["failed_sim"]),
        "failed_exact": float(per_sec.attrs["failed_exact"]),
        "peak_per_s_sim": sim_peak,
        "peak_per_s_exact": exact_peak,
        "p50_after_return_s": float(np.quantile(after, 0.5)) if len(after) else math.nan,
        "p99_after_return_s": float(np.quantile(after, 0.99)) if len(after) else math.nan,
        "p99_after_return_s_exact_bin": exact_p99,
        "max_dev_sigma": float(dev.max()) if exact.notna().all() else math.nan,
    }
