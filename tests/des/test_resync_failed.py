"""A failed head read during a resync ends the streams; clients reconnect and catch up.

The subscriber recovers from a Redis outage while Postgres refuses every query,
so the replica's resync cannot read the topic heads. The session machine decides
what happens (``model.session.ResyncFailed`` -> ``EndStream``), as in the
service: each stream on that replica closes, its client reconnects from its
cursor, and the replay catches it up. Nothing is left silently stale.
"""

from __future__ import annotations

import pandas as pd

from sims.des.verdict import violations
from tests.des.conftest import run

#: Redis is down 200..230 s; every query fails 225..240 s, so the resync at ~231 s fails.
FAULTS = ("redis.outage(at=200, duration=30)", "postgres.errors(at=225, duration=15, rate=1)")


def test_a_failed_resync_ends_the_streams_and_clients_catch_up() -> None:
    """The heads read fails, streams close, clients reconnect; every invariant holds."""
    result = run("steady", clients=40, duration=900.0, seed=3, faults=FAULTS)
    queries = result.frames["queries"]
    heads = queries[queries["kind"] == "heads"]
    assert (heads["error"] != "").any(), "the scenario must make a resync's head read fail"
    failed_at = float(heads[heads["error"] != ""]["t"].min())
    status = result.frames["status"]
    reconnecting = status[(status["t"] >= failed_at) & (status["status"] == "connecting")]
    assert len(reconnecting) > 0, "the ended streams' clients reconnect"
    assert result.metrics["silent_stale_seconds_total"] == 0.0
    assert violations(result) == {}
    counters = result.frames["counters"]
    assert counters["final_in_sync"].all()


def test_the_run_is_deterministic() -> None:
    """The same seed gives the same frames, bit for bit."""
    first = run("steady", clients=40, duration=900.0, seed=3, faults=FAULTS)
    second = run("steady", clients=40, duration=900.0, seed=3, faults=FAULTS)
    for name, frame in first.frames.items():
        pd.testing.assert_frame_equal(frame, second.frames[name])
