"""A SimPy reproduction of the AWS "Exponential Backoff And Jitter" experiment (2015).

The experiment (Marc Brooker, AWS Architecture Blog, and its public simulator
``aws-samples/aws-arch-backoff-simulator``, ``src/backoff_simulator.py``): N
clients each want to update one row of an optimistic-concurrency (OCC) store
exactly once. A client reads the row's version, then writes with that version;
the write succeeds only if nobody wrote in between, which bumps the version.
A client whose write fails backs off and starts over with a new read. We count
the write calls (the work the store does) and the time until the last client
has succeeded, as the simulator does, for N = 10, 20, ..., 100 (the simulator's
published run stops at 50; the post's graphs go on to 100) and 100 trials. Each
claim is judged at every N (:func:`judge_over_range`), so a claim that holds only
for some client counts says where.

What is copied from the simulator's source, and what is ours:

* every message (read request, read reply, write request, write reply) takes
  ``|Normal(10 ms, 2 ms)|``; after a failed write the next read is sent after a
  message delay plus the backoff;
* base 5 ms, cap 2000 ms. The simulator's n-th backoff (n = 1 after the first
  failure) uses ``min(cap, base * 2**n)``, which is ``model.backoff``'s ceiling
  for attempt ``n + 1``; decorrelated jitter starts from ``previous = base`` in
  both. So the delays are :func:`model.backoff.delay` with the policy's kind,
  ``base=5, cap=2000, factor=2`` and attempt ``n + 1`` -- no second copy;
* the simulator runs its own heap of messages; ours is SimPy, one process per
  client and the store as shared state (a write is judged the moment it arrives,
  as in the simulator), with a seeded generator per (clients, policy, trial).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import simpy

from model.backoff import BackoffPolicy, Kind, delay

__all__ = ["BASE_MS", "CAP_MS", "CLAIMS", "CLIENTS", "COLUMNS", "NET_MEAN_MS", "NET_SD_MS",
           "POLICIES", "TRIALS", "Claim", "ClaimVerdict", "Trial", "growth_exponent",
           "judge_claims", "judge_over_range", "means", "policy", "run_trial", "sweep"]

BASE_MS = 5.0  #: the simulator's base delay, ms
CAP_MS = 2000.0  #: the simulator's cap, ms
NET_MEAN_MS = 10.0  #: mean one-way message delay, ms
NET_SD_MS = 2.0  #: its standard deviation (the absolute value of a normal draw is used)
CLIENTS: tuple[int, ...] = tuple(range(10, 101, 10))  #: contending clients, through 100
TRIALS = 100  #: trials per (clients, policy), as in the simulator
#: The five policies of the post, named as in ``model.backoff.Kind``.
POLICIES: tuple[str, ...] = ("none", "exponential", "full", "equal", "decorrelated")
#: Columns of ``reports/aws-jitter.csv``.
COLUMNS: tuple[str, ...] = ("clients", "policy", "write_calls", "completion_ms")


def policy(name: str) -> BackoffPolicy:
    """The ``model.backoff`` policy for one of :data:`POLICIES` at the simulator's base and cap."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; accepted: {', '.join(POLICIES)}")
    return BackoffPolicy(kind=Kind(name), base=BASE_MS, cap=CAP_MS, factor=2.0)


class Trial(NamedTuple):
    """One trial: write calls the store served and when the last client succeeded (ms)."""

    write_calls: int
    completion_ms: float


def run_trial(clients: int, backoff: BackoffPolicy, seed: int) -> Trial:
    """N clients race to update one OCC row once each; return the store's work and the finish."""
    env = simpy.Environment()
    rng = random.Random(seed)
    store = {"version": 0, "writes": 0}
    finish = [0.0]

    def net() -> float:
        return abs(rng.normalvariate(NET_MEAN_MS, NET_SD_MS))

    def client() -> Any:
        failures = 0
        previous: float | None = None
        yield env.timeout(net())  # the read request travels to the store
        while True:
            seen = store["version"]  # the store reads the row
            yield env.timeout(net())  # the read reply travels back
            yield env.timeout(net())  # the write request travels to the store
            store["writes"] += 1
            ok = store["version"] == seen
            if ok:
                store["version"] += 1
            yield env.timeout(net())  # the write reply travels back
            if ok:
                finish[0] = max(finish[0], env.now)
                return
            failures += 1
            wait = delay(backoff, failures + 1, rng.random(), previous)
            previous = wait
            yield env.timeout(net() + wait)  # back off, then the next read request travels

    for _ in range(clients):
        env.process(client())
    env.run()
    return Trial(store["writes"], finish[0])


def sweep(clients: Sequence[int] = CLIENTS, trials: int = TRIALS, seed: int = 2015,
          policies: Sequence[str] = POLICIES) -> pd.DataFrame:
    """Every trial: one row per (clients, policy, trial) with its work and completion time."""
    rows = []
    for n in clients:
        for p, name in enumerate(policies):
            backoff = policy(name)
            for t in range(trials):
                trial = run_trial(n, backoff, seed * 1_000_003 + n * 1009 + p * 101 + t)
                rows.append({"clients": n, "policy": name, "trial": t,
                             "write_calls": trial.write_calls, "completion_ms": trial.completion_ms})
    return pd.DataFrame(rows)


