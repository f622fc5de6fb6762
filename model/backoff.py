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
``retry``               b·(1 + j·(2u₁ - 1)), drawn once, then repeated     a server-sent SSE ``retry:``
``socketio``            min(cap, T ∓ u·j·T), T = b·f^(n-1) uncapped,       engine.io's ``backo2``
                        minus when the draw's first decimal is even        (socket.io-client)
======================  =================================================  ===========================

Three switches describe how real clients use their delays, and a fourth lets
you bring your own:

* ``immediate_first``: the first attempt after a drop goes at once; attempt n
  then waits what attempt n - 1 would (gRPC, "the first attempt is immediate").
* ``from_start``: the wait is counted from the *start* of the previous attempt,
  not from its failure (gRPC's connection deadline); an attempt that took
  longer than the wait is followed at once. :func:`next_attempt_at` says when.
* ``connect_timeout``: the least time an attempt to a silent (black-holed) server
  hangs before it fails (gRPC's 20 s ``MIN_CONNECT_TIMEOUT``; 0: the caller's).
* ``custom``: a delay function ``(attempt, u, previous) -> seconds`` of your own
  (``--policy module:function``); when set it decides every delay, ``kind`` only
  labels it, and it has no closed form.

The real clients, all from this one module (:data:`CLIENT_POLICIES`):

=====================  =========================================================================
name                   what it does when the server is gone
=====================  =========================================================================
``eventsource``        the browser's ``EventSource``: a fixed reconnection time, 3 s in Chromium
                       (``kDefaultReconnectDelay``), forever; ``retry: N`` from the server
                       replaces it, and a server that jitters N per connection (``retry`` with
                       ``jitter``) spreads the herd
``fetch-event-source`` ``@microsoft/fetch-event-source``: fixed 1 s (``DefaultRetryInterval``),
                       also replaced by ``retry:``, forever
``socket.io``          ``reconnectionDelay`` 1 s, ``reconnectionDelayMax`` 5 s,
                       ``randomizationFactor`` 0.5, unlimited attempts, ``timeout`` 20 s
``grpc``               1 s initial, x1.6, ±20 %, cap 120 s, immediate first attempt, waits
                       counted from the attempt's start, 20 s minimum connect timeout
=====================  =========================================================================

Policies print as specs that parse back (:func:`spec` and :func:`parse_spec`):
``exponential(base=0.5,factor=1.5,cap=60,jitter=full)`` is full jitter on that
curve; ``retry(base=3,jitter=0.5)`` a server ``retry:`` of 3 s ± 50 %.

Deliberate divergences. ``socketio`` keeps engine.io's draw-to-sign mapping exactly
but not its truncation to whole milliseconds. gRPC waits its first backoff
(1 s) without jitter; ``grpc`` with ``immediate_first`` jitters it like the rest.

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
import re
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "CLIENT_POLICIES",
    "EVENTSOURCE_POLICY",
    "FETCH_EVENT_SOURCE_POLICY",
    "GRPC_CLIENT_POLICY",
    "GRPC_POLICY",
    "SEED_POLICY",
    "SOCKETIO_POLICY",
    "SPEC_HELP",
    "UNLIMITED_ATTEMPTS",
    "BackoffPolicy",
    "DelayFunction",
    "Kind",
    "PolicySpec",
    "ceiling",
    "delay",
    "mean_delay",
    "next_attempt_at",
    "parse_policy",
    "parse_spec",
    "spec",
    "total_wait",
]

#: Your own delay: ``(attempt, u, previous) -> seconds``, the contract of :func:`delay`.
DelayFunction = Callable[[int, float, "float | None"], float]
#: ``max_attempts`` of a client that never gives up.
UNLIMITED_ATTEMPTS = 2**31 - 1


