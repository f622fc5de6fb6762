"""Reductions keep the verdicts; the canonical encoding is stable; swarm walks shrink what they find."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model.fixes import Fixes
from model.invariants import violations
from model.world import WorldConfig, enabled, initial
from sims.check import check, replay
from sims.check.canon import Canon
from sims.check.simulate import reproduces, simulate

SMALL = [
    WorldConfig(clients=2, replicas=2, events=0, faults=0),
    WorldConfig(replicas=2, events=1, faults=0),
    WorldConfig(replicas=2, events=0, fixes=Fixes.all().without("F4")),
]


@pytest.mark.parametrize("config", SMALL, ids=["2x2-quiet", "2-replicas", "2-replicas-F4-off"])
def test_symmetry_keeps_every_verdict_and_only_shrinks_the_count(config: WorldConfig) -> None:
    """With and without client and replica symmetry: the same verdicts, fewer states with it."""
    reduced = check(config)
    plain = check(config, reduction=False)
    assert reduced.invariants == plain.invariants
    assert [len(v.steps) for v in reduced.violations] == [len(v.steps) for v in plain.violations]
    assert reduced.states < plain.states
    assert not plain.stats["reductions"]["replica_symmetry"]


def test_replica_symmetry_merges_mirrored_states() -> None:
    """A stream accepted by replica 0 or by replica 1 is the same state under replica symmetry."""
    config = WorldConfig(replicas=2, events=0, faults=0)
    accepts = [t for t in enabled(config, initial(config)) if t.kind.value == "accept"]
    assert len(accepts) == 2
    sym, plain = Canon(config), Canon(config, replicas=False)
    assert sym.fingerprint(accepts[0].state) == sym.fingerprint(accepts[1].state)
    assert plain.fingerprint(accepts[0].state) != plain.fingerprint(accepts[1].state)


def test_fingerprints_are_the_same_in_a_fresh_interpreter() -> None:
    """Enums hash by identity, so a fingerprint must come from the encoding, not from hash()."""
    code = ("from model.world import WorldConfig, initial; from sims.check.canon import Canon; "
            "c = WorldConfig(clients=2, replicas=2); print(Canon(c).fingerprint(initial(c)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    config = WorldConfig(clients=2, replicas=2)
    assert int(out.stdout) == Canon(config).fingerprint(initial(config))


def test_swarm_walks_find_and_shrink_the_heartbeat_race() -> None:
    """F3 off: the walks find bounded-counter; the shrunk trace replays to the violation."""
    config = WorldConfig(fixes=Fixes.all().without("F3"))
    result = simulate(config, walks=200, depth=60, seed=1)
    (violation,) = [v for v in result.violations if v.invariant == "bounded-counter"]
    assert violation.found_by == "simulation"
    states = replay(config, [s.key for s in violation.steps])
    assert "bounded-counter" in violations(config, states[-1])
    keys = [s.key for s in violation.steps]
    for drop in range(len(keys)):  # 1-minimal: no single step can go
        assert reproduces(config, keys[:drop] + keys[drop + 1:], "bounded-counter") is None
    assert "timer" in {k.split("/")[0] for k in result.coverage["kinds"]}
