"""``sselab seed`` from the command line: logs, verdicts, JSON and exit statuses."""

from __future__ import annotations

import dataclasses
import json

import pytest

import sims.seed
from model.fixes import Fixes
from sims.cli import main
from sims.seed import SCENARIOS, Outcome, Scenario


def test_no_arguments_runs_all_five_fix_on_and_off_side_by_side(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed"]) == 0
    out = capsys.readouterr().out
    for name, sc in SCENARIOS.items():
        assert f"== {name}: seed item {sc.item}, fix {sc.fix} (F{sc.item})" in out
        assert f"-- fix off (fixes: all,-{sc.fix})" in out
    assert out.count("-- fix on (fixes: all)") == 5
    assert out.count("=> fix on: ok — ") == 5
    assert out.count("=> fix off: BUG shown — ") == 5
    assert "fix on: ok — counter stayed 1 for 1 real attempt" in out
    assert "fix off: BUG shown — counter 6 after 1 real attempt" in out
    assert out.rstrip().endswith("10/10 outcomes as the fixes predict")


def test_named_scenarios_with_without_run_once_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "heartbeat-race", "replay-limit", "--without", "F3"]) == 0
    out = capsys.readouterr().out
    assert out.index("== heartbeat-race") < out.index("== replay-limit")
    assert out.count("-- fix ") == 2
    assert "fix off: BUG shown — counter 6" in out  # F3 is off
    assert "=> fix on: ok — replay-truncated" in out  # F1 stays on
    assert "2/2 outcomes" in out


def test_json_is_one_object_with_every_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--json", "max-reconnect", "--without", "max-reconnect"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    data = json.loads(out)
    assert data["ok"] is True and data["errors"] == []
    [outcome] = data["outcomes"]
    assert (outcome["scenario"], outcome["fix_on"], outcome["bug_shown"]) == (
        "max-reconnect", False, True)
    assert outcome["facts"]["attempts_made"] == 13


@pytest.mark.parametrize("argv,message", [
    (["seed", "replay"], "unknown scenario 'replay'; accepted: replay-limit, replay-failure"),
    (["seed", "--without", "F6"], "unknown fix 'F6'; accepted: bounded-replay (F1)"),
])
def test_bad_arguments_exit_2_naming_what_is_accepted(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_outcome_against_the_prediction_exits_1(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    real = SCENARIOS["redis-health"]

    def broken(fixes: Fixes) -> Outcome:
        return dataclasses.replace(real.run(fixes), fixed=False, summary="never detected")
    monkeypatch.setitem(sims.seed.SCENARIOS, "redis-health", Scenario(*real[:-1], broken))
    assert main(["seed", "redis-health"]) == 1
    out = capsys.readouterr().out
    assert "fix on: FAILED (fixed behaviour not seen) — never detected" in out
    assert "1/2 outcomes as the fixes predict" in out
