"""Random long runs of the composed world, every fix on, judged by the shared invariants.

This is the stateful test to copy (README, "Writing your own stateful test"): the
machine is :class:`~stateful.world_machine.WorldMachine`, its settings sit on
``TestWorld`` and come from the ``HYPOTHESIS_PROFILE`` profile (``tests/conftest.py``).

Every fix is on, except that each run draws ``gap-from-head``, ``event-epoch`` and
``reauthorize`` on or off: those three have no bug this world can show (the first
saves rows, the second needs a reset database, the third is about tokens, which the
world does not model), so nothing may break either way.
"""

from __future__ import annotations

import inspect

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine

from model.faults import FAULTS
from model.invariants import SAFETY
from model.world import PROGRESS_KINDS
from stateful.world_machine import RULED_KINDS, WORLD_FAULT_KINDS, WorldMachine

TestWorld = WorldMachine.TestCase
TestWorld.settings = settings(suppress_health_check=[HealthCheck.too_slow])


def _rule_names(machine: type[RuleBasedStateMachine]) -> set[str]:
    return {name for name, value in inspect.getmembers(machine)
            if hasattr(value, "hypothesis_stateful_rule")}


def _invariant_names(machine: type[RuleBasedStateMachine]) -> set[str]:
    return {name for name, value in inspect.getmembers(machine)
            if hasattr(value, "hypothesis_stateful_invariant")}


def test_one_rule_per_kind_of_transition() -> None:
    """Every progress kind and every world fault has its own rule, named after it."""
    assert set(WORLD_FAULT_KINDS) <= set(FAULTS)
    assert set(RULED_KINDS) == {k.value for k in PROGRESS_KINDS} | set(WORLD_FAULT_KINDS)
    expected = {k.replace(".", "_").replace("-", "_") for k in RULED_KINDS} | {"quiescent"}
    assert _rule_names(WorldMachine) == expected


def test_one_invariant_per_shared_safety_invariant() -> None:
    """Each safety invariant of model.invariants is an @invariant, and nothing else is."""
    assert _invariant_names(WorldMachine) == {"holds_" + n.replace("-", "_") for n in SAFETY}
