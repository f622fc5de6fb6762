"""``model.world.enabled`` lists the same transitions with a memo as without one
(and ``model.invariants.violations`` gives the same verdicts).

The checker keeps a memo of each client's own moves, keyed by the client's slot and
the database (``model.world.CLIENT_ENABLERS``), of each replica's own moves
(``model.world.REPLICA_ENABLERS``), and of each client's and replica's part of a
world-wide move (``model.world_shell.on_client`` / ``on_replica``); this is the proof
that the keys hold everything those moves read. Each world is walked breadth first and, in every state,
the memoised list must equal the plain one, transition for transition.
"""

from __future__ import annotations

import pytest

from model.fixes import Fixes
from model.invariants import violations
from model.world import Memo, State, WorldConfig, enabled, initial

WORLDS = {
    "default": (WorldConfig(), 40_000),
    "two-clients": (WorldConfig(clients=2), 15_000),
    "two-replicas": (WorldConfig(replicas=2), 15_000),
    "two-faults": (WorldConfig(faults=2), 15_000),
    "two-publishers-F5-off": (WorldConfig(publishers=2, fixes=Fixes().without("F5")), 15_000),
    "no-publish-lost": (WorldConfig(without_faults=("redis.publish_lost",)), 15_000),
}


def _walk(cfg: WorldConfig, limit: int) -> tuple[int, int, int]:
    """Compare memoised and plain transitions in the first ``limit`` states; (states, memo size)."""
    memo = Memo()
    start = initial(cfg)
    seen: set[State] = {start}
    frontier = [start]
    while frontier and len(seen) < limit:
        nxt: list[State] = []
        for s in frontier:
            plain = enabled(cfg, s)
            assert enabled(cfg, s, memo) == plain, s
            judged = violations(cfg, s)
            assert violations(cfg, s, memo) == judged, s
            if judged:
                continue
            for t in plain:
                if t.state not in seen:
                    seen.add(t.state)
                    nxt.append(t.state)
        frontier = nxt
    return len(seen), len(memo), len(memo.pieces)


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_memo_changes_nothing(name: str) -> None:
    cfg, limit = WORLDS[name]
    states, remembered, pieces = _walk(cfg, limit)
    assert states >= min(limit, 1000)
    assert 0 < remembered < states  # the memo is used, and shared between states
    # world-wide moves' parts (a delivery to one client, one client's tick) are remembered too
    assert 0 < pieces < states


def test_a_move_that_reads_a_replica_is_caught() -> None:
    """A client move computed for the memo sees no replicas: reading one fails loudly."""
    import model.world as wd

    def peeks(cfg: WorldConfig, s: State, i: int):  # type: ignore[no-untyped-def]
        assert s.replicas[0] is not None  # IndexError in the memo's bare state
        yield from ()

    cfg = WorldConfig()
    world, replicas, clients, asleep = wd._chosen(cfg, True)
    wd._CHOSEN[(id(cfg), True)] = (cfg, (world, replicas, (*clients, peeks), asleep))
    try:
        enabled(cfg, initial(cfg))  # plain: fine
        with pytest.raises(IndexError):
            enabled(cfg, initial(cfg), Memo())
    finally:
        wd._CHOSEN.pop((id(cfg), True), None)


def test_a_replica_move_that_reads_a_client_is_caught() -> None:
    """A replica move computed for the memo sees no clients: reading one fails loudly."""
    import model.world as wd

    def peeks(cfg: WorldConfig, s: State, r: int):  # type: ignore[no-untyped-def]
        assert s.clients[0] is not None
        yield from ()

    cfg = WorldConfig()
    world, replicas, clients, asleep = wd._chosen(cfg, True)
    wd._CHOSEN[(id(cfg), True)] = (cfg, (world, (*replicas, peeks), clients, asleep))
    try:
        enabled(cfg, initial(cfg))
        with pytest.raises(IndexError):
            enabled(cfg, initial(cfg), Memo())
    finally:
        wd._CHOSEN.pop((id(cfg), True), None)


def test_a_resync_is_never_remembered() -> None:
    """A replica move that feeds the replica's streams is computed afresh in every state."""
    cfg = WorldConfig()
    memo = Memo()
    _walk_into(cfg, memo, 40_000)
    assert None in memo.replicas.values()  # a resync happened, and was not remembered


def _walk_into(cfg: WorldConfig, memo: Memo, limit: int) -> None:
    start = initial(cfg)
    seen = {start}
    frontier = [start]
    while frontier and len(seen) < limit:
        nxt = []
        for s in frontier:
            for t in enabled(cfg, s, memo):
                if t.state not in seen and not violations(cfg, t.state):
                    seen.add(t.state)
                    nxt.append(t.state)
        frontier = nxt
