"""The computations behind the reports: quick checks of each module in ``sims/reports``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.backoff import SEED_POLICY, total_wait
from sims.cli import main
from sims.reports import aws_jitter as aj
from sims.reports import backoff_timing as bt
from sims.reports import fleet, herd
from sims.reports.catalog import names
from sims.reports.common import fmt_duration
from sims.reports.render import scrub_paths


def _simulator_expo(n: int) -> float:
    """The AWS simulator's ``Backoff.expo(n)``: min(cap, 2**n * base)."""
    return min(aj.CAP_MS, 2**n * aj.BASE_MS)


@pytest.mark.parametrize("u", [0.0, 0.3, 0.999])
def test_aws_delays_are_the_simulators(u: float) -> None:
    """model.backoff at attempt n + 1 gives the simulator's n-th backoff for every policy."""
    for n in range(1, 14):
        v = _simulator_expo(n)
        assert aj.delay(aj.policy("none"), n + 1, u) == 0
        assert aj.delay(aj.policy("exponential"), n + 1, u) == pytest.approx(v)
        assert aj.delay(aj.policy("full"), n + 1, u) == pytest.approx(u * v)
        assert aj.delay(aj.policy("equal"), n + 1, u) == pytest.approx(v / 2 + u * v / 2)
    sleep, previous = aj.BASE_MS, None
    for n in range(1, 14):  # ExpoBackoffDecorr: sleep = min(cap, uniform(base, sleep * 3))
        sleep = min(aj.CAP_MS, aj.BASE_MS + u * (sleep * 3 - aj.BASE_MS))
        previous = aj.delay(aj.policy("decorrelated"), n + 1, u, previous)
        assert previous == pytest.approx(sleep)


def test_aws_trial_counts_writes_and_is_seeded() -> None:
    """One client writes once; contention costs more writes; a seed replays exactly."""
    assert aj.run_trial(1, aj.policy("full"), 1).write_calls == 1
    trial = aj.run_trial(10, aj.policy("none"), 7)
    assert trial.write_calls > 10 and trial.completion_ms > 0
    assert aj.run_trial(10, aj.policy("none"), 7) == trial


def test_aws_means_have_the_issue_columns_and_claims_are_judged() -> None:
    """means() has exactly clients,policy,write_calls,completion_ms; every claim gets a verdict."""
    means = aj.means(aj.sweep((5, 10), trials=3))
    assert list(means.columns) == ["clients", "policy", "write_calls", "completion_ms"]
    assert list(means["policy"].unique()) == list(aj.POLICIES)
    claims = aj.judge_claims(means)
    assert len(claims) == len(aj.CLAIMS)
    assert set(claims["supported"]) <= {"yes", "partly", "no"}


def test_backoff_machine_reaches_failed_after_the_seeds_exact_wait() -> None:
    """The client machine waits 1381 s (23 min 1 s) before giving up with the seed's policy."""
    delays = bt.sample_delays(SEED_POLICY, runs=2)
    assert delays.shape == (2, 50)
    assert delays.sum(axis=1).tolist() == [1381.0, 1381.0] == [total_wait(SEED_POLICY, 50)] * 2
    assert fmt_duration(1381.0) == "23 min 1 s"


def test_backoff_table_agrees_with_closed_forms() -> None:
    """A small sampled table agrees with mean_delay / total_wait for jittered policies too."""
    chosen = [p for p in bt.policies() if p[0] == "seed" and p[1].kind.value in ("full", "grpc")]
    frame = bt.table(200, only=chosen, max_attempts=12)
    assert frame["agrees"].all()
    assert set(bt.verdicts(frame)["agrees"]) == {True}


def test_herd_exact_density_matches_the_machine() -> None:
    """The convolution's expected reconnects per second agree with the client machines."""
    cfg = herd.HerdConfig(clients=1500, outage=20.0, horizon=80.0)
    per_sec = herd.compare("full", cfg, seed=3)
    assert per_sec["reconnects_exact"].sum() == pytest.approx(1500, rel=1e-6)
    assert per_sec["reconnects_sim"].sum() == 1500
    assert herd.summarise(per_sec, cfg)["max_dev_sigma"] < 5
    expo = herd.arrival_density("exponential", cfg)
    assert expo["reconnects"].max() == pytest.approx(1500)  # all at one instant
    none = herd.arrival_density("none", cfg)
    assert none.attrs["failed"] == pytest.approx(1500)  # 50 instant retries, all before 20 s
    with pytest.raises(ValueError, match="no closed-form"):
        herd.arrival_density("decorrelated", cfg)


