"""``sselab report --quick``: every notebook renders to HTML and CSV, and checks itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sims.reports.catalog import names

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run ``sselab report --quick --out <tmp>`` once for every test here."""
    out = tmp_path_factory.mktemp("reports")
    proc = subprocess.run([sys.executable, "-m", "sims.cli", "report", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    return out, proc


def test_every_report_renders(rendered: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Exit 0, and every report has its HTML (PNG figures embedded), CSV and finding."""
    out, proc = rendered
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in names():
        page = (out / f"{name}.html").read_text(encoding="utf-8")
        assert "data:image/png;base64," in page, f"{name}: no embedded figure"
        assert len(page) < 2_000_000, f"{name}: {len(page):,} characters"
        assert len(pd.read_csv(out / f"{name}.csv")), f"{name}: empty CSV"
        finding = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert finding["quick"] is True and finding["finding"].strip()
        assert finding["mode"] == "quick" and finding["code_hash"] and finding["commit"]
        assert len(finding["headline"]) >= 3, f"{name}: the banner needs its key numbers"
        assert 'class="sselab-banner"' in page and "<dl>" in page
        assert name in proc.stdout
        # the finding comes first, the code is folded away, parameters are not shown twice
        assert page.index('class="sselab-banner"') < page.index("<main>")
        assert "jp-InputArea-editor\"" not in page and "injected-parameters" not in page
        assert 'href="index.html"' in page


def test_index_links_every_report_with_its_finding(
        rendered: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """index.html links each report and its CSV and shows the finding the notebook computed."""
    out, _ = rendered
    index = (out / "index.html").read_text(encoding="utf-8")
    for name in names():
        finding = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))["finding"]
        assert f'href="{name}.html"' in index and f'href="{name}.csv"' in index
        assert finding.replace("'", "&#x27;").replace('"', "&quot;") in index


def test_aws_jitter_csv_has_the_issue_columns_and_policies(
        rendered: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """reports/aws-jitter.csv: exactly clients,policy,write_calls,completion_ms; five policies."""
    out, _ = rendered
    frame = pd.read_csv(out / "aws-jitter.csv")
    assert list(frame.columns) == ["clients", "policy", "write_calls", "completion_ms"]
    assert set(frame["policy"]) == {"none", "exponential", "full", "equal", "decorrelated"}
    assert sorted(frame["clients"].unique()) == list(range(10, 101, 10))  # through 100
    assert len(frame) == 10 * 5  # every policy at every client count
    assert (frame["write_calls"] >= frame["clients"]).all()  # everyone writes at least once


def test_backoff_timing_closed_form_check_passed(
        rendered: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Every sampled mean agrees with model.backoff; the seed's 50 attempts wait 1381 s."""
    out, _ = rendered
    frame = pd.read_csv(out / "backoff-timing.csv")
    assert frame["agrees"].all(), frame[~frame["agrees"]]
    seed = frame[(frame["settings"] == "seed") & (frame["policy"] == "exponential")
                 & (frame["attempt"] == 50)].iloc[0]
    assert seed["wait_mean_closed"] == 1381 and seed["wait_mean_sim"] == 1381
    numbers = json.loads((out / "backoff-timing.json").read_text(encoding="utf-8"))["numbers"]
    assert numbers["closed_form_agrees"] is True


def test_pages_carry_no_paths_of_this_machine(
        rendered: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """No absolute path of the checkout, the output directory or the environment in a page."""
    out, _ = rendered
    forbidden = {str(ROOT), str(out), str(out.resolve()), sys.prefix, str(Path.home())}
    for name in names():
        page = (out / f"{name}.html").read_text(encoding="utf-8")
        text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+", "", page)
        for path in forbidden:
            assert path not in text, f"{name}.html contains {path}"


def test_a_failing_notebook_keeps_its_page_and_names_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell that raises: the page is still written, the result says which cell and why."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from sims.reports import render
    from sims.reports.catalog import REPORTS

    nb = new_notebook(cells=[new_code_cell("quick = True\nseed = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("raise RuntimeError('the sentinel never came back')")])
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(nb, str(src / "detection.ipynb"))
    monkeypatch.setattr(render, "notebooks_dir", lambda: src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "detection.json").write_text('{"finding": "stale"}', encoding="utf-8")
    info = next(r for r in REPORTS if r.name == "detection")
    result = render.render(info, out, quick=True)
    assert not result.ok
    assert "RuntimeError: the sentinel never came back" in result.error
    assert result.error.startswith("In [3]")  # after the parameters and the injected cell
    assert (out / "detection.html").exists()
    assert not (out / "detection.json").exists()  # last run's finding is not reported as this one's
