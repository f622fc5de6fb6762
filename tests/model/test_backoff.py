"""Backoff policies: the seed's delays, closed forms against Monte Carlo, bad inputs."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from model.backoff import (
    CLIENT_POLICIES,
    EVENTSOURCE_POLICY,
    FETCH_EVENT_SOURCE_POLICY,
    GRPC_CLIENT_POLICY,
    GRPC_POLICY,
    SEED_POLICY,
    SOCKETIO_POLICY,
    UNLIMITED_ATTEMPTS,
    BackoffPolicy,
    Kind,
    PolicySpec,
    ceiling,
    delay,
    mean_delay,
    next_attempt_at,
    parse_policy,
    parse_spec,
    spec,
    total_wait,
)

SAMPLES = 20_000


def policy(kind: Kind) -> BackoffPolicy:
    """The seed's policy with another kind (gRPC keeps its own numbers)."""
    return GRPC_POLICY if kind is Kind.GRPC else dataclasses.replace(SEED_POLICY, kind=kind)


def test_seed_policy_delays_double_from_one_second_to_the_cap() -> None:
    assert [delay(SEED_POLICY, n, 0.0) for n in range(1, 11)] == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert SEED_POLICY.deterministic
    assert all(delay(SEED_POLICY, n, u) == delay(SEED_POLICY, n, 0.0)
               for n in (1, 5, 50) for u in (0.0, 0.3, 0.999))


def test_seed_total_wait_before_the_fiftieth_attempt_is_1381_seconds() -> None:
    assert total_wait(SEED_POLICY, 50) == 1381  # 31 + 45 x 30: not quite "25 min"
    assert total_wait(SEED_POLICY, 50) == sum(delay(SEED_POLICY, n, 0.0) for n in range(1, 51))


@pytest.mark.parametrize("kind", [Kind.EXPONENTIAL, Kind.FULL, Kind.EQUAL, Kind.GRPC, Kind.NONE])
@pytest.mark.parametrize("attempts", [0, 1, 5, 6, 7, 12, 50, 200])
def test_closed_form_total_equals_the_sum_of_means(kind: Kind, attempts: int) -> None:
    p = policy(kind)
    expected = math.fsum(mean_delay(p, n) for n in range(1, attempts + 1))
    assert total_wait(p, attempts) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_ceiling_is_capped_without_overflow() -> None:
    assert ceiling(SEED_POLICY, 10**9) == 30.0
    assert ceiling(GRPC_POLICY, 10**9) == 120.0
    assert ceiling(GRPC_POLICY, 3) == pytest.approx(2.56)


def within_sampling_error(samples: list[float], expected: float, slack: float = 0.0) -> None:
    """The sample mean is within 4.5 standard errors (plus ``slack``) of ``expected``."""
    n = len(samples)
    mean = math.fsum(samples) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in samples) / (n - 1))
    assert abs(mean - expected) <= 4.5 * sd / math.sqrt(n) + slack + 1e-12, (mean, expected, sd)


@pytest.mark.parametrize("kind", [Kind.FULL, Kind.EQUAL, Kind.GRPC])
@pytest.mark.parametrize("attempt", [1, 3, 6, 12])
def test_jittered_mean_delay_matches_monte_carlo(kind: Kind, attempt: int) -> None:
    p = policy(kind)
    rng = random.Random(1000 + attempt)
    samples = [delay(p, attempt, rng.random()) for _ in range(SAMPLES)]
    assert all(0 <= x <= p.cap * (1 + p.jitter) for x in samples)
    within_sampling_error(samples, mean_delay(p, attempt))


def decorrelated_runs(p: BackoffPolicy, attempts: int, runs: int, seed: int) -> list[list[float]]:
    """Delays of ``runs`` independent reconnect runs, each feeding back the previous delay."""
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        previous: float | None = None
        run = []
        for n in range(1, attempts + 1):
            previous = delay(p, n, rng.random(), previous)
            run.append(previous)
        out.append(run)
    return out


def test_decorrelated_mean_delay_matches_monte_carlo() -> None:
    p = policy(Kind.DECORRELATED)
    runs = decorrelated_runs(p, 12, 8_000, seed=7)
    for attempt in (1, 2, 3, 5, 8, 12):
        samples = [run[attempt - 1] for run in runs]
        assert all(p.base <= x <= p.cap for x in samples)
        expected = mean_delay(p, attempt)
        within_sampling_error(samples, expected, slack=1e-3 * expected)  # grid error < 0.1 %
    assert mean_delay(p, 1) == pytest.approx(2.0, rel=1e-5)  # uniform on [1, 3], on a grid


