"""Reconnect time over outage lengths, the browser herd, and time to ``failed`` with F3 off.

**Percentiles over outage lengths.** A client's stable stream drops at 0 and the
server is back ``L`` seconds later. While it is down every attempt fails, after
``attempt_s`` seconds: a round trip when the server refuses at once (``refused``),
the client's connect timeout when it is black-holed (``timeout``: the policy's own
``connect_timeout``, else the report's). The attempts' start times do not depend
on ``L`` until one succeeds, so one schedule per sampled client
(:func:`attempt_starts`) answers every ``L`` at once: the first attempt that starts
at or after ``L`` succeeds, and the extra wait is its start minus ``L``; a client
that used up its attempts before ``L`` is ``failed``. The schedule is that of the
client machine -- wait :func:`model.backoff.delay` before attempt ``n``, give up
after ``max_attempts`` -- with :func:`model.backoff.next_attempt_at` deciding when
an attempt follows a slow one (gRPC counts its wait from the attempt's start);
``tests/reports`` checks it against :mod:`model.client` step by step.

A simplification, stated: an attempt that starts before ``L`` fails, even when the
server returns while it hangs, so ``timeout`` figures are upper bounds by up to one
connect timeout.

**Time to failed with the heartbeat guard off** runs the seed's bench
(:class:`sims.seed.Bench`: the client, a replica session and a fake network on fake
time) with every replica refusing, or accepting and then staying silent, and
reports when the client shows ``failed`` and how far its counter went.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from model import client as cl
from model.backoff import (
    CLIENT_POLICIES,
    EVENTSOURCE_POLICY,
    SEED_POLICY,
    UNLIMITED_ATTEMPTS,
    BackoffPolicy,
    delay,
    next_attempt_at,
    parse_spec,
)
from model.fixes import Fixes

__all__ = ["OUTAGES", "Client", "attempt_starts", "browser_clients", "clients", "percentiles",
           "time_to_failed", "time_to_failed_table"]

#: Outage lengths of the report, 1 s to 60 min (seconds).
OUTAGES: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Client(NamedTuple):
    """A client to compare: label, policy, attempts before ``failed``, where it comes from."""

    label: str
    policy: BackoffPolicy
    max_attempts: int
    source: str


def clients(max_attempts: int = 50, retry: float = 3.0, retry_jitter: float = 0.5,
            extra: Sequence[Client] = ()) -> list[Client]:
    """The seed's client, the jitter family at its settings, and the clients people run."""
    def real(name: str) -> tuple[BackoffPolicy, int]:
        return CLIENT_POLICIES[name]

    jittered = parse_spec(f"retry(base={retry:g},jitter={retry_jitter:g})").policy
    fixed = parse_spec(f"retry(base={retry:g})").policy
    out = [
        Client("seed (exponential, cap 30 s)", SEED_POLICY, max_attempts, "the seed"),
        Client("full jitter (seed's curve)", parse_spec("exponential(jitter=full)").policy,
               max_attempts, "AWS post"),
        Client("decorrelated (seed's curve)", parse_spec("exponential(jitter=decorrelated)").policy,
               max_attempts, "AWS post"),
        Client("EventSource (3 s)", EVENTSOURCE_POLICY, UNLIMITED_ATTEMPTS, "browser default"),
        Client(f"EventSource, retry: {retry:g} s", fixed, UNLIMITED_ATTEMPTS, "server retry:"),
        Client(f"EventSource, retry: {retry:g} s ±{retry_jitter:.0%}", jittered, UNLIMITED_ATTEMPTS,
               "server retry:, jittered per connection"),
        Client("fetch-event-source (1 s)", *real("fetch-event-source"), "library default"),
        Client("socket.io-client (1-5 s)", *real("socket.io"), "library default"),
        Client("gRPC (1 s x1.6, 120 s)", *real("grpc"), "connection-backoff.md"),
    ]
    return out + list(extra)


def browser_clients(retry: float = 3.0, retry_jitter: float = 0.5) -> list[Client]:
    """Plain browsers (3 s) against the same browsers told a jittered ``retry:``."""
    return [c for c in clients(retry=retry, retry_jitter=retry_jitter)
            if c.label.startswith("EventSource (3 s)") or "±" in c.label]


def attempt_starts(policy: BackoffPolicy, max_attempts: int, attempt_s: float, horizon: float,
                   rng: random.Random) -> tuple[np.ndarray, float]:
    """Start times of the attempts after a drop at 0 while the server is down, and when it failed.

    Attempts are generated until one starts after ``horizon``; the failure time is
    ``inf`` for a client that had not given up by then.
    """
    starts: list[float] = []
    previous: float | None = None
    wait = delay(policy, 1, rng.random(), previous)
    previous = wait or None
    start = next_attempt_at(policy, started=0.0, failed=0.0, wait=wait)
    attempt = 1
    while True:
        starts.append(start)
        if start > horizon:
            return np.asarray(starts), math.inf
        failed = start + attempt_s
        if attempt >= max_attempts:
            return np.asarray(starts), failed
        wait = delay(policy, attempt + 1, rng.random(), previous)
        previous = wait or None
        start = next_attempt_at(policy, started=start, failed=failed, wait=wait)
        attempt += 1


