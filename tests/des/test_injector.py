"""The fault table: one handler per kind of the shared vocabulary, and loud for any other."""

from __future__ import annotations

import pytest

from model.faults import FAULTS, Fault
from sims.des.fleet import Fleet
from sims.des.scenarios import load_scenario


def _fleet() -> Fleet:
    return Fleet(load_scenario("steady", {"clients": 4, "duration": 120.0, "seed": 1}, []))


def test_every_fault_kind_of_the_vocabulary_has_exactly_one_handler() -> None:
    """The {kind: handler} table is keyed by the vocabulary's names, all of them."""
    assert set(_fleet().faults.handlers) == set(FAULTS)


def test_a_kind_without_a_handler_is_an_error_not_a_no_op() -> None:
    """A fault the vocabulary gained and the DES has not raises, naming the table."""
    fleet = _fleet()
    fault = Fault("network.drop", at=0.0, args=(("fraction", 1.0),))
    del fleet.faults.handlers["network.drop"]
    with pytest.raises(NotImplementedError, match=r"Injector\.handlers"):
        fleet.faults.apply(0, fault)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_fault_kind_runs_in_a_small_fleet(kind: str) -> None:
    """Each kind of the vocabulary, scheduled mid-run, is carried out without error."""
    args = tuple((p.name, 10.0) for p in FAULTS[kind].params if p.name != "at" and p.default is None)
    fault = Fault(kind, at=60.0, args=args)
    scenario = load_scenario("steady", {"clients": 8, "duration": 300.0, "seed": 1}, [fault])
    fleet = Fleet(scenario)
    assert fleet.run() > 0