@pytest.mark.parametrize("kind", [Kind.FULL, Kind.EQUAL, Kind.GRPC, Kind.DECORRELATED])
def test_jittered_total_wait_matches_monte_carlo(kind: Kind) -> None:
    p = policy(kind)
    attempts = 20
    if kind is Kind.DECORRELATED:
        totals = [math.fsum(run) for run in decorrelated_runs(p, attempts, 4_000, seed=11)]
    else:
        rng = random.Random(13)
        totals = [math.fsum(delay(p, n, rng.random()) for n in range(1, attempts + 1))
                  for _ in range(4_000)]
    expected = total_wait(p, attempts)
    within_sampling_error(totals, expected, slack=1e-3 * expected)


def test_jitter_bounds_are_the_documented_ones() -> None:
    t = ceiling(SEED_POLICY, 4)
    assert delay(policy(Kind.FULL), 4, 0.0) == 0.0
    assert delay(policy(Kind.EQUAL), 4, 0.0) == t / 2
    assert delay(GRPC_POLICY, 1, 0.0) == pytest.approx(0.8)
    assert delay(GRPC_POLICY, 1, 0.5) == pytest.approx(1.0)
    assert delay(policy(Kind.NONE), 9, 0.7) == 0.0
    assert delay(policy(Kind.DECORRELATED), 5, 0.999, previous=100.0) == 30.0  # capped


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("u", [-0.1, 1.0, 1.5, math.nan])
def test_a_draw_outside_the_unit_interval_is_refused(u: float) -> None:
    with pytest.raises(ValueError, match=r"uniform draw must be in \[0, 1\)"):
        delay(SEED_POLICY, 1, u)


CHECKED_KINDS = [Kind.EXPONENTIAL, Kind.FULL, Kind.EQUAL, Kind.GRPC]
ALL_KINDS = [*CHECKED_KINDS, Kind.NONE, Kind.DECORRELATED]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_attempt_numbers_start_at_one_for_every_policy(kind: Kind) -> None:
    p = policy(kind)
    with pytest.raises(ValueError, match="attempt numbers start at 1"):
        delay(p, 0, 0.5)
    with pytest.raises(ValueError, match="attempt numbers start at 1"):
        delay(p, -3, 0.5)
    with pytest.raises(ValueError, match="attempt numbers start at 1"):
        mean_delay(p, 0)


@pytest.mark.parametrize("kwargs,message", [
    ({"base": -1.0}, "need 0 <= base <= cap"),
    ({"base": 40.0, "cap": 30.0}, "need 0 <= base <= cap"),
    ({"factor": 0.5}, "factor >= 1"),
    ({"jitter": 1.0}, r"need 0 <= jitter < 1"),
    ({"jitter": -0.1}, r"need 0 <= jitter < 1"),
])
def test_a_bad_policy_is_refused_with_the_rule_it_breaks(kwargs: dict[str, float],
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]


def test_total_wait_of_no_attempts_is_zero() -> None:
    assert total_wait(SEED_POLICY, 0) == total_wait(SEED_POLICY, -5) == 0.0


@pytest.mark.parametrize("kind", list(Kind))
def test_parse_policy_accepts_every_kind_in_any_case(kind: Kind) -> None:
    assert parse_policy(kind.value).kind is kind
    assert parse_policy(f"  {kind.value.upper()} ").kind is kind


def test_parse_policy_overrides_and_defaults() -> None:
    assert parse_policy("exponential") == SEED_POLICY
    assert parse_policy("grpc") == GRPC_POLICY
    assert parse_policy("full", cap=60, base=0.5) == BackoffPolicy(kind=Kind.FULL, base=0.5, cap=60)


def test_parse_policy_error_names_the_accepted_values() -> None:
    with pytest.raises(ValueError) as info:
        parse_policy("fibonacci")
    message = str(info.value)
    assert "unknown backoff policy 'fibonacci'" in message
    assert message.endswith("accepted: " + ", ".join(k.value for k in Kind))


# ---------------------------------------------------------------- real clients and specs




def test_browsers_wait_a_fixed_time_forever() -> None:
    assert [delay(EVENTSOURCE_POLICY, n, 0.7) for n in (1, 2, 50, 10_000)] == [3.0] * 4
    assert total_wait(FETCH_EVENT_SOURCE_POLICY, 60) == 60.0
    assert EVENTSOURCE_POLICY.deterministic
    assert all(attempts == UNLIMITED_ATTEMPTS for _, attempts in CLIENT_POLICIES.values())


def test_a_jittered_server_retry_is_drawn_once_then_repeated() -> None:
    p = parse_spec("retry(base=3,jitter=0.5)").policy
    first = delay(p, 1, 0.9)
    assert first == pytest.approx(4.2)
    assert delay(p, 2, 0.1, previous=first) == first  # the browser keeps the retry: it was sent
    assert delay(p, 1, 0.0) == pytest.approx(1.5)
    assert mean_delay(p, 7) == 3.0 and not p.deterministic


