"""The checks bite: every semantic mutant of ``model/`` is killed at default bounds.

The whole catalogue runs once per module (two worker processes, each mutant in
its own spawned child), then each mutant is judged on its own: killed, unless it
is listed in ``sims.mutate.EXPECTED_SURVIVORS``, in which case it must really
survive, so the list cannot go stale. Every mutant's probe must show it changes
behaviour (no no-op mutants) and that undoing the swaps restores the machine.
"""

from __future__ import annotations

import json

import pytest

from model import client as cl
from model import session as se
from model import subscriber as sb
from sims.cli import main
from sims.mutate import CATALOGUE, EXPECTED_SURVIVORS, Outcome, run

NAMES = [m.name for m in CATALOGUE]


def _originals() -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {}
    for mutant in CATALOGUE:
        for swap in mutant.swaps:
            out[(swap.module.__name__, swap.name)] = getattr(swap.module, swap.name)
    for module in (cl, se, sb):
        for key, handler in module.TRANSITIONS.items():  # type: ignore[attr-defined]
            out[(module.__name__, repr(key))] = handler
    return out


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    before = _originals()
    found = {o.mutant: o for o in run(workers=2)}
    assert _originals() == before, "a mutant leaked into the parent process"
    return found


@pytest.mark.parametrize("name", [n for n in NAMES if n not in EXPECTED_SURVIVORS])
def test_mutant_is_killed_by_an_invariant(outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.verdict == "killed", f"{name} {o.verdict}: {o.error or 'no invariant broke'}"
    assert o.invariant and o.steps


def test_expected_survivors_really_survive(outcomes: dict[str, Outcome]) -> None:
    """Each listed survivor survives (none are listed today: every mutant must be killed)."""
    for name in sorted(EXPECTED_SURVIVORS):
        o = outcomes[name]
        assert o.verdict == "survived", (
            f"{name} is now {o.verdict} by {o.invariant} in {o.steps} steps: "
            "remove it from EXPECTED_SURVIVORS")
    assert not EXPECTED_SURVIVORS, "issue 12 landed: every mutant must be killed"


@pytest.mark.parametrize("name", NAMES)
def test_mutant_changes_behaviour_and_is_undone(outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.differs, f"{name}'s probe is the same mutated and not: a no-op mutant"
    assert o.restored, f"{name}: undoing its swaps did not restore the machine"


def test_expected_survivors_are_in_the_catalogue_with_a_reason() -> None:
    assert set(EXPECTED_SURVIVORS) <= set(NAMES)
    assert all(reason for reason in EXPECTED_SURVIVORS.values())


def test_cli_only_json_is_one_object_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["mutate", "--only", "counter-reset-on-open", "--only", "stream-never-closed",
                   "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["ok"] and out["killed"] == 2
    assert [(m["mutant"], m["invariant"]) for m in out["mutants"]] == [
        ("counter-reset-on-open", "bounded-counter"), ("stream-never-closed", "single-stream")]


def test_cli_table_names_each_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutate", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMES)


def test_cli_unknown_mutant_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["mutate", "--only", "no-such-mutant"])
    assert exc.value.code == 2
    assert "--only" in capsys.readouterr().err
