"""Provenance, --check, the README block and the --param / --policy arguments: no rendering."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from model.backoff import Kind
from sims.cli import main
from sims.commands.report import parse_param
from sims.reports import provenance, readme
from sims.reports.catalog import names
from sims.reports.policies import load_policy


def _tree(root: Path) -> None:
    for rel, text in {"model/a.py": "A = 1\n", "sims/reports/b.py": "B = 2\n",
                      "sims/des/c.py": "C = 3\n", "notebooks/detection.ipynb": "{}\n",
                      "notebooks/staleness.ipynb": "{}\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def _render(root: Path, out: Path, name: str, *, quick: bool = False,
            params: dict[str, object] | None = None) -> None:
    data = {"name": name, "finding": "x", **provenance.stamp(name, quick=quick, params=params or {},
                                                              root=root)}
    (out / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")


def test_a_report_is_stale_once_a_file_it_depends_on_changes(tmp_path: Path) -> None:
    """Changing model/ names the file; a notebook change only stales its own report."""
    root, out = tmp_path / "repo", tmp_path / "out"
    _tree(root)
    out.mkdir()
    for name in ("detection", "staleness"):
        _render(root, out, name)
    assert provenance.code_files("detection", root) == [
        "model/a.py", "notebooks/detection.ipynb", "sims/des/c.py", "sims/reports/b.py"]
    assert provenance.stale_reports(["detection", "staleness"], out, root) == []
    (root / "notebooks/staleness.ipynb").write_text('{"cells": []}\n', encoding="utf-8")
    assert [s.name for s in provenance.stale_reports(["detection", "staleness"], out, root)] == [
        "staleness"]
    (root / "model/a.py").write_text("A = 2\n", encoding="utf-8")
    stale = provenance.stale_reports(["detection", "staleness"], out, root)
    assert [s.name for s in stale] == ["detection", "staleness"]
    assert "model/a.py" in stale[0].reason


def test_quick_custom_and_missing_reports_are_not_current(tmp_path: Path) -> None:
    root, out = tmp_path / "repo", tmp_path / "out"
    _tree(root)
    out.mkdir()
    _render(root, out, "detection", quick=True)
    _render(root, out, "staleness", params={"clients": 10})
    reasons = {s.name: s.reason for s in provenance.stale_reports(
        ["detection", "staleness", "replay-storm"], out, root)}
    assert "--quick" in reasons["detection"]
    assert "clients=10" in reasons["staleness"]
    assert "not rendered" in reasons["replay-storm"]


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    text = f"# Title\n\nintro\n{readme.BEGIN}\nold line\n{readme.END}\n\n## Next\nkept\n"
    new = readme.replace_block(text, "- new line")
    assert new == f"# Title\n\nintro\n{readme.BEGIN}\n- new line\n{readme.END}\n\n## Next\nkept\n"
    with pytest.raises(ValueError, match="no generated reports block"):
        readme.replace_block("# no markers\n", "x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "detection.json").write_text(json.dumps(
        {"finding": "detected in 18.9 s", "commit": "abc", "rendered": "2026-01-02 03:04 UTC",
         "mode": "full"}), encoding="utf-8")
    block = readme.readme_block(out, ["detection", "staleness"])
    assert "- [Sentinel detection](reports/detection.html) — detected in 18.9 s" in block
    assert "not rendered yet" in block and "`abc` on 2026-01-02 (full run)" in block


def test_check_exits_1_naming_each_stale_report(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--check", "--out", str(tmp_path), "--only", "detection"]) == 1
    assert "detection: not rendered" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--policy", "exponential(base=2,cap=1)"], "need 0 <= base <= cap"),
    (["--policy", "fibonacci"], "unknown policy 'fibonacci'; accepted: NAME or NAME(key=value,...)"),
    (["--policy", "no_such_module_here:f"], "cannot import 'no_such_module_here'"),
    (["--param", "colour=red"], "no selected report takes 'colour'"),
    (["--param", "max_attempts=many"], "expected a whole number"),
    (["--param", "max_attempts"], "--param takes NAME=VALUE"),
])
def test_bad_params_and_policies_exit_2_saying_what_is_accepted(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(["report", "--only", "backoff-timing", "--out", str(tmp_path), *argv])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing rendered


def test_parse_param_follows_the_default_type() -> None:
    assert parse_param("20", 50) == 20
    assert parse_param("2.5", 1.0) == 2.5 and parse_param("3", 1.0) == 3.0
    assert parse_param("true", False) is True
    assert parse_param("exponential(cap=60)", "") == "exponential(cap=60)"
    assert parse_param("1, 2", (5,)) == (1, 2)
    with pytest.raises(ValueError, match="whole number"):
        parse_param("2.5", 50)


def test_a_policy_is_a_spec_a_client_or_module_function(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    named = load_policy("exponential(base=0.5,factor=1.5,cap=60,jitter=full,max_attempts=20)")
    assert named.policy.kind is Kind.FULL and named.max_attempts == 20
    assert load_policy("socket.io").policy.kind is Kind.SOCKETIO
    (tmp_path / "my_policies.py").write_text(
        "def linear(attempt, u, previous):\n    return 0.5 * attempt\n"
        "def spec():\n    return 'equal(cap=10)'\n"
        "def broken(attempt, u, previous):\n    return -1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    custom = load_policy("my_policies:linear")
    assert custom.policy.custom is not None and str(custom.policy) == "my_policies:linear"
    assert load_policy("my_policies:spec").policy.kind is Kind.EQUAL
    with pytest.raises(ValueError, match="not a finite number of seconds"):
        load_policy("my_policies:broken")
    sys.modules.pop("my_policies", None)


def test_every_report_notebook_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    assert all((root / "notebooks" / f"{n}.ipynb").exists() for n in names())