class Kind(enum.Enum):
    """The family of a delay policy."""

    NONE = "none"  #: retry at once; the AWS post's baseline
    EXPONENTIAL = "exponential"  #: capped exponential, no jitter (the seed's)
    FULL = "full"  #: uniform on [0, t]
    EQUAL = "equal"  #: t/2 plus uniform on [0, t/2]
    DECORRELATED = "decorrelated"  #: uniform on [base, 3 x previous], capped
    GRPC = "grpc"  #: capped exponential with symmetric ±jitter
    RETRY = "retry"  #: a server-sent ``retry:``: one draw around base, then repeated
    SOCKETIO = "socketio"  #: engine.io's backo2: ±jitter around the uncapped curve, then capped


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BackoffPolicy:
    """A delay policy: its kind, base delay, cap (seconds), growth factor and jitter."""

    kind: Kind = Kind.EXPONENTIAL
    base: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    immediate_first: bool = False  #: attempt 1 goes at once; attempt n waits as n - 1 would
    from_start: bool = False  #: waits count from the previous attempt's start (gRPC)
    connect_timeout: float = 0.0  #: least seconds an attempt to a silent server hangs (0: caller's)
    custom: DelayFunction | None = None  #: your own delay function; ``kind`` only labels it
    name: str = ""  #: how a custom policy is called (its ``module:function``)

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= self.base and self.factor >= 1):
            raise ValueError(
                f"bad backoff policy {self!r}: need 0 <= base <= cap and factor >= 1"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"bad backoff jitter {self.jitter}: need 0 <= jitter < 1")
        if not self.connect_timeout >= 0:
            raise ValueError(f"bad connect timeout {self.connect_timeout}: need >= 0")

    @property
    def deterministic(self) -> bool:
        """Whether the delay ignores the uniform draw."""
        if self.custom is not None:
            return False
        return self.kind in (Kind.NONE, Kind.EXPONENTIAL) or (
            self.kind is Kind.RETRY and self.jitter == 0)

    @property
    def reads_previous(self) -> bool:
        """Whether the delay depends on the previous delay (decorrelated, retry, your own)."""
        return self.custom is not None or self.kind in (Kind.DECORRELATED, Kind.RETRY)

    def __str__(self) -> str:
        if self.custom is not None:
            return self.name or getattr(self.custom, "__name__", "custom")
        text = f"{self.kind.value}(base={self.base:g}, cap={self.cap:g}, factor={self.factor:g}"
        if self.kind in (Kind.GRPC, Kind.RETRY, Kind.SOCKETIO):
            text += f", jitter={self.jitter:g}"
        extras = [f"{f}=true" for f in ("immediate_first", "from_start") if getattr(self, f)]
        if self.connect_timeout:
            extras.append(f"connect_timeout={self.connect_timeout:g}")
        return text + "".join(", " + x for x in extras) + ")"


#: The seed's policy: 1 s doubling, capped at 30 s, no jitter.
SEED_POLICY = BackoffPolicy(kind=Kind.EXPONENTIAL, base=1.0, cap=30.0, factor=2.0)
#: gRPC connection backoff: 1 s initial, x1.6, ±20 % jitter, 120 s cap.
GRPC_POLICY = BackoffPolicy(kind=Kind.GRPC, base=1.0, cap=120.0, factor=1.6, jitter=0.2)
#: gRPC's client as connection-backoff.md specifies it: immediate first attempt, waits counted
#: from each attempt's start, and a 20 s minimum connect timeout.
GRPC_CLIENT_POLICY = dataclasses.replace(GRPC_POLICY, immediate_first=True, from_start=True,
                                         connect_timeout=20.0)
#: The browser's EventSource: 3 s between attempts (Chromium's default), forever.
EVENTSOURCE_POLICY = BackoffPolicy(kind=Kind.RETRY, base=3.0, cap=3.0, factor=1.0, jitter=0.0)
#: @microsoft/fetch-event-source: 1 s between attempts, forever.
FETCH_EVENT_SOURCE_POLICY = BackoffPolicy(kind=Kind.RETRY, base=1.0, cap=1.0, factor=1.0,
                                          jitter=0.0)