def test_fleet_counting_helpers() -> None:
    """active() counts covering intervals; in_status() follows status changes per client."""
    grid = np.array([0.0, 1.0, 2.5, 4.0])
    assert fleet.active([0.5, 2.0], [3.0, 5.0], grid).tolist() == [0, 1, 2, 1]
    status = pd.DataFrame({"client": [0, 0, 1], "t": [0.0, 2.0, 1.0],
                           "status": ["connected", "waiting", "connected"]})
    assert fleet.in_status(status, "connected", grid).tolist() == [1, 2, 1, 1]
    assert fleet.peak_rate(pd.Series([1.0, 1.01, 1.02, 5.0]), 0.1) == pytest.approx(30.0)


def test_scrub_paths_leaves_embedded_images_alone() -> None:
    """Paths are replaced in text, never inside base64 data that happens to contain them."""
    page = 'at /tmp/x <img src="data:image/png;base64,AA/tmp/rootBB=="> in /root/y'
    assert scrub_paths(page, [("/tmp", "<tmp>"), ("/root", "~")]) == (
        'at <tmp>/x <img src="data:image/png;base64,AA/tmp/rootBB=="> in ~/y')


def test_report_only_rejects_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --only exits 2 and lists the accepted report names."""
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--only", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    assert all(name in err for name in names())


def test_death_times_are_spaced_and_seeded() -> None:
    """Each death falls in its own window; the same seed gives the same schedule."""
    times = fleet.death_times(100.0, 40.0, 5, seed=2)
    assert times == fleet.death_times(100.0, 40.0, 5, seed=2)
    assert all(100 + 40 * k <= t <= 100 + 40 * k + 20 for k, t in enumerate(times))


def test_outage_schedule_is_the_client_machines() -> None:
    """attempt_starts gives the attempt times the client machine itself asks for."""
    import random

    from model import client as cm
    from model.backoff import SOCKETIO_POLICY
    from model.core import EventId, StartTimer
    from sims.reports import outage

    for policy in (SEED_POLICY, SOCKETIO_POLICY, aj.policy("decorrelated")):
        starts, failed_at = outage.attempt_starts(policy, 8, 0.1, 10**6, random.Random(5))
        cfg = cm.ClientConfig(max_attempts=8, policy=policy)
        rng = random.Random(5)
        s, _ = cm.step(cfg, cm.initial(), cm.Start(now=-1.0))
        s, _ = cm.step(cfg, s, cm.StreamOpened(now=-1.0))
        s, _ = cm.step(cfg, s, cm.EventReceived(now=-0.5, event_id=EventId(0, 1)))
        s, acts = cm.step(cfg, s, cm.StreamClosed(now=0.0, u=rng.random()))
        machine = []
        while s.status is cm.Status.WAITING:
            at = next(a.at for a in acts if isinstance(a, StartTimer) and a.timer == cm.BACKOFF)
            machine.append(at)
            s, _ = cm.step(cfg, s, cm.TimerFired(now=at, timer=cm.BACKOFF))
            s, acts = cm.step(cfg, s, cm.StreamFailed(now=at + 0.1, u=rng.random()))
        assert starts.tolist() == pytest.approx(machine)
        assert failed_at == pytest.approx(machine[-1] + 0.1)


def test_outage_percentiles_and_failed() -> None:
    """A deterministic client has one value per outage; the seed's gives up on a long outage."""
    from sims.reports import outage

    seed_client = outage.clients()[0]
    frame = outage.percentiles(seed_client, (10, 3600), samples=5)
    refused = frame[frame["mode"] == "refused"].set_index("outage_s")
    assert refused.loc[3600, "p_failed"] == 1.0 and refused.loc[10, "p_failed"] == 0.0
    assert refused.loc[10, "p50_s"] == refused.loc[10, "p99_s"]  # one schedule
    browsers = outage.percentiles(outage.clients()[3], (3600,), samples=5)
    assert (browsers["p_failed"] == 0).all() and (browsers["p99_s"] <= 20.1).all()


def test_time_to_failed_with_the_heartbeat_guard_off() -> None:
    """Guard on: failed after the seed's 1381 s of backoff; off, on stalled streams: never."""
    from sims.reports import outage

    ttf = outage.time_to_failed_table(horizon=2000.0).set_index(["heartbeat_guard", "outage"])
    assert ttf.loc[("on", "refused"), "failed_after_s"] == pytest.approx(1383.55, abs=1)
    off = ttf.loc[("off (the seed's code)", "stalled")]
    assert off["failed_after_s"] != off["failed_after_s"] and off["counter_max"] > 50


def test_aws_claims_are_judged_at_every_client_count() -> None:
    """judge_over_range says at which N each claim holds."""
    claims = aj.judge_over_range(aj.means(aj.sweep((10, 20, 30), trials=3)))
    assert len(claims) == len(aj.CLAIMS)
    assert set(claims["supported"]) <= {"yes", "partly", "no"}
    assert all(c.startswith(("holds", "partly", "not")) for c in claims["where"])


