"""Reconnect delay policies: pure functions of the attempt and a uniform draw.

Attempt numbers start at 1: ``delay(policy, n, u)`` is the wait *before* attempt
``n`` of a run of reconnects. ``u`` is a uniform draw in [0, 1) that the caller
makes (the checker, Hypothesis, SimPy's seeded generator or ``random.random()``
in the service), so every engine replays exactly.

======================  =================================================  ===========================
policy                  delay before attempt n (t = min(cap, b·f^(n-1)))   source
======================  =================================================  ===========================
``none``                0                                                  AWS post, "no backoff"
``exponential``         t                                                  the seed: 1 s doubling, 30 s
``full``                u·t                                                AWS "Full Jitter"
``equal``               t/2 + u·t/2                                        AWS "Equal Jitter"
``decorrelated``        min(cap, b + u·(3·previous - b)), previous₀ = b    AWS "Decorrelated Jitter"
``grpc``                t·(1 + j·(2u - 1)), b 1 s, f 1.6, j 0.2, cap 120   gRPC connection-backoff.md
======================  =================================================  ===========================

The seed's numbers. The seed caps 50 attempts at "about 25 min at cap", which is
50 × 30 s. The exact total wait before the 50th attempt starts, with delays
1, 2, 4, 8, 16 and then 30 s for attempts 6..50, is
``total_wait(SEED_POLICY, 50)`` = 31 + 45 × 30 = **1381 s (23 min 1 s)**: the
first five delays ramp up instead of waiting the full 30 s, so the figure is
119 s below 25 min, and the time spent inside each connect attempt comes on top.
"""

from __future__ import annotations

import dataclasses
import enum
import math

__all__ = [
    "GRPC_POLICY",
    "SEED_POLICY",
    "BackoffPolicy",
    "Kind",
    "ceiling",
    "delay",
    "mean_delay",
    "parse_policy",
    "total_wait",
]


class Kind(enum.Enum):
    """The family of a delay policy."""

    NONE = "none"  #: retry at once; the AWS post's baseline
    EXPONENTIAL = "exponential"  #: capped exponential, no jitter (the seed's)
    FULL = "full"  #: uniform on [0, t]
    EQUAL = "equal"  #: t/2 plus uniform on [0, t/2]
    DECORRELATED = "decorrelated"  #: uniform on [base, 3 x previous], capped
    GRPC = "grpc"  #: capped exponential with symmetric ±jitter


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BackoffPolicy:
    """A delay policy: its kind, base delay, cap (seconds), growth factor and jitter."""

    kind: Kind = Kind.EXPONENTIAL
    base: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= self.base and self.factor >= 1):
            raise ValueError(
                f"bad backoff policy {self!r}: need 0 <= base <= cap and factor >= 1"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"bad backoff jitter {self.jitter}: need 0 <= jitter < 1")

    @property
    def deterministic(self) -> bool:
        """Whether the delay ignores the uniform draw."""
        return self.kind in (Kind.NONE, Kind.EXPONENTIAL)

    def __str__(self) -> str:
        return f"{self.kind.value}(base={self.base:g}, cap={self.cap:g}, factor={self.factor:g})"


#: The seed's policy: 1 s doubling, capped at 30 s, no jitter.
SEED_POLICY = BackoffPolicy(kind=Kind.EXPONENTIAL, base=1.0, cap=30.0, factor=2.0)
#: gRPC connection backoff: 1 s initial, x1.6, ±20 % jitter, 120 s cap.
GRPC_POLICY = BackoffPolicy(kind=Kind.GRPC, base=1.0, cap=120.0, factor=1.6, jitter=0.2)


def ceiling(policy: BackoffPolicy, attempt: int) -> float:
    """The un-jittered capped exponential ``min(cap, base * factor**(attempt-1))``."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    exponent = attempt - 1
    if policy.factor > 1 and exponent * math.log(policy.factor) > math.log(
        max(policy.cap, 1e-300) / max(policy.base, 1e-300)
    ):
        return policy.cap
    return min(policy.cap, policy.base * policy.factor**exponent)


def delay(policy: BackoffPolicy, attempt: int, u: float, previous: float | None = None) -> float:
    """The wait before attempt ``attempt`` given the draw ``u`` (and the previous delay)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0.0 <= u < 1.0:
        raise ValueError(f"the uniform draw must be in [0, 1), got {u}")
    kind = policy.kind
    if kind is Kind.NONE:
        return 0.0
    if kind is Kind.DECORRELATED:
        prev = policy.base if previous is None or attempt == 1 else previous
        return min(policy.cap, policy.base + u * (3.0 * prev - policy.base))
    t = ceiling(policy, attempt)
    if kind is Kind.EXPONENTIAL:
        return t
    if kind is Kind.FULL:
        return u * t
    if kind is Kind.EQUAL:
        return t / 2.0 + u * t / 2.0
    return t * (1.0 + policy.jitter * (2.0 * u - 1.0))  # GRPC


