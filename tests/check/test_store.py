"""The partition's compact stores: owned fingerprints (a set for the newest levels, sorted
arrays for the rest) and held states as rows of part numbers."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from model.world import WorldConfig, enabled, initial
from sims.check import check
from sims.check.partition import Parts, Store


def _level(*fps: int) -> tuple[array[int], array[int]]:
    return array("q", fps), array("q", [fp * 10 for fp in fps])


def test_older_levels_move_to_the_sorted_arrays_and_are_still_found() -> None:
    """Past the hot window a level leaves the set; lookups and parents still find it."""
    store = Store(hot_levels=2)
    store.add_level(*_level(50))
    store.add_level(*_level(7, 90, -3))
    store.add_level(*_level(20, 4))  # the first level leaves the set
    assert 50 not in store.hot and {7, 90, -3, 20, 4} <= store.hot
    assert store.cold.tolist() == [50]
    store.add_level(*_level())  # an empty level still turns the window
    store.add_level(*_level(8))
    assert store.cold.tolist() == [-3, 4, 7, 20, 50, 90]  # sorted, parents aligned
    assert store.cold_parents.tolist() == [-30, 40, 70, 200, 500, 900]
    assert len(store) == 7
    keys = np.array([90, 91, -3, 8, -4], dtype=np.int64)
    assert store.unseen(keys).tolist() == [False, True, False, True, True]  # 8 is hot: the caller's
    assert store.parents([90, 8, 4, 91, 100]) == [900, 80, 40, None, None]


def test_a_store_needs_a_hot_level() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Store(hot_levels=0)


@pytest.mark.parametrize(("config", "workers"), [(WorldConfig(), 1),
                                                 (WorldConfig(replicas=2, events=1), 2)],
                         ids=["default", "replicas-2-workers-2"])
def test_the_hot_window_changes_no_count(config: WorldConfig, workers: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With one hot level, most lookups go to the sorted arrays: the same search (skipping
    that lookup, in one process or in claim(), makes stored states come back as new)."""
    import sims.check.partition as partition

    wide = check(config, workers=workers)
    monkeypatch.setattr(partition, "HOT_LEVELS", 1)
    narrow = check(config, workers=workers)
    assert (narrow.states, narrow.transitions, narrow.depth, narrow.invariants) == (
        wide.states, wide.transitions, wide.depth, wide.invariants)
    assert wide.complete and narrow.complete
    assert wide.stats["bytes_per_state"] < 40  # 16 bytes a state once its level is old


def test_a_state_as_a_row_comes_back_made_of_the_numbered_parts() -> None:
    """Encoding then decoding gives an equal state whose parts are the numbered objects."""
    cfg = WorldConfig(clients=2, replicas=2)
    parts = Parts()
    s0 = initial(cfg)
    states = [s0, *[t.state for t in enabled(cfg, s0)]]
    rows = array("q")
    for s in states:
        rows.extend(parts.row(s))
    width = cfg.clients + cfg.replicas + 5
    back = [parts.state(rows, i * width, cfg.clients, cfg.replicas) for i in range(len(states))]
    assert back == states
    assert all(c is parts.objs[parts.code(c)] for s in back for c in s.clients)
    # a state that arrived pickled (new objects, equal values) gets the same numbers
    import pickle

    copy = pickle.loads(pickle.dumps(states[-1]))
    assert parts.adopt(copy) == parts.row(states[-1])
    assert len(parts.objs) == len(parts.by_value)