def percentiles(client: Client, outages: Sequence[float] = OUTAGES, *, samples: int = 1000,
                rtt: float = 0.1, connect_timeout: float = 10.0, seed: int = 1) -> pd.DataFrame:
    """p50/p95/p99 of the extra wait after the server returns, and P(failed), per outage and mode."""
    rows = []
    horizon = max(outages)
    n = 1 if client.policy.deterministic else samples
    for mode in ("refused", "timeout"):
        attempt_s = rtt if mode == "refused" else (client.policy.connect_timeout or connect_timeout)
        rng = random.Random(seed)
        extra = np.full((n, len(outages)), np.nan)
        failed = np.zeros((n, len(outages)), dtype=bool)
        for i in range(n):
            starts, failed_at = attempt_starts(client.policy, client.max_attempts, attempt_s,
                                               horizon, rng)
            idx = np.searchsorted(starts, np.asarray(outages, dtype=float), side="left")
            for j, (k, length) in enumerate(zip(idx, outages, strict=True)):
                if k < len(starts) and not (failed_at <= length and k >= client.max_attempts):
                    extra[i, j] = starts[k] - length + rtt  # plus the successful connect
                else:
                    failed[i, j] = True
        for j, length in enumerate(outages):
            ok = extra[:, j][~np.isnan(extra[:, j])]
            rows.append({
                "client": client.label, "mode": mode, "attempt_s": attempt_s, "outage_s": length,
                "p50_s": float(np.quantile(ok, 0.5)) if len(ok) else math.nan,
                "p95_s": float(np.quantile(ok, 0.95)) if len(ok) else math.nan,
                "p99_s": float(np.quantile(ok, 0.99)) if len(ok) else math.nan,
                "p_failed": float(failed[:, j].mean()), "samples": n,
            })
    return pd.DataFrame(rows)


class Failed(NamedTuple):
    """When the client showed ``failed`` after the outage began (None: never), and its attempts."""

    seconds: float | None
    attempts: int
    counter_max: int


def time_to_failed(fixes: Fixes, outage: str, *, max_attempts: int = 50,
                   policy: BackoffPolicy = SEED_POLICY, horizon: float = 4000.0) -> Failed:
    """Drop a stable stream at 5 s with every replica ``refused`` or ``stalled``; when is it failed?"""
    import dataclasses

    from sims.seed import Bench

    bench = Bench(fixes, max_attempts=max_attempts)
    bench.client_cfg = dataclasses.replace(bench.client_cfg, policy=policy)
    down_at = 5.0
    watch: dict[str, float | None] = {"failed": None}
    counter = [0]

    def hook(event: cl.ClientInput, before: cl.ClientState, actions: object) -> None:
        counter[0] = max(counter[0], bench.client.attempts)
        if bench.client.status is cl.Status.FAILED and watch["failed"] is None:
            watch["failed"] = bench.now

    def down() -> None:
        if outage == "refused":
            bench.refuse = True
        else:
            bench.stall_new_streams = True
        bench.drop_stream()

    if outage not in ("refused", "stalled"):
        raise ValueError(f"outage is 'refused' or 'stalled', got {outage!r}")
    bench.client_hooks.append(hook)
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event", lambda: bench.publish(1))
    bench.script(down_at, "every replica goes down", down)
    bench.run_until(down_at + horizon)
    failed = watch["failed"]
    return Failed(None if failed is None else failed - down_at,
                  sum(1 for t in bench.opens if t >= down_at), counter[0])


def time_to_failed_table(max_attempts: int = 50, policy: BackoffPolicy = SEED_POLICY,
                         horizon: float = 4000.0) -> pd.DataFrame:
    """Time to ``failed`` with the heartbeat guard (F3) on and off, refused and stalled."""
    rows = []
    for guard in (True, False):
        fixes = Fixes.all() if guard else Fixes.all().without("heartbeat-guard")
        for outage in ("refused", "stalled"):
            r = time_to_failed(fixes, outage, max_attempts=max_attempts, policy=policy,
                               horizon=horizon)
            rows.append({"heartbeat_guard": "on" if guard else "off (the seed's code)",
                         "outage": outage, "failed_after_s": r.seconds, "attempts": r.attempts,
                         "counter_max": r.counter_max, "horizon_s": horizon})
    return pd.DataFrame(rows)