def _decorrelated_means(policy: BackoffPolicy, attempts: int, bins: int = 4096) -> list[float]:
    """Mean delay per attempt for decorrelated jitter, by propagating its distribution.

    The cap makes the recursion non-linear, so there is no closed form; the
    distribution of the previous delay is carried on a grid over [base, cap] (plus an
    atom at cap), which is exact up to the grid's resolution (error well below 0.1 %).
    """
    base, cap = policy.base, policy.cap
    if cap <= base:
        return [base] * attempts
    width = (cap - base) / bins
    centres = [base + (i + 0.5) * width for i in range(bins)]
    # Start: a point mass at `base` (previous_0 = base); we treat it as a source.
    sources: list[tuple[float, float]] = [(base, 1.0)]
    means: list[float] = []
    for _ in range(attempts):
        diff = [0.0] * (bins + 1)
        partial = [0.0] * bins
        atom = 0.0
        for p, m in sources:
            if m == 0.0:
                continue
            hi = 3.0 * p
            span = hi - base
            if span <= 0:
                # all mass lands at base (only if base == 0)
                partial[0] += m
                continue
            density = m / span
            end = min(hi, cap)
            atom += m * max(0.0, hi - cap) / span
            full = int((end - base) / width)
            full = min(full, bins)
            if full > 0:
                diff[0] += density * width
                diff[full] -= density * width
            if full < bins:
                rest = (end - base) - full * width
                if rest > 0:
                    partial[full] += density * rest
        masses = []
        running = 0.0
        for i in range(bins):
            running += diff[i]
            masses.append(running + partial[i])
        mean = sum(c * m for c, m in zip(centres, masses, strict=True)) + atom * cap
        means.append(mean)
        sources = [*zip(centres, masses, strict=True), (cap, atom)]
    return means


def mean_delay(policy: BackoffPolicy, attempt: int) -> float:
    """The expected wait before attempt ``attempt`` (exact but for decorrelated's grid)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    kind = policy.kind
    if kind is Kind.NONE:
        return 0.0
    if kind is Kind.DECORRELATED:
        return _decorrelated_means(policy, attempt)[-1]
    t = ceiling(policy, attempt)
    if kind is Kind.FULL:
        return t / 2.0
    if kind is Kind.EQUAL:
        return 0.75 * t
    return t  # EXPONENTIAL exactly; GRPC's jitter is symmetric around t


def total_wait(policy: BackoffPolicy, attempts: int) -> float:
    """Total wait before attempts 1..``attempts`` (exact if deterministic, else the mean)."""
    if attempts <= 0:
        return 0.0
    if policy.kind is Kind.DECORRELATED:
        return math.fsum(_decorrelated_means(policy, attempts))
    if policy.kind in (Kind.EXPONENTIAL, Kind.FULL, Kind.EQUAL, Kind.GRPC):
        # Geometric part until the cap, then linear: closed form, no loop over attempts.
        scale = {Kind.EXPONENTIAL: 1.0, Kind.GRPC: 1.0, Kind.FULL: 0.5, Kind.EQUAL: 0.75}[
            policy.kind
        ]
        b, f, cap = policy.base, policy.factor, policy.cap
        if b == 0:
            return 0.0
        if f == 1.0:
            return scale * min(b, cap) * attempts
        # first attempt whose ceiling hits the cap
        k = 1
        while k <= attempts and b * f ** (k - 1) < cap:
            k += 1
        ramp = k - 1  # attempts 1..ramp are below the cap
        geometric = b * (f**ramp - 1.0) / (f - 1.0)
        return scale * (geometric + cap * (attempts - ramp))
    return 0.0


def parse_policy(text: str, *, cap: float | None = None, base: float | None = None) -> BackoffPolicy:
    """A policy by name (``exponential``, ``full``, ``equal``, ``decorrelated``, ``grpc``, ``none``)."""
    name = text.strip().lower()
    try:
        kind = Kind(name)
    except ValueError:
        accepted = ", ".join(k.value for k in Kind)
        raise ValueError(f"unknown backoff policy {text!r}; accepted: {accepted}") from None
    proto = GRPC_POLICY if kind is Kind.GRPC else dataclasses.replace(SEED_POLICY, kind=kind)
    return dataclasses.replace(
        proto,
        cap=proto.cap if cap is None else cap,
        base=proto.base if base is None else base,
    )
