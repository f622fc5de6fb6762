"""Swarm simulation: many seeded random walks when a world is too big to search to the end.

Each walk draws its own *swarm* configuration: which fault kinds and which
progress kinds it takes (a kind it did not draw is taken only when nothing it
drew is enabled, so a walk never stalls while the world can move). Walks are
judged after every step with :func:`model.invariants.violations`; a violating
walk stops, and its steps are shrunk by delta debugging (drop chunks of steps
while the rest still replays, by key, to a state breaking the same invariant)
and printed like any counterexample. Coverage - the transition kinds taken
and the machine (state, input) pairs fed - is reported next to what the
exhaustive search takes on a smaller world (``reference``), which says what the
walks missed and what only the big world has.

Walks are independent, so they run in batches on the same workers as the
search: forked processes (``workers``) or a Dask cluster (``scheduler``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import random
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from model.invariants import violations
from model.world import Kind, State, Transition, WorldConfig, enabled, initial
from sims.check.coverage import Item, coverage_of, summarize
from sims.check.result import Key, Violation
from sims.check.trace import steps_of

__all__ = ["SimulationResult", "reproduces", "shrink", "simulate"]


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What the walks reached and broke."""

    config: WorldConfig
    walks: int
    steps: int
    seconds: float
    coverage: dict[str, list[str]]
    reference: dict[str, Any] | None
    violations: tuple[Violation, ...]

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return {"mode": "simulate", "config": self.config.to_dict(), "walks": self.walks,
                "steps": self.steps, "seconds": round(self.seconds, 3),
                "steps_per_second": round(self.steps / self.seconds) if self.seconds else 0,
                "coverage": {k: len(v) for k, v in self.coverage.items()},
                "reference": self.reference,
                "violations": [v.to_json() | {"found_by": v.found_by} for v in self.violations]}


def _walk(config: WorldConfig, seed: int, depth: int) -> tuple[set[Item], int, dict[str, list[Key]]]:
    rng = random.Random(seed)
    drawn = {k for k in Kind if rng.random() < (0.5 if k.fault else 0.8)}
    state = initial(config)
    keys: list[Key] = []
    covered: set[Item] = set()
    for _ in range(depth):
        succ = enabled(config, state)
        if not succ:
            break
        pick = [t for t in succ if t.kind in drawn] or succ
        t = pick[rng.randrange(len(pick))]
        covered |= coverage_of((t,))
        keys.append(t.key)
        state = t.state
        bad = violations(config, state)
        if bad:
            return covered, len(keys), {name: keys for name in bad}
    return covered, len(keys), {}


def _batch(config: WorldConfig, seeds: Sequence[int], depth: int
           ) -> tuple[set[Item], int, dict[str, list[Key]]]:
    covered: set[Item] = set()
    steps = 0
    found: dict[str, list[Key]] = {}
    for seed in seeds:
        c, n, bad = _walk(config, seed, depth)
        covered |= c
        steps += n
        for name, keys in bad.items():
            if name not in found or len(keys) < len(found[name]):
                found[name] = keys
    return covered, steps, found


def reproduces(config: WorldConfig, keys: Sequence[Key], name: str) -> list[Key] | None:
    """The shortest prefix of ``keys`` that replays to a state breaking ``name``, or None."""
    state = initial(config)
    for n, key in enumerate(keys):
        nxt: State | None = None
        for t in enabled(config, state):
            if t.key == key:
                nxt = t.state
                break
        if nxt is None:
            return None
        state = nxt
        if name in violations(config, state):
            return list(keys[: n + 1])
    return None


def shrink(config: WorldConfig, keys: Sequence[Key], name: str) -> list[Key]:
    """Delta-debug ``keys`` to a short list still replaying to a violation of ``name``."""
    best = reproduces(config, keys, name)
    if best is None:
        raise ValueError(f"the steps do not reproduce {name}")
    chunks = 2
    while len(best) >= 2:
        size = max(1, len(best) // chunks)
        for start in range(0, len(best), size):
            shorter = reproduces(config, best[:start] + best[start + size:], name)
            if shorter is not None:
                best = shorter
                chunks = max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(chunks * 2, len(best))
    return best


def _path(config: WorldConfig, keys: Sequence[Key]) -> list[Transition]:
    state = initial(config)
    out = []
    for key in keys:
        t = next(t for t in enabled(config, state) if t.key == key)
        out.append(t)
        state = t.state
    return out


def simulate(config: WorldConfig, *, walks: int = 1000, depth: int = 200, seed: int = 0,
             workers: int = 1, scheduler: Any = None, reference: WorldConfig | None = None
             ) -> SimulationResult:
    """Run ``walks`` seeded swarm walks of up to ``depth`` steps; coverage and shrunk violations."""
    started = time.perf_counter()
    seeds = [seed * 1_000_003 + n for n in range(walks)]
    parts = max(1, workers) * 4
    batches = [seeds[i::parts] for i in range(parts)]
    if scheduler is not None:
        from distributed import Client

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)  # type: ignore[no-untyped-call]
        futures = [client.submit(_batch, config, b, depth, pure=False) for b in batches]
        results = [f.result() for f in futures]
        if client is not scheduler:
            client.close()  # type: ignore[no-untyped-call]
    elif workers > 1:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            results = list(ex.map(_batch, [config] * parts, batches, [depth] * parts))
    else:
        results = [_batch(config, b, depth) for b in batches]
    covered: set[Item] = set()
    steps = 0
    found: dict[str, list[Key]] = {}
    for c, n, bad in results:
        covered |= c
        steps += n
        for name, keys in bad.items():
            if name not in found or len(keys) < len(found[name]):
                found[name] = keys
    shrunk = []
    start = initial(config)
    for name, keys in sorted(found.items()):
        small = shrink(config, keys, name)
        steps_ = steps_of(config, start, _path(config, small))
        shrunk.append(Violation(name, "safety", tuple(steps_), found_by="simulation"))
    seconds = time.perf_counter() - started
    mine = summarize(covered)
    ref_json: dict[str, Any] | None = None
    if reference is not None:
        from sims.check import check

        ref = check(reference, coverage=True, liveness=False, workers=workers, scheduler=scheduler)
        theirs = ref.stats["coverage"]
        ref_json = {"config": reference.to_dict(), "states": ref.states, "complete": ref.complete}
        for key in ("kinds", "machine_pairs"):
            a, b = set(mine[key]), set(theirs[key])
            ref_json[key] = {"walks": len(a), "exhaustive": len(b), "both": len(a & b),
                             "only_walks": sorted(a - b), "only_exhaustive": sorted(b - a)}
    return SimulationResult(config, walks, steps, seconds, mine, ref_json, tuple(shrunk))
