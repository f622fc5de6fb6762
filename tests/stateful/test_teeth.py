"""Teeth: with one fix off, Hypothesis finds the bug it prevents and names the right invariant.

Each case runs :class:`~stateful.world_machine.WorldMachine` under fixed settings
(:data:`TEETH_SETTINGS`, derandomized so a search is the same search everywhere, and
the same under every profile but for shrinking) on configs drawn with that fix off and sizes pinned to a world
that can show the bug (:data:`SMALL` plus the case's own). The shrunk counterexample
is printed (``pytest -s`` or ``-rP`` shows it) and its invariant must be one the
fix protects (``model.fixes.FIXES``). The same settings with every fix on find
nothing.

Under the ``dev`` profile the searches skip shrinking and the all-fixes-on runs are
skipped (quick feedback); ``ci`` (what CI runs) and ``deep`` run all of it.

The safety cases run without the heal phase, so a liveness symptom of the same
bug cannot stand in for the safety invariant the fix protects; the heal phase has
teeth of its own below (its ``convergence`` with only liveness judged).

Not here, because this world cannot show their bug: ``gap-from-head`` (it saves
rows: a stale client costs O(1) rows instead of ``limit + 1``, both within
``bounded-replay``), ``event-epoch`` (the world never resets its database) and
``reauthorize`` (the world models no tokens or users). The drawn configs switch
them on and off in every run (``test_world.py``), and nothing breaks either way.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from model.fixes import FIXES, Fixes, resolve_fix_name, teeth
from model.invariants import CONVERGENCE
from stateful.world_machine import Found, find_violation, machine_for

#: Under the ``dev`` profile the teeth only search (no shrinking) and the all-fixes-on runs
#: are skipped, for quick feedback; ``ci`` and ``deep`` run everything below.
QUICK = os.environ.get("HYPOTHESIS_PROFILE", "dev") == "dev"

#: Fixed search settings: derandomized, enough examples for every seed bug (the slowest,
#: head-before-snapshot and replay-failed-signal, need a few hundred runs; 2000 examples
#: leave a margin of three or more), no explain phase (it re-runs the failure many times
#: only to annotate it).
TEETH_SETTINGS = settings(
    derandomize=True, database=None, max_examples=2000, stateful_step_count=25, deadline=None,
    report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate) + (() if QUICK else (Phase.shrink,)),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

full_only = pytest.mark.skipif(QUICK, reason="an all-fixes-on run at the teeth settings: "
                                             "HYPOTHESIS_PROFILE=ci")

#: One client, one replica, a fault or two, up to three events, one or two attempts before
#: failing: enough for every seed bug, and small enough that a search finds each in seconds.
SMALL: dict[str, int | tuple[int, int]] = {"clients": 1, "replicas": 1, "faults": (1, 2),
                                           "events": (1, 3), "max_attempts": (1, 2)}

#: (fix off, sizes on top of SMALL, invariants it may break), from ``model.fixes.FIXES``.
TEETH: list[tuple[str, dict[str, int | tuple[int, int]], frozenset[str] | None]] = [
    (t.fix, dict(t.sizes), t.protects) for t in teeth()
]
#: The fixes that mask each fix's bug, switched off with it (``FixInfo.also_off``).
ALSO_OFF = {info.name: info.also_off for info in FIXES}

#: Fixes whose bug also stops the world from converging: the heal phase's own teeth. F1, F2,
#: topic-sequence, head-before-snapshot and resync-after-recovery stop it too; these two are
#: the seed's silent subscriber death, detected by nobody, and an event pruned before a
#: client caught up, which it then never gets.
HEAL_TEETH = ["F4", "retention-floor"]
#: Clients that resume from 0-0 reach a cursor below the floor in fewer steps than fresh ones.
HEAL_START = {"F4": None, "retention-floor": 0}

#: The heal cases' settings: every run also heals, so fewer runs; the bugs show sooner.
HEAL_SETTINGS = settings(TEETH_SETTINGS, max_examples=800)


def protected(fix: str) -> frozenset[str]:
    """The invariants ``model.fixes.FIXES`` says the fix protects."""
    name = resolve_fix_name(fix)
    return frozenset(next(info.protects for info in FIXES if info.name == name))


def _show(fix: str, found: Found) -> None:
    print(f"\n{fix} off -> {found.invariant} (found after {found.runs} runs, {found.steps} steps, "
          f"{found.first_seconds:.2f} s; {'not shrunk' if QUICK else 'shrunk'}: "
          f"{len(found.trace)} steps)")
    print(found.report)


def _case_id(case: tuple[str, dict[str, int | tuple[int, int]], frozenset[str] | None]) -> str:
    fix, sizes, _ = case
    return fix + "".join(f"-{k}={v}" for k, v in sizes.items())


@pytest.mark.parametrize("case", TEETH, ids=[_case_id(c) for c in TEETH])
def test_fix_off_breaks_what_it_protects(
        case: tuple[str, dict[str, int | tuple[int, int]], frozenset[str] | None]) -> None:
    """With the fix off, Hypothesis finds a violation of an invariant the fix protects."""
    fix, sizes, expected = case
    expected = expected or protected(fix)
    assert expected <= protected(fix)
    machine = machine_for(Fixes.all().without(fix, *ALSO_OFF[resolve_fix_name(fix)]),
                          healing=False, sizes=SMALL | sizes)
    found = find_violation(machine, TEETH_SETTINGS)
    assert found is not None, f"{fix} off: Hypothesis found nothing with {TEETH_SETTINGS}"
    _show(fix, found)
    assert found.invariant in expected, f"{fix} off broke {found.invariant}, not one of {expected}"


#: Every world the cases above draw from, in one: the all-fixes-on run covers them all.
EVERY_CASE: dict[str, int | tuple[int, int]] = SMALL | {
    "publishers": (1, 2), "faults": (0, 2), "events": (1, 3), "replay_limit": (1, 3)}


@full_only
def test_every_fix_on_finds_nothing() -> None:
    """The same settings on every world the cases draw from, every fix on: no violation."""
    for _, sizes, _ in TEETH:  # each case's world lies inside EVERY_CASE
        for name, value in (SMALL | sizes).items():
            if name == "without_faults":  # a world with fewer faults lies inside this one
                continue
            lo, hi = (value, value) if isinstance(value, int) else value
            pinned = EVERY_CASE.get(name)
            assert pinned is not None, name
            low, high = (pinned, pinned) if isinstance(pinned, int) else pinned
            assert low <= lo <= hi <= high, (name, value, pinned)
    found = find_violation(machine_for(Fixes.all(), healing=False, sizes=EVERY_CASE), TEETH_SETTINGS)
    assert found is None, found.report if found else ""


@pytest.mark.parametrize("fix", HEAL_TEETH)
def test_heal_phase_catches_a_world_that_never_converges(fix: str) -> None:
    """Only convergence judged: with the fix off, some run never heals."""
    # The head probe also brings what a dead subscriber lost (defence in depth): off here, so
    # the heal phase meets the bug itself rather than the probe's rescue.
    machine = machine_for(Fixes.all().without(fix, "head-probe"), judged=frozenset(), sizes=SMALL,
                          start_cursor=HEAL_START[fix])
    found = find_violation(machine, HEAL_SETTINGS)
    assert found is not None, f"{fix} off: the heal phase found nothing"
    _show(fix, found)
    assert found.invariant == CONVERGENCE


@full_only
def test_heal_phase_converges_with_every_fix_on() -> None:
    """Only convergence judged, every fix on, the same settings: every run heals."""
    found = find_violation(machine_for(Fixes.all(), judged=frozenset(), sizes=SMALL), HEAL_SETTINGS)
    assert found is None, found.report if found else ""
