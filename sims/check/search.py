"""The level-synchronous breadth-first search over a pool of partitions.

Each level: every partition expands its frontier (:meth:`Partition.expand`),
candidates go to their owners (:meth:`Partition.claim`), winners go back to the
partitions that made them (:meth:`Partition.keep`). A level ends only when every
partition has finished it, so depth ``d`` holds exactly the states at distance
``d`` (in the reduced graph) whatever the number of workers, and the first
violation found is a shortest one. Bounds are checked between levels.
"""

from __future__ import annotations

import dataclasses
import time
from array import array
from collections.abc import Callable
from typing import Any

from sims.check.partition import peak_kb
from sims.check.pools import Pool

__all__ = ["Exploration", "Progress", "explore", "peak_mb"]


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a running search is: states stored, depth, rate and memory."""

    states: int
    depth: int
    frontier: int
    seconds: float
    memory_mb: float
    #: "search" while levels are explored; "liveness" once the settled graph is being judged
    phase: str = "search"
    #: each worker process's peak memory in MB (empty when the search runs in this process)
    workers_mb: tuple[float, ...] = ()

    @property
    def total_mb(self) -> float:
        """Peak memory of this process and every worker, in MB."""
        return self.memory_mb + sum(self.workers_mb)

    @property
    def rate(self) -> float:
        """States per second so far."""
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass
class Exploration:
    """What the search saw: counts, the first violating state per invariant, bounds hit."""

    root: int
    states: int = 0
    transitions: int = 0
    depth: int = 0
    incomplete: str | None = None
    first: dict[str, int] = dataclasses.field(default_factory=dict)
    spared: dict[str, int] = dataclasses.field(default_factory=dict)
    #: each worker process's peak memory in MB at the last level (empty in this process)
    workers_mb: tuple[float, ...] = ()


def peak_mb() -> float:
    """This process's peak resident memory, in MB."""
    return peak_kb() / 1024


def explore(pool: Pool, *, max_states: int, max_depth: int, stop_at_first: bool,
            progress: Callable[[Progress], None] | None = None) -> Exploration:
    """Run the search on ``pool`` level by level; return what it saw."""
    started = time.perf_counter()
    n = pool.size
    roots = pool.map("start", [()] * n)
    ex = Exploration(root=roots[0])
    ex.states = 1
    frontier = 1
    while frontier:
        if ex.depth >= max_depth:
            ex.incomplete = f"depth bound {max_depth} reached"
            break
        reports = pool.map("expand", [()] * n)
        batches: list[list[tuple[int, array[int]]]] = [[] for _ in range(n)]
        level_bad: dict[str, int] = {}
        for gen, (per_owner, transitions, bad, spared) in enumerate(reports):
            ex.transitions += transitions
            for key, value in spared.items():
                ex.spared[key] = ex.spared.get(key, 0) + value
            for name, fp in bad.items():
                if name not in level_bad or fp < level_bad[name]:
                    level_bad[name] = fp
            for owner, cands in enumerate(per_owner):
                batches[owner].append((gen, cands))
        for name, fp in level_bad.items():
            ex.first.setdefault(name, fp)
        won = pool.map("claim", [(b,) for b in batches])
        per_gen = [[won[owner][gen] for owner in range(n)] for gen in range(n)]
        shipped = pool.map("keep", [(b,) for b in per_gen])
        kept = pool.map("receive", [([shipped[gen][owner] for gen in range(n)],)
                                    for owner in range(n)])
        frontier = sum(size for size, _ in kept)
        if pool.remote:
            ex.workers_mb = tuple(kb / 1024 for _, kb in kept)
        ex.states += frontier
        if stop_at_first and ex.first:
            ex.incomplete = "stopped at the first violation"
            break
        if frontier:
            ex.depth += 1
        if ex.states > max_states:
            ex.incomplete = f"state bound {max_states:,} reached"
            break
        if progress is not None:
            progress(Progress(ex.states, ex.depth, frontier, time.perf_counter() - started, peak_mb(),
                              workers_mb=ex.workers_mb))
    return ex


def gather_memory(pool: Pool) -> dict[str, Any]:
    """Peak memory (coordinator and each worker) and bytes per stored state."""
    parts = pool.map("memory", [()] * pool.size)
    stored = sum(p["stored_bytes"] for p in parts)
    states = sum(p["stored_states"] for p in parts)
    worker_peaks = [round(p["peak_kb"] / 1024, 1) for p in parts]
    return {"peak_memory_mb": round(peak_mb(), 1), "worker_peak_memory_mb": worker_peaks,
            "bytes_per_state": round(stored / states, 1) if states else 0.0}