#: socket.io-client's Manager: 1 s doubling to 5 s, randomization 0.5, 20 s connect timeout.
SOCKETIO_POLICY = BackoffPolicy(kind=Kind.SOCKETIO, base=1.0, cap=5.0, factor=2.0, jitter=0.5,
                                connect_timeout=20.0)
#: The real clients by name, with the attempts each makes before giving up.
CLIENT_POLICIES: dict[str, tuple[BackoffPolicy, int]] = {
    "eventsource": (EVENTSOURCE_POLICY, UNLIMITED_ATTEMPTS),
    "fetch-event-source": (FETCH_EVENT_SOURCE_POLICY, UNLIMITED_ATTEMPTS),
    "socket.io": (SOCKETIO_POLICY, UNLIMITED_ATTEMPTS),
    "grpc": (GRPC_CLIENT_POLICY, UNLIMITED_ATTEMPTS),
}


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


def _socketio(policy: BackoffPolicy, attempt: int, u: float) -> float:
    """engine.io backo2: ``min(cap, T -/+ floor-free u*j*T)``, sign from the draw's first decimal."""
    exponent = attempt - 1
    room = policy.cap / max(1e-300, 1.0 - policy.jitter)  # beyond this T every draw is capped
    if policy.base <= 0:
        return 0.0
    if policy.factor > 1 and exponent * math.log(policy.factor) > math.log(
            max(room, 1e-300) / policy.base):
        return policy.cap
    t = policy.base * policy.factor**exponent
    deviation = u * policy.jitter * t
    return min(policy.cap, t - deviation if int(u * 10) % 2 == 0 else t + deviation)


