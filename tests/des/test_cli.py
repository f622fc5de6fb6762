"""``sselab simulate`` and ``sselab sweep`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sims.cli import main
from sims.des.metrics import FRAMES, METRICS

TOP_KEYS = ["scenario", "clients", "replicas", "duration_s", "seed", "fixes", "wall_seconds",
            "sim_events", "metrics"]


def simulate_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["simulate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object, one line
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def test_json_has_exactly_the_issue_keys(capsys: pytest.CaptureFixture[str]) -> None:
    data = simulate_json(capsys, "redis-outage", "--clients", "50", "--duration", "600",
                         "--seed", "1")
    assert list(data) == TOP_KEYS
    assert list(data["metrics"]) == list(METRICS)  # type: ignore[arg-type]
    assert (data["scenario"], data["clients"], data["replicas"]) == ("redis-outage", 50, 4)
    assert (data["duration_s"], data["seed"], data["fixes"]) == (600.0, 1, "all")
    assert isinstance(data["sim_events"], int) and data["sim_events"] > 0
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["silent_stale_seconds_total"] == 0.0
    assert metrics["failed_clients"] == 0


def test_json_twice_gives_identical_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("redis-outage", "--clients", "60", "--duration", "900", "--seed", "1")
    first, second = simulate_json(capsys, *argv), simulate_json(capsys, *argv)
    assert first["metrics"] == second["metrics"]
    assert first["sim_events"] == second["sim_events"]


def test_metrics_that_do_not_apply_are_null(capsys: pytest.CaptureFixture[str]) -> None:
    data = simulate_json(capsys, "steady", "--clients", "20", "--duration", "300",
                         "--without", "F5")
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    assert data["fixes"] == "all,-max-reconnect"
    assert metrics["failed_clients"] is None  # nobody can fail with max-reconnect off
    assert metrics["replay_rows_max"] is None  # no replay ran
    assert metrics["detection_latency_s_max"] is None  # no fault to detect
    assert metrics["resync_s_p50"] is None and metrics["resync_s_p99"] is None


def test_flags_and_fixes_reach_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    data = simulate_json(capsys, "subscriber-silent-death", "--clients", "30", "--replicas", "2",
                         "--duration", "900", "--without", "subscriber-health",
                         "--without", "head-probe",  # the probe would mask the dead subscriber
                         "--policy", "full", "--fault", "network.drop(at=100, fraction=0.5)",
                         "--set", "publish_rate=0.1")
    assert data["replicas"] == 2
    assert data["fixes"] == "all,-subscriber-health,-head-probe"
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["silent_stale_seconds_total"] > 0


def test_table_and_parquet_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["simulate", "deploy-restart", "--clients", "30", "--duration", "600",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "invariants  all hold" in text
    assert "replay_rows_max" in text
    for name in FRAMES:
        frame = pd.read_parquet(out / f"{name}.parquet")
        assert isinstance(frame, pd.DataFrame)
    queries = pd.read_parquet(out / "queries.parquet")
    assert {"rows", "duration_s", "queue_wait_s"} <= set(queries.columns)


def test_check_exits_1_when_an_invariant_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "subscriber-silent-death", "--clients", "30", "--duration", "900"]
    assert main([*argv, "--check"]) == 0
    assert main([*argv, "--check", "--without", "F4", "--without", "head-probe"]) == 1
    assert "no-silent-stale" in capsys.readouterr().out
    # with the head probe on, data still arrives, but the death is never detected
    assert main([*argv, "--check", "--without", "F4"]) == 1
    assert "detection-bound" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["simulate", "steady", "--clients", "0"],
    ["simulate", "steady", "--duration", "soon"],
    ["simulate", "steady", "--without", "F9"],
    ["simulate", "steady", "--policy", "bouncy"],
    ["simulate", "steady", "--fault", "redis.outage(at=5)"],
    ["simulate", "steady", "--bogus"],
    ["sweep", "steady", "--cap", "x"],
    ["sweep", "steady", "--policy", "bouncy"],
])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_bad_scenarios_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "nowhere", "--json"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[faults]]\nfault = "redis.outage"\nat = 1\n', encoding="utf-8")
    assert main(["simulate", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "redis.outage needs duration" in captured.err
    assert main(["simulate", "steady", "--set", "clientz=3"]) == 2
    assert "unknown setting 'clientz'" in capsys.readouterr().err


def test_a_small_sweep_runs_locally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid.parquet"
    status = main(["sweep", "redis-outage", "--policy", "exponential,full", "--cap", "10,30",
                   "--clients", "20", "--seeds", "2", "--duration", "400", "--in-process",
                   "--workers", "2", "--no-progress", "--out", str(out)])
    assert status == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 2 * 2 * 1 * 2
    assert {"policy", "backoff_cap", "clients", "seed", *METRICS} <= set(frame.columns)
    assert set(frame["seed"]) == {1, 2}
    assert (frame["violations"] == "").all()
    assert "runs saved to" in capsys.readouterr().out


def test_the_progress_bar_goes_to_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "steady", "--clients", "20", "--duration", "300", "--progress",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)) == TOP_KEYS
    assert "sim s" in captured.err


def test_a_sweep_uses_an_existing_scheduler(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from dask.distributed import LocalCluster

    out = tmp_path / "grid.parquet"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        status = main(["sweep", "steady", "--replay-limit", "5,50", "--clients", "10",
                       "--seed", "4", "--duration", "300", "--scheduler",
                       str(cluster.scheduler_address), "--no-progress", "--out", str(out)])
    assert status == 0
    frame = pd.read_parquet(out)
    assert list(frame["replay_limit"]) == [5, 50]
    assert list(frame["seed"]) == [4, 4]
