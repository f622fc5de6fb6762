"""Partitioned search: the same counts, verdicts and counterexamples in 1, 2 processes and on Dask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from model.fixes import Fixes
from model.world import WorldConfig
from sims.check import CheckResult, check

#: (world, check options, invariant expected violated): small worlds with two replicas: a clean
#: one (both symmetries, liveness), a liveness lasso (F4 off, only liveness judging the death)
#: the seed's heartbeat race (a safety counterexample), and sleep sets (met at the owner).
CASES = [
    (WorldConfig(clients=2, replicas=2, events=0, faults=0), {}, None),
    (WorldConfig(replicas=2, events=0, fixes=Fixes.all().without("F4")),
     {"only": ["bounded-counter"]}, "detection-bound"),
    (WorldConfig(replicas=2, events=1, fixes=Fixes.all().without("F3")),
     {"stop_at_first": True, "liveness": False}, "bounded-counter"),
    (WorldConfig(clients=2, events=0), {"sleep_sets": True}, None),
]


def _summary(r: CheckResult) -> tuple[Any, ...]:
    return (r.states, r.transitions, r.stats["transitions_slept"], r.depth, r.complete, r.invariants,
            [(v.invariant, v.kind, v.trace, [s.label for s in v.cycle]) for v in r.violations])


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """A local Dask cluster of two worker processes (spawned: enum ids differ from ours)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize(("config", "options", "broken"), CASES, ids=["clean", "F4-lasso", "F3",
                                                                 "sleep-sets"])
def test_workers_and_dask_agree_with_one_process(config: WorldConfig, options: dict[str, Any],
                                                 broken: str | None, dask_cluster: str) -> None:
    """--workers 1, --workers 2 and --scheduler give identical counts, verdicts and traces."""
    one = check(config, **options)
    two = check(config, workers=2, **options)
    on_dask = check(config, workers=2, scheduler=dask_cluster, **options)
    assert _summary(one) == _summary(two) == _summary(on_dask)
    assert [v.invariant for v in one.violations] == ([broken] if broken else [])
    assert one.complete or options.get("stop_at_first")


def test_a_partition_answers_parents_and_keeps_searching_after() -> None:
    """Parents come back from the flat store (the root's is itself; unknown is None), and the
    store still grows after a lookup (a numpy view of it must not outlive the call)."""
    from sims.check.partition import Partition

    part = Partition(0, 1, WorldConfig(events=1, faults=0), {})
    root = part.start()
    part.expand()
    children = list(part.frontier_fps)
    assert children and part.owned() == 1 + len(children)
    assert part.parents([root, *children, root + 1]) == [root, *[root] * len(children), None]
    part.expand()  # stores the grandchildren: the arrays grow after the lookup
    grand = list(part.frontier_fps)
    assert grand and set(part.parents(grand)) <= set(children)