def delay(policy: BackoffPolicy, attempt: int, u: float, previous: float | None = None) -> float:
    """The wait before attempt ``attempt`` given the draw ``u`` (and the previous delay)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0.0 <= u < 1.0:
        raise ValueError(f"the uniform draw must be in [0, 1), got {u}")
    if policy.custom is not None:
        return float(policy.custom(attempt, u, previous))
    if policy.immediate_first:
        if attempt == 1:
            return 0.0
        attempt -= 1
        previous = previous or None  # the immediate attempt's 0 is no previous wait
    kind = policy.kind
    if kind is Kind.NONE:
        return 0.0
    if kind is Kind.RETRY:
        if attempt == 1 or previous is None:
            return policy.base * (1.0 + policy.jitter * (2.0 * u - 1.0))
        return previous
    if kind is Kind.SOCKETIO:
        return _socketio(policy, attempt, u)
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


def _mean_capped_line(a: float, b: float, lo: float, hi: float, cap: float) -> float:
    """The mean of ``min(cap, a + b*u)`` for u uniform on [lo, hi]."""
    def integral(x0: float, x1: float) -> float:  # of a + b*u, exactly
        return a * (x1 - x0) + b * (x1 * x1 - x0 * x0) / 2.0
    if b == 0:
        return min(cap, a)
    cross = (cap - a) / b  # where the line meets the cap
    if b > 0:
        split = min(hi, max(lo, cross))
        total = integral(lo, split) + cap * (hi - split)
    else:
        split = min(hi, max(lo, cross))
        total = cap * (split - lo) + integral(split, hi)
    return total / (hi - lo)


def _socketio_mean(policy: BackoffPolicy, attempt: int) -> float:
    """The exact mean of :func:`_socketio`: ten deciles, each a capped line in the draw."""
    if policy.base <= 0:
        return 0.0
    room = policy.cap / max(1e-300, 1.0 - policy.jitter)
    exponent = attempt - 1
    if policy.factor > 1 and exponent * math.log(policy.factor) > math.log(room / policy.base):
        return policy.cap
    t = policy.base * policy.factor**exponent
    if t * (1.0 - policy.jitter) >= policy.cap:
        return policy.cap
    j = policy.jitter
    parts = [_mean_capped_line(t, (-1.0 if k % 2 == 0 else 1.0) * j * t, k / 10, (k + 1) / 10,
                               policy.cap) for k in range(10)]
    return math.fsum(parts) / 10.0


def mean_delay(policy: BackoffPolicy, attempt: int) -> float:
    """The expected wait before attempt ``attempt`` (exact but for decorrelated's grid)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if policy.custom is not None:
        raise ValueError(f"{policy} is your own delay function: it has no closed-form mean")
    if policy.immediate_first:
        if attempt == 1:
            return 0.0
        return mean_delay(dataclasses.replace(policy, immediate_first=False), attempt - 1)
    kind = policy.kind
    if kind is Kind.NONE:
        return 0.0
    if kind is Kind.RETRY:
        return policy.base  # symmetric around base, and the same draw every time
    if kind is Kind.SOCKETIO:
        return _socketio_mean(policy, attempt)
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
    if policy.custom is not None:
        raise ValueError(f"{policy} is your own delay function: it has no closed-form total")
    if policy.immediate_first:
        return total_wait(dataclasses.replace(policy, immediate_first=False), attempts - 1)
    if policy.kind is Kind.RETRY:
        return policy.base * attempts
    if policy.kind is Kind.SOCKETIO:
        return math.fsum(mean_delay(policy, n) for n in range(1, attempts + 1))
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


def next_attempt_at(policy: BackoffPolicy, *, started: float, failed: float, wait: float) -> float:
    """When the next attempt starts: ``wait`` after the failure, or after the start if ``from_start``."""
    if policy.from_start:
        return max(failed, started + wait)
    return failed + wait


class PolicySpec(NamedTuple):
    """A parsed ``--policy`` spec: the policy, and the attempts before giving up if it says."""

    policy: BackoffPolicy
    max_attempts: int | None = None


_PROTOTYPES: dict[Kind, BackoffPolicy] = {
    Kind.GRPC: GRPC_POLICY, Kind.RETRY: EVENTSOURCE_POLICY, Kind.SOCKETIO: SOCKETIO_POLICY}
_JITTER_KINDS = {"none": Kind.EXPONENTIAL, "full": Kind.FULL, "equal": Kind.EQUAL,
                 "decorrelated": Kind.DECORRELATED}
_ALIASES = {"delay": "base", "min": "base", "initial": "base", "max": "cap",
            "multiplier": "factor", "randomization": "jitter", "attempts": "max_attempts"}
_NUMBERS = ("base", "cap", "factor", "connect_timeout")
_SWITCHES = ("immediate_first", "from_start")

#: What a spec may say, for error messages and ``--help``.
SPEC_HELP = (
    "NAME or NAME(key=value,...): NAME one of " + ", ".join(k.value for k in Kind)
    + "; keys base, cap, factor (seconds and a growth factor >= 1), jitter (a fraction in "
    "[0, 1) for grpc, retry and socketio; for exponential a kind: none, full, equal, "
    "decorrelated, or a fraction for symmetric jitter), immediate_first and from_start "
    "(true/false), connect_timeout (seconds), max_attempts (a whole number, or inf); "
    "e.g. exponential(base=0.5,factor=1.5,cap=60,jitter=full)")


def _prototype(kind: Kind) -> BackoffPolicy:
    return _PROTOTYPES.get(kind, dataclasses.replace(SEED_POLICY, kind=kind))


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"bad backoff policy spec {text!r}: {why}; accepted: {SPEC_HELP}")


