"""Coverage: which world transition kinds and machine (state, input) pairs real runs exercised.

Real pairs come from the traces (the state before an input is the previous line's
state of that instance); reachable pairs from a bounded walk of the world, whose
feeds are recorded as in :mod:`sims.conform.search`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from model.world import Kind, WorldConfig, enabled, initial
from sims.conform.search import Step
from sims.conform.traces import Trace

__all__ = ["Coverage", "format_coverage", "reachable", "exercised"]

Pair = tuple[str, str, str]  #: (machine, state before, input type)
_START = {"client": "idle", "session": "new", "subscriber": "starting"}


class Coverage(NamedTuple):
    """Kinds and pairs: exercised by real runs, and reachable in the checked world."""

    kinds_real: frozenset[str]
    kinds_world: frozenset[str]
    pairs_real: frozenset[Pair]
    pairs_world: frozenset[Pair]


def exercised(trace: Trace, paths: Iterable[tuple[Step, ...]]) -> tuple[set[str], set[Pair]]:
    """Transition kinds on the found paths and machine pairs in the raw trace lines."""
    kinds = {step.kind.value for path in paths for step in path}
    pairs: set[Pair] = set()
    for inst in trace.instances:
        before = _START[inst.machine]
        for line in inst.raw_lines:
            pairs.add((inst.machine, before, str(line.raw["input"]["type"])))
            before = str(line.raw.get("state", before))
    return kinds, pairs


def reachable(cfg: WorldConfig, max_states: int = 50_000) -> tuple[set[str], set[Pair]]:
    """Transition kinds and machine pairs of a bounded breadth-first walk of the world."""
    s0 = initial(cfg)
    seen = {s0}
    queue = deque([s0])
    kinds: set[str] = set()
    pairs: set[Pair] = set()
    while queue and len(seen) < max_states:
        s = queue.popleft()
        for t in enabled(cfg, s):
            kinds.add(t.kind.value)
            for feed in t.feeds:
                if feed.machine.value in _START:
                    pairs.add((feed.machine.value, feed.before, feed.input.__class__.__name__))
            if t.state not in seen:
                seen.add(t.state)
                queue.append(t.state)
    return kinds, pairs


def format_coverage(cov: Coverage) -> str:
    """A table: every kind and pair the world reaches, marked when a real run exercised it."""
    out = [f"world transition kinds exercised: {len(cov.kinds_real & cov.kinds_world)}"
           f" of {len(cov.kinds_world)}"]
    for kind in sorted(cov.kinds_world):
        out.append(f"  [{'x' if kind in cov.kinds_real else ' '}] {kind}")
    unreached = sorted({k.value for k in Kind} - cov.kinds_world)
    if unreached:  # every kind of the vocabulary shows, even those this bounded walk missed
        out.append("kinds the bounded walk of the default world did not reach: "
                   + ", ".join(unreached))
    out.append(f"machine (state, input) pairs exercised: {len(cov.pairs_real & cov.pairs_world)}"
               f" of {len(cov.pairs_world)} the checker reaches")
    for pair in sorted(cov.pairs_world):
        out.append(f"  [{'x' if pair in cov.pairs_real else ' '}] {pair[0]:<11}{pair[1]:<13}{pair[2]}")
    extra = sorted(cov.pairs_real - cov.pairs_world)
    if extra:
        out.append("real pairs the world never feeds (abstracted: heartbeats, Start/Stop, Close):")
        out += [f"      {m:<11}{s:<13}{i}" for m, s, i in extra]
    return "\n".join(out)