def means(trials: pd.DataFrame) -> pd.DataFrame:
    """Means over trials, with exactly the columns of :data:`COLUMNS`, policies in post order."""
    out = (trials.groupby(["clients", "policy"], sort=False)[["write_calls", "completion_ms"]]
           .mean().reset_index())
    out["policy"] = pd.Categorical(out["policy"], categories=list(POLICIES), ordered=True)
    out = out.sort_values(["clients", "policy"]).reset_index(drop=True)
    out["policy"] = out["policy"].astype(str)
    return out[list(COLUMNS)]


class ClaimVerdict(NamedTuple):
    """Whether our numbers support a claim (``yes``, ``partly``, ``no``) and the numbers that say so."""

    verdict: str
    evidence: str


def _yes(ok: bool, evidence: str) -> ClaimVerdict:
    return ClaimVerdict("yes" if ok else "no", evidence)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the post, in our words, and how to judge it on the means table."""

    text: str
    judge: Callable[[pd.DataFrame], ClaimVerdict]


def _pivot(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.pivot(index="clients", columns="policy", values=column)


def growth_exponent(frame: pd.DataFrame, name: str) -> float:
    """The slope of log(write calls) against log(clients) for policy ``name`` (2: quadratic)."""
    calls = _pivot(frame, "write_calls")[name]
    x = np.log(calls.index.to_numpy(dtype=float))
    y = np.log(calls.to_numpy(dtype=float))
    return float(np.polyfit(x, y, 1)[0])


def _quadratic(frame: pd.DataFrame) -> ClaimVerdict:
    calls = _pivot(frame, "write_calls")
    top = calls.index.max()
    most = bool(calls.loc[top, "none"] == calls.loc[top].max())
    n = calls.index.to_series()
    ratio = (calls["none"] / (n * (n + 1) / 2)).round(2)
    slope = growth_exponent(frame, "none")
    verdict = "yes" if most and slope >= 1.8 else "partly" if most and slope >= 1.3 else "no"
    return ClaimVerdict(verdict,
                        f"no backoff makes the most calls at N={top}: {most}; its calls grow as "
                        f"N^{slope:.2f}; calls / (N(N+1)/2) = "
                        + ", ".join(f"{r:g} at N={k}" for k, r in ratio.items()))


def _expo_clusters(frame: pd.DataFrame) -> ClaimVerdict:
    calls = _pivot(frame, "write_calls")
    top = calls.index.max()
    share = calls.loc[top, "exponential"] / calls.loc[top, "none"]
    best_jitter = min(calls.loc[top, p] for p in ("full", "equal", "decorrelated"))
    return _yes(bool(share > 0.5 and calls.loc[top, "exponential"] > 1.5 * best_jitter),
                f"at N={top}: exponential makes {calls.loc[top, 'exponential']:.0f} calls, "
                f"{share:.0%} of no backoff's {calls.loc[top, 'none']:.0f}; the best "
                f"jittered policy makes {best_jitter:.0f}")


def _jitter_less_work(frame: pd.DataFrame) -> ClaimVerdict:
    calls = _pivot(frame, "write_calls")
    ok = all(calls.loc[n, j] < min(calls.loc[n, "none"], calls.loc[n, "exponential"])
             for n in calls.index for j in ("full", "equal", "decorrelated"))
    top = calls.index.max()
    cut = 1 - calls.loc[top, "full"] / calls.loc[top, "exponential"]
    return _yes(ok, f"every jittered policy below both un-jittered ones at every N: {ok}; "
                    f"at N={top} full jitter makes {cut:.0%} fewer calls than exponential")


def _expo_loser(frame: pd.DataFrame) -> ClaimVerdict:
    calls, time = _pivot(frame, "write_calls"), _pivot(frame, "completion_ms")
    jit = ("full", "equal", "decorrelated")
    work = all(calls.loc[n, "exponential"] > calls.loc[n, j] for n in calls.index for j in jit)
    slow = all(time.loc[n, "exponential"] > time.loc[n, j] for n in time.index for j in jit)
    top = time.index.max()
    return _yes(work and slow,
                f"more calls than every jittered policy at every N: {work}; more time: "
                f"{slow}; at N={top} it takes {time.loc[top, 'exponential']:.0f} ms against "
                f"{min(time.loc[top, j] for j in jit):.0f} ms for the fastest jittered one")


def _full_equal_same_decorr_more(frame: pd.DataFrame) -> ClaimVerdict:
    calls = _pivot(frame, "write_calls")
    top = calls.index.max()
    f, e, d = (calls.loc[top, p] for p in ("full", "equal", "decorrelated"))
    same = abs(f - e) / f < 0.15
    more = d > max(f, e)
    return _yes(bool(same and more),
                f"at N={top}: full {f:.0f}, equal {e:.0f} ({(e - f) / f:+.0%}), "
                f"decorrelated {d:.0f} ({(d - f) / f:+.0%} against full)")


def _equal_slowest_jitter(frame: pd.DataFrame) -> ClaimVerdict:
    calls, time = _pivot(frame, "write_calls"), _pivot(frame, "completion_ms")
    slow = all(time.loc[n, "equal"] > max(time.loc[n, "full"], time.loc[n, "decorrelated"])
               for n in time.index)
    top = time.index.max()
    more = calls.loc[top, "equal"] > calls.loc[top, "full"]
    return _yes(bool(slow and more),
                f"slowest jittered policy at every N: {slow}; at N={top} equal takes "
                f"{time.loc[top, 'equal']:.0f} ms against full {time.loc[top, 'full']:.0f} ms "
                f"and decorrelated {time.loc[top, 'decorrelated']:.0f} ms, with "
                f"{calls.loc[top, 'equal']:.0f} calls against full's {calls.loc[top, 'full']:.0f}")


def _full_vs_decorrelated(frame: pd.DataFrame) -> ClaimVerdict:
    calls, time = _pivot(frame, "write_calls"), _pivot(frame, "completion_ms")
    top = calls.index.max()
    less_work = calls.loc[top, "full"] < calls.loc[top, "decorrelated"]
    more_time = time.loc[top, "full"] > time.loc[top, "decorrelated"]
    return _yes(bool(less_work and more_time),
                f"at N={top}: full {calls.loc[top, 'full']:.0f} calls in "
                f"{time.loc[top, 'full']:.0f} ms, decorrelated "
                f"{calls.loc[top, 'decorrelated']:.0f} calls in "
                f"{time.loc[top, 'decorrelated']:.0f} ms")


#: The post's claims about this experiment, paraphrased, each with its judge.
CLAIMS: tuple[Claim, ...] = (
    Claim("Without backoff every client competes in every round, so the work grows about "
          "quadratically with the number of clients (N + (N-1) + ... + 1 calls).", _quadratic),
    Claim("Exponential backoff alone does not fix contention: the retries stay clustered, so "
          "the work stays high.", _expo_clusters),
    Claim("Adding jitter cuts the work substantially compared with both approaches "
          "without jitter.", _jitter_less_work),
    Claim("Exponential backoff without jitter is the clear loser: it takes more work and more "
          "time than every jittered approach.", _expo_loser),
    Claim("Full and Equal Jitter make about the same number of calls; Decorrelated Jitter "
          "makes more.", _full_equal_same_decorr_more),
    Claim("Of the jittered approaches Equal Jitter is the loser: slightly more work than Full "
          "Jitter, and it takes much longer.", _equal_slowest_jitter),
    Claim("Between Full and Decorrelated Jitter: Full uses less work but slightly more time.",
          _full_vs_decorrelated),
)


def judge_claims(frame: pd.DataFrame) -> pd.DataFrame:
    """Each claim with our verdict and the numbers behind it (``frame``: :func:`means`)."""
    rows = []
    for i, claim in enumerate(CLAIMS, 1):
        verdict = claim.judge(frame)
        rows.append({"claim": i, "text": claim.text,
                     "supported": verdict.verdict,
                     "our numbers": verdict.evidence})
    return pd.DataFrame(rows)


def _ranges(values: list[int]) -> str:
    """``[10, 20, 30, 60]`` -> ``'10-30, 60'`` for client counts spaced evenly."""
    if not values:
        return "none"
    return ", ".join(str(v) for v in values) if len(values) <= 3 else f"{values[0]}-{values[-1]}" \
        if values == list(range(values[0], values[-1] + 1, values[1] - values[0])) else \
        ", ".join(str(v) for v in values)


def judge_over_range(frame: pd.DataFrame) -> pd.DataFrame:
    """Each claim judged at every client count: where it holds, where not, and the verdict.

    Claim 1 is about growth, so at N it is judged on every count up to N (from the
    third count on); the others are judged on the means at N alone.
    """
    counts = sorted(int(n) for n in frame["clients"].unique())
    rows = []
    for i, claim in enumerate(CLAIMS, 1):
        holds: list[int] = []
        fails: list[int] = []
        partly: list[int] = []
        for k, n in enumerate(counts):
            if i == 1:
                if k < 2:
                    continue
                part = frame[frame["clients"] <= n]
            else:
                part = frame[frame["clients"] == n]
            verdict_at = claim.judge(part).verdict
            {"yes": holds, "partly": partly}.get(verdict_at, fails).append(n)
        verdict = "yes" if not fails and not partly else ("no" if not holds and not partly
                                                          else "partly")
        where = "; ".join(f"{what} at N = {_ranges(ns)}" for what, ns in (
            ("holds", holds), ("partly", partly), ("not", fails)) if ns)
        rows.append({"claim": i, "text": claim.text, "supported": verdict, "where": where,
                     "holds_at": ",".join(map(str, holds)), "fails_at": ",".join(map(str, fails)),
                     f"our numbers at N={counts[-1]}": claim.judge(frame).evidence})
    return pd.DataFrame(rows)
