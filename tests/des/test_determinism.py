"""Same seed, same run, bit for bit; another seed, another run."""

from __future__ import annotations

import pandas as pd

from sims.des.metrics import FRAMES

from .conftest import run


def test_same_seed_gives_identical_frames_and_metrics() -> None:
    a = run("redis-outage", clients=60, duration=900.0, seed=7, drop_rate_per_h=2.0,
            sleep_rate_per_h=1.0)
    b = run("redis-outage", clients=60, duration=900.0, seed=7, drop_rate_per_h=2.0,
            sleep_rate_per_h=1.0)
    assert a.metrics == b.metrics
    assert a.sim_events == b.sim_events
    assert a.machine_steps == b.machine_steps
    for name in FRAMES:
        pd.testing.assert_frame_equal(a.frames[name], b.frames[name])


def test_another_seed_gives_another_run() -> None:
    a = run("steady", clients=60, duration=600.0, seed=1)
    b = run("steady", clients=60, duration=600.0, seed=2)
    assert a.publishes != b.publishes or not a.frames["status"].equals(b.frames["status"])


def test_every_preset_is_deterministic_with_faults_on_clients() -> None:
    for spec in ("laptop-sleep", "flapping", "db-brownout"):
        a = run(spec, clients=30, duration=600.0, seed=3)
        b = run(spec, clients=30, duration=600.0, seed=3)
        assert a.metrics == b.metrics, spec
        pd.testing.assert_frame_equal(a.frames["stale"], b.frames["stale"])
        pd.testing.assert_frame_equal(a.frames["queries"], b.frames["queries"])