def test_ks_distance_to_uniform_and_its_critical_value() -> None:
    """Evenly spread samples sit close to the uniform law; a lump does not; c / sqrt(n) at 1 %."""
    from sims.reports import detection

    even = [2.0 + 10.0 * (k + 0.5) / 100 for k in range(100)]
    assert detection.ks_uniform(even, 2.0, 10.0) == pytest.approx(0.005)
    assert detection.ks_uniform([7.0], 2.0, 10.0) == pytest.approx(0.5)
    assert detection.ks_uniform([2.0] * 10, 2.0, 10.0) == pytest.approx(1.0)
    assert detection.ks_critical(100) == pytest.approx(0.163)


def test_detection_summary_per_setting() -> None:
    """One row per (interval, timeout) with the closed-form mean and the bound."""
    from sims.reports import detection

    deaths = pd.DataFrame({"interval": [10.0] * 4 + [30.0] * 2, "timeout": [2.0] * 4 + [5.0] * 2,
                           "latency_s": [3.0, 5.0, 8.0, 12.0, 20.0, 34.0], "detected": [True] * 6})
    rows = detection.summary(deaths).set_index("interval (s)")
    assert rows.loc[10.0, "closed-form mean (s)"] == 7.0 and rows.loc[10.0, "mean (s)"] == 7.0
    assert rows.loc[10.0, "max / bound"] == 1.0 and rows.loc[30.0, "bound (s)"] == 35.0
    assert rows.loc[30.0, "deaths"] == 2 and rows.loc[30.0, "detected"] == 2


def test_merge_identical_draws_equal_lines_once() -> None:
    """Equal series share one line labelled with both names; different ones stay apart."""
    from sims.reports.common import merge_identical

    lines = merge_identical({"limit 1000": pd.Series([1.0, 2.0]), "unbounded": pd.Series([1.0, 2.0]),
                             "limit 1": pd.Series([1.0, 3.0])})
    assert list(lines) == ["limit 1000 = unbounded", "limit 1"]


def test_long_disconnect_truncates_with_f1_and_replays_the_gap_without() -> None:
    """Clients offline past the replay limit re-hydrate with F1 on; with it off one replay reads the gap."""
    kwargs = {"clients": 20, "duration": 560.0, "seed": 3,
              "settings": {"publish_rate": 0.2, "replay_limit": 5},
              "extra_faults": [fleet.sleep(120.0, 300.0, 1.0)]}
    bounded = fleet.disconnect_row(fleet.run("steady", **kwargs), 420.0)
    unbounded = fleet.disconnect_row(fleet.run("steady", without=("bounded-replay",), **kwargs), 420.0)
    assert bounded["snapshots"] > 0 and bounded["replay rows"] == 0
    assert unbounded["snapshots"] == 0 and unbounded["largest query (rows)"] > 5 + 1
    assert unbounded["replay rows"] > 20 * 5


def test_fleet_rows_and_series_from_one_run() -> None:
    """herd_row, storm_row, binned and staleness_series read one small deploy run consistently."""
    result = fleet.run("deploy-restart", clients=30, duration=240.0, seed=2)
    t0 = min(f.at for f in result.scenario.faults)
    herd_row, storm_row = fleet.herd_row(result, t0), fleet.storm_row(result, t0)
    assert herd_row["reconnects"] >= 30 and herd_row["peak reconnects/s (100 ms bins)"] >= \
        herd_row["peak reconnects/s"]
    assert storm_row["DB rows after the deploy"] >= herd_row["reconnects"]  # a head row each at least
    bins = fleet.binned(result, t0, t0 + 60.0, 0.1)
    assert len(bins) == 600 and bins["reconnects"].sum() * 0.1 <= herd_row["reconnects"]
    series = fleet.staleness_series(result, np.arange(0.0, 240.0, 1.0))
    assert series["connected_clients"].max() == 30 and series["silently_stale_clients"].max() == 0


def test_readme_block_and_index_list_every_report_with_its_finding(tmp_path: Path) -> None:
    """Both are generated from the JSON of every report in the catalog, none left out."""
    from sims.reports.catalog import REPORTS
    from sims.reports.common import save_finding
    from sims.reports.readme import readme_block
    from sims.reports.render import write_index

    for info in REPORTS:
        save_finding(info.name, f"the finding of {info.name}", quick=False, out_dir=tmp_path,
                     headline={"key": "1 s"})
        (tmp_path / f"{info.name}.html").write_text("<html></html>", encoding="utf-8")
    block, index = readme_block(tmp_path), write_index(tmp_path).read_text(encoding="utf-8")
    for info in REPORTS:
        assert f"(reports/{info.name}.html) — the finding of {info.name}" in block
        assert f"the finding of {info.name}" in index and f'href="{info.name}.html"' in index