def parse_spec(text: str) -> PolicySpec:
    """A policy from a spec such as ``exponential(base=0.5,factor=1.5,cap=60,jitter=full)``."""
    m = re.fullmatch(r"\s*([A-Za-z][\w.-]*)\s*(?:\((.*)\))?\s*", text, flags=re.S)
    if m is None:
        raise _bad(text, "expected NAME or NAME(key=value,...)")
    name, body = m.group(1).lower(), m.group(2)
    try:
        kind = Kind(name)
    except ValueError:
        raise _bad(text, f"unknown policy {name!r}") from None
    fields: dict[str, object] = {}
    max_attempts: int | None = None
    for item in (body or "").split(","):
        if not item.strip():
            if body is not None and body.strip():
                raise _bad(text, "an empty argument")
            continue
        key, sep, raw = (part.strip() for part in item.partition("="))
        key = _ALIASES.get(key.lower(), key.lower())
        if not sep or not raw:
            raise _bad(text, f"{item.strip()!r} is not key=value")
        if key in fields or (key == "max_attempts" and max_attempts is not None):
            raise _bad(text, f"{key} given twice")
        if key == "jitter" and raw.lower() in _JITTER_KINDS:
            if kind is not Kind.EXPONENTIAL:
                raise _bad(text, f"jitter={raw} needs exponential(...); {kind.value} takes a fraction")
            kind = _JITTER_KINDS[raw.lower()]
            fields["jitter_kind"] = raw
            continue
        if key in _SWITCHES:
            if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise _bad(text, f"{key} is true or false, got {raw!r}")
            fields[key] = raw.lower() in ("true", "yes", "1")
            continue
        if key == "max_attempts":
            if raw.lower() in ("inf", "infinity", "unlimited", "forever"):
                max_attempts = UNLIMITED_ATTEMPTS
            elif raw.isdigit() and int(raw) >= 1:
                max_attempts = int(raw)
            else:
                raise _bad(text, f"max_attempts is a whole number >= 1 or inf, got {raw!r}")
            continue
        if key not in _NUMBERS and key != "jitter":
            raise _bad(text, f"unknown key {key!r}")
        try:
            value = float(raw)
        except ValueError:
            raise _bad(text, f"{key} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise _bad(text, f"{key} must be finite, got {raw!r}")
        fields[key] = value
    if "jitter" in fields and kind is Kind.EXPONENTIAL and "jitter_kind" not in fields:
        kind = Kind.GRPC  # exponential with a fraction of symmetric jitter
    fields.pop("jitter_kind", None)
    proto = _prototype(kind)
    if kind is Kind.GRPC and m.group(1).lower() == "exponential":
        proto = dataclasses.replace(SEED_POLICY, kind=Kind.GRPC)
    if "base" in fields and "cap" not in fields and kind is Kind.RETRY:
        fields["cap"] = fields["base"]  # a retry: has no cap to speak of
    try:
        policy = dataclasses.replace(proto, **fields)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _bad(text, str(exc)) from None
    return PolicySpec(policy, max_attempts)


def spec(policy: BackoffPolicy, max_attempts: int | None = None) -> str:
    """The spec that :func:`parse_spec` reads back as ``policy`` (and ``max_attempts``)."""
    if policy.custom is not None:
        return str(policy)
    parts = [f"base={policy.base:g}", f"cap={policy.cap:g}", f"factor={policy.factor:g}"]
    if policy.kind in (Kind.GRPC, Kind.RETRY, Kind.SOCKETIO):
        parts.append(f"jitter={policy.jitter:g}")
    parts += [f"{f}=true" for f in _SWITCHES if getattr(policy, f)]
    if policy.connect_timeout:
        parts.append(f"connect_timeout={policy.connect_timeout:g}")
    if max_attempts is not None:
        parts.append("max_attempts=" + ("inf" if max_attempts >= UNLIMITED_ATTEMPTS
                                        else str(max_attempts)))
    return f"{policy.kind.value}({','.join(parts)})"


def parse_policy(text: str, *, cap: float | None = None, base: float | None = None) -> BackoffPolicy:
    """A policy by name (``exponential``, ``full``, ``grpc``, ...) or by spec (:func:`parse_spec`)."""
    if "(" in text:
        policy = parse_spec(text).policy
    else:
        name = text.strip().lower()
        try:
            kind = Kind(name)
        except ValueError:
            accepted = ", ".join(k.value for k in Kind)
            raise ValueError(f"unknown backoff policy {text!r}; accepted: {accepted}") from None
        policy = _prototype(kind)
    return dataclasses.replace(
        policy,
        cap=policy.cap if cap is None else cap,
        base=policy.base if base is None else base,
    )
