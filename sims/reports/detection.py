"""Sentinel detection latencies against their closed form: uniform on [timeout, timeout + interval].

A silent subscriber death at a uniformly random phase of the sentinel cycle is
noticed when the next sentinel's round trip times out: somewhere between the
timeout and interval + timeout, uniformly. The detection report checks every
setting's latencies against that with a one-sample Kolmogorov-Smirnov distance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["KS_ALPHA_1PCT", "ks_critical", "ks_uniform", "summary"]

#: The asymptotic Kolmogorov-Smirnov coefficient at the 1 % level: critical distance c / sqrt(n).
KS_ALPHA_1PCT = 1.63


def ks_uniform(samples: Iterable[float], low: float, width: float) -> float:
    """The Kolmogorov-Smirnov distance of ``samples`` to the uniform law on [low, low + width]."""
    u = np.sort((np.fromiter(samples, dtype=float) - low) / width)
    n = len(u)
    if not n:
        return math.nan
    u = np.clip(u, 0.0, 1.0)
    ranks = np.arange(1, n + 1) / n
    return float(np.max(np.maximum(ranks - u, u - (ranks - 1.0 / n))))


def ks_critical(n: int) -> float:
    """The distance above which ``n`` samples reject the law at the 1 % level (asymptotic)."""
    return KS_ALPHA_1PCT / math.sqrt(n) if n else math.nan


def summary(deaths: pd.DataFrame) -> pd.DataFrame:
    """One row per (interval, timeout): latencies, the closed form and the KS verdict."""
    rows = []
    for (interval_key, timeout_key), d in deaths.groupby(["interval", "timeout"]):
        interval, timeout = float(str(interval_key)), float(str(timeout_key))
        lat = d["latency_s"].to_numpy(dtype=float)
        bound = interval + timeout
        rows.append({"interval (s)": interval, "timeout (s)": timeout, "bound (s)": bound,
                     "deaths": len(d), "detected": int(d["detected"].sum()),
                     "mean (s)": lat.mean(), "closed-form mean (s)": timeout + interval / 2,
                     "min (s)": lat.min(), "max (s)": lat.max(), "max / bound": lat.max() / bound,
                     "KS distance to uniform": ks_uniform(lat, timeout, interval),
                     "KS 1% critical": ks_critical(len(d))})
    return pd.DataFrame(rows)