def test_socketio_follows_backo2_sign_and_cap() -> None:
    p = SOCKETIO_POLICY
    assert delay(p, 1, 0.05) == pytest.approx(1 - 0.05 * 0.5)  # first decimal 0: minus
    assert delay(p, 1, 0.15) == pytest.approx(1 + 0.15 * 0.5)  # first decimal 1: plus
    assert delay(p, 3, 0.95) == 5.0  # 4 x 1.475 is capped at 5 s
    assert delay(p, 10**6, 0.0) == 5.0  # no overflow


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8])
def test_socketio_mean_matches_monte_carlo(attempt: int) -> None:
    rng = random.Random(attempt)
    samples = [delay(SOCKETIO_POLICY, attempt, rng.random()) for _ in range(SAMPLES)]
    within_sampling_error(samples, mean_delay(SOCKETIO_POLICY, attempt))


def test_grpc_client_goes_at_once_then_counts_from_the_attempts_start() -> None:
    p = GRPC_CLIENT_POLICY
    assert delay(p, 1, 0.3) == 0.0
    assert [delay(p, n, 0.5) for n in (2, 3, 4)] == pytest.approx([1.0, 1.6, 2.56])
    assert total_wait(p, 4) == pytest.approx(1 + 1.6 + 2.56)
    assert mean_delay(p, 1) == 0.0 and mean_delay(p, 3) == pytest.approx(1.6)
    # an attempt that hung 20 s is followed at once; a quick refusal waits out the rest
    assert next_attempt_at(p, started=0.0, failed=20.0, wait=1.6) == 20.0
    assert next_attempt_at(p, started=0.0, failed=0.1, wait=1.6) == 1.6
    assert next_attempt_at(SEED_POLICY, started=0.0, failed=0.1, wait=1.6) == pytest.approx(1.7)


@pytest.mark.parametrize("text", [
    "exponential(base=0.5,factor=1.5,cap=60,jitter=full)",
    "retry(base=3,jitter=0.5)", "socketio", "decorrelated(cap=10, max_attempts=20)",
    "grpc(immediate_first=true,from_start=true,connect_timeout=20,max_attempts=inf)",
    "exponential(jitter=0.3)", "none",
])
def test_a_spec_prints_back_as_itself(text: str) -> None:
    parsed = parse_spec(text)
    assert parse_spec(spec(*parsed)) == parsed


def test_spec_reads_the_issue_example() -> None:
    parsed = parse_spec("exponential(base=0.5,factor=1.5,cap=60,jitter=full)")
    assert parsed == PolicySpec(BackoffPolicy(kind=Kind.FULL, base=0.5, factor=1.5, cap=60))
    assert parse_spec("full(max_attempts=20)").max_attempts == 20
    assert parse_policy("exponential(base=0.5,factor=1.5,cap=60,jitter=full)").kind is Kind.FULL


@pytest.mark.parametrize("text,why", [
    ("fibonacci(base=1)", "unknown policy 'fibonacci'"),
    ("exponential(base=2,cap=1)", "need 0 <= base <= cap"),
    ("exponential(jitter=weird)", "jitter must be a number"),
    ("grpc(jitter=full)", "needs exponential"),
    ("exponential(colour=1)", "unknown key 'colour'"),
    ("full(max_attempts=0)", "max_attempts is a whole number"),
    ("full(cap=1,cap=2)", "cap given twice"),
    ("full(base)", "is not key=value"),
])
def test_a_bad_spec_says_why_and_what_is_accepted(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_spec(text)
    assert why in str(info.value)
    assert "accepted: NAME or NAME(key=value,...)" in str(info.value)


def test_a_custom_delay_function_decides_and_has_no_closed_form() -> None:
    p = BackoffPolicy(custom=lambda n, u, prev: 0.25 * n, name="mine:linear")
    assert delay(p, 4, 0.5) == 1.0 and str(p) == "mine:linear" and not p.deterministic
    with pytest.raises(ValueError, match="no closed-form"):
        mean_delay(p, 1)
    with pytest.raises(ValueError, match="no closed-form"):
        total_wait(p, 3)


@pytest.mark.parametrize("immediate", [False, True])
@pytest.mark.parametrize("kind", list(Kind))
def test_reads_previous_says_exactly_when_the_previous_delay_matters(kind: Kind, immediate: bool) -> None:
    # The checker forgets a client's previous delay when its policy does not read it
    # (sims.check.canon): this is the rule it relies on, held against delay() itself.
    p = dataclasses.replace(policy(kind), immediate_first=immediate)
    previous = (None, 0.5, 1.0, 2.0, 3.0, 7.5, 30.0)
    differs = any(len({delay(p, attempt, u, prev) for prev in previous}) > 1
                  for attempt in range(1, 9) for u in (0.0, 0.25, 0.5, 0.75, 0.999))
    assert differs == p.reads_previous


def test_a_custom_delay_function_may_read_the_previous_delay() -> None:
    p = BackoffPolicy(custom=lambda attempt, u, previous: 1.0, name="mine:constant")
    assert p.reads_previous
