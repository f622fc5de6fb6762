"""Reductions keep the verdicts; the canonical encoding is stable; swarm walks shrink what they find."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable

import pytest

from model.core import LocalProtocolError
from model.fixes import Fixes
from model.invariants import converged, undetected, violations
from model.world import Memo, State, WorldConfig, enabled, flatten, initial
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


@functools.cache
def _canon(config: WorldConfig) -> Canon:
    return Canon(config)


def _forget(config: WorldConfig, s: State) -> State:
    """Every slot and replica with its dead fields forgotten, as the canonical encoding does."""
    return _canon(config).forget(s)


def _reached(config: WorldConfig, memo: Memo) -> list[State]:
    seen = {initial(config)}
    frontier = list(seen)
    while frontier:
        nxt = []
        for s in frontier:
            if violations(config, s):
                continue  # as the checker: a broken counter would grow without end
            for t in enabled(config, s, memo):
                if t.state not in seen:
                    seen.add(t.state)
                    nxt.append(t.state)
        frontier = nxt
    return list(seen)


#: worlds where sentinels go round (tokens turn), links die, backoff waits differ and fixes
#: are off; each small enough to enumerate whole
FORGET_WORLDS = [
    WorldConfig(events=0, faults=1),
    WorldConfig(events=0, faults=1, fixes=Fixes.all().without("F4")),
    WorldConfig(events=0, faults=1, fixes=Fixes.all().without("F3")),
    WorldConfig(replicas=2, events=0, faults=0),
]


Forget = Callable[[WorldConfig, State], State]


def _forgetting_breaks(config: WorldConfig, forget: Forget) -> str | None:
    """Where forgetting is not a bisimulation in ``config``'s world: a reason, or None."""
    canon = Canon(config, clients=False, replicas=False, dead=False)
    memo = Memo()
    states = _reached(config, memo)
    fp = canon.fingerprint

    def moves(s: State) -> list[tuple[str, int, int]]:
        return sorted((t.kind.value, t.actor, fp(forget(config, t.state)))
                      for t in enabled(config, s, memo))

    forgot = 0
    for s in states:
        f = forget(config, s)
        if f == s:
            continue
        forgot += 1
        if violations(config, f) != violations(config, s):
            return f"verdicts differ in {flatten(config, s)}"
        if any(converged(config, f, i) != converged(config, s, i) for i in range(config.clients)):
            return f"convergence differs in {flatten(config, s)}"
        if any(undetected(config, f, r) != undetected(config, s, r)
               for r in range(config.replicas)):
            return f"detection differs in {flatten(config, s)}"
        try:
            moved = moves(f)
        except LocalProtocolError as e:  # the forgotten state is not one the machines accept
            return f"a machine refuses the forgotten form of {flatten(config, s)}: {e}"
        if moved != moves(s):
            return f"the moves differ from {flatten(config, s)}"
    if forgot <= len(states) // 4:  # the fields must vary, or the check says nothing
        return f"only {forgot} of {len(states)} states have anything to forget"
    return None


@pytest.mark.parametrize("config", FORGET_WORLDS, ids=["1x1", "F4-off", "F3-off", "2-replicas"])
def test_forgotten_fields_are_dead(config: WorldConfig) -> None:
    """Forgetting dead fields commutes with every move and keeps every verdict, in every state.

    That makes "same fingerprint" a bisimulation: a state and its forgotten form have the
    same moves (by kind and actor) to states that are again the same once forgotten, and the
    same safety and liveness judgements, so the quotient keeps every verdict and every
    shortest counterexample's length.
    """
    assert _forgetting_breaks(config, _forget) is None
    canon, plain = Canon(config), Canon(config, dead=False)
    s = initial(config)
    assert canon.fingerprint(s) == plain.fingerprint(_forget(config, s))


def _forget_outstanding(config: WorldConfig, s: State) -> State:
    f = _forget(config, s)
    return f._replace(replicas=tuple(r._replace(subscriber=r.subscriber._replace(outstanding=None))
                                     for r in f.replicas))


def _turn_without_queue(config: WorldConfig, s: State) -> State:
    f = _forget(config, s)
    return f._replace(replicas=tuple(r._replace(queue=o.queue) for r, o in zip(f.replicas, s.replicas,
                                                                               strict=True)))


def _forget_backoff_timer(config: WorldConfig, s: State) -> State:
    f = _forget(config, s)
    return f._replace(clients=tuple(c._replace(backoff_left=-1) for c in f.clients))


@pytest.mark.parametrize("mutant", [_forget_outstanding, _turn_without_queue, _forget_backoff_timer],
                         ids=["outstanding", "tokens-not-in-queue", "backoff-timer"])
def test_the_dead_field_check_catches_a_live_field(mutant: Forget) -> None:
    """Forgetting a field that is read (or turning tokens in one place only) is caught."""
    assert _forgetting_breaks(WorldConfig(events=0, faults=1), mutant) is not None


def test_dead_fields_only_shrink_the_count_and_keep_every_verdict() -> None:
    """With and without dead fields (symmetry on in both): same verdicts and counterexample lengths."""
    for config in (WorldConfig(events=0, faults=1, fixes=Fixes.all().without("F4")),
                   WorldConfig(replicas=2, events=0, faults=1, without_faults=("network.stall",
                                                                              "clients.sleep"))):
        reduced = check(config)
        plain = check(config, dead_fields=False)
        assert reduced.invariants == plain.invariants
        assert [len(v.steps) for v in reduced.violations] == [len(v.steps) for v in plain.violations]
        assert reduced.states < plain.states
        assert reduced.stats["reductions"]["dead_fields"]
        assert not plain.stats["reductions"]["dead_fields"]
