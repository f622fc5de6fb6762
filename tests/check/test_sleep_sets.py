"""Sleep sets (``check(sleep_sets=True)``): every state, verdict and shortest counterexample kept.

Sleep sets leave out moves, never states: the reduced search must store exactly the
states of the plain one, at the same depths, and the moves it took plus those it left
out must be every transition of the graph. Three wrong independence relations (mutants
of :func:`sims.check.partition._sleep_sets`) must each lose states, which shows the
comparison can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sims.check.partition as partition
from model.fixes import Fixes
from model.world import Transition, WorldConfig
from sims.check import CheckResult, check

SleepSets = Callable[[list[Transition], list[tuple[int, int, int]], int], "list[int] | None"]
_REAL: SleepSets = partition._sleep_sets

#: small worlds with more than one actor of their own moves (a second replica or client)
WORLDS = {
    "two-replicas": WorldConfig(replicas=2, events=0, faults=1),
    "two-clients": WorldConfig(clients=2, events=1, faults=0),
}


def _summary(r: CheckResult) -> tuple[Any, ...]:
    return (r.states, r.transitions, r.depth, r.complete, r.invariants,
            [(v.invariant, v.kind, len(v.trace), len(v.cycle)) for v in r.violations])


@pytest.fixture(scope="module")
def plain() -> dict[str, CheckResult]:
    """Each world searched without sleep sets (every other reduction on)."""
    return {name: check(cfg) for name, cfg in WORLDS.items()}


@pytest.mark.parametrize("name", list(WORLDS))
def test_sleep_sets_keep_every_state_and_spare_moves(name: str,
                                                     plain: dict[str, CheckResult]) -> None:
    """The same states, depth and verdicts; moves taken plus moves slept = every transition."""
    reduced = check(WORLDS[name], sleep_sets=True)
    assert _summary(reduced) == _summary(plain[name])
    taken, slept = reduced.stats["transitions_taken"], reduced.stats["transitions_slept"]
    assert slept > 0 and taken + slept == plain[name].transitions
    assert reduced.stats["reductions"]["sleep_sets"]
    assert plain[name].stats["transitions_slept"] == 0


@pytest.mark.parametrize(("fix", "config", "options"), [
    ("F3", WorldConfig(clients=2, events=1, fixes=Fixes.all().without("F3")),
     {"stop_at_first": True, "liveness": False}),
    ("F4", WorldConfig(replicas=2, events=0, fixes=Fixes.all().without("F4")),
     {"only": ["bounded-counter"]}),
])
def test_a_seed_bug_has_the_same_shortest_counterexample(fix: str, config: WorldConfig,
                                                         options: dict[str, Any]) -> None:
    """With a seed fix off, sleep sets find the bug with a trace (or lasso) as short."""
    base = check(config, **options)
    reduced = check(config, sleep_sets=True, **options)
    assert base.violations, fix
    assert _summary(reduced) == _summary(base)


def test_no_reduction_turns_sleep_sets_off() -> None:
    """``reduction=False`` wins over ``sleep_sets=True``."""
    r = check(WorldConfig(events=0, faults=0), sleep_sets=True, reduction=False)
    assert not r.stats["reductions"]["sleep_sets"] and r.stats["transitions_slept"] == 0


def _world_wide_pass_on(succ: list[Transition], spans: list[tuple[int, int, int]],
                        asleep: int) -> list[int] | None:
    """Mutant: a world-wide move (a tick, a delivery) is taken as independent of every actor."""
    out = _REAL(succ, spans, asleep)
    if out is None:
        return None
    own = {j for _, start, end in spans for j in range(start, end)}
    every = sum(1 << bit for bit, _, _ in spans)
    return [every if j not in own else z for j, z in enumerate(out)]


def _itself_too(succ: list[Transition], spans: list[tuple[int, int, int]],
                asleep: int) -> list[int] | None:
    """Mutant: an actor's move puts the actor itself to sleep (its own moves do not commute)."""
    out = _REAL(succ, spans, asleep)
    if out is None:
        return None
    for bit, start, end in spans:
        for j in range(start, end):
            out[j] |= 1 << bit
    return out


def _both_ways(succ: list[Transition], spans: list[tuple[int, int, int]],
               asleep: int) -> list[int] | None:
    """Mutant: actors listed after a move sleep too, so neither side of a diamond is taken."""
    if len(spans) < 2:
        return None
    out = [0] * len(succ)
    every = sum(1 << bit for bit, _, _ in spans)
    for bit, start, end in spans:
        for j in range(start, end):
            out[j] = every & ~(1 << bit)
    return out


@pytest.fixture
def mutant(request: pytest.FixtureRequest) -> Iterator[None]:
    """Swap ``partition._sleep_sets`` for the mutant named by the test's parameter."""
    partition._sleep_sets = request.param
    try:
        yield
    finally:
        partition._sleep_sets = _REAL


@pytest.mark.parametrize(("mutant", "world"), [
    (_world_wide_pass_on, "two-clients"),
    (_itself_too, "two-clients"),
    (_both_ways, "two-replicas"),
], indirect=["mutant"], ids=["world-wide-independent", "itself", "both-ways"])
def test_a_wrong_independence_loses_states(mutant: None, world: str,
                                           plain: dict[str, CheckResult]) -> None:
    """Each mutant stores fewer states than the plain search: the comparison has teeth."""
    reduced = check(WORLDS[world], sleep_sets=True)
    assert reduced.states < plain[world].states
