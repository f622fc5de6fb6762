"""The exhaustive checker: every interleaving of a bounded world, shortest counterexamples.

How it works.

* **Breadth-first** over :func:`model.world.enabled` from the initial state.
  A state is stored only as its 64-bit hash, the id of the state that first
  reached it and the key of that transition (kind, actor, variant, values), so a
  counterexample is rebuilt by replaying keys from the start, and every
  counterexample is a shortest one.
  Only the current frontier is kept as full states.
* **Safety**: every reached state is judged with :func:`model.invariants.violations`;
  a violating state is recorded (the first, hence shortest, per invariant) and
  not expanded further.
* **Symmetry**: clients are identical, so a state's clients are sorted (by hash)
  before it is stored; ``symmetry=False`` turns that off. A hash tie between two
  different clients only costs reduction, never soundness.
* **Bounds**: ``max_states`` and ``max_depth``; hitting one makes the result
  *incomplete*, which is never reported as a pass.
* **Liveness** (``convergence``, and ``detection-bound`` as "eventually
  detected"): a state from which no fault and no publish can happen any more is
  *settled*; the settled states' edges are kept and handed to networkx. A bottom
  strongly connected component (no edge leaves it) is where a fair run ends up
  forever; if no state in it has every client live and up to date, or a
  replica's subscriber is dead and undetected in all of it, that is a liveness
  violation, reported as a lasso: the shortest path into the component and a
  cycle inside it.

Hash collisions: with 64-bit hashes the chance that two of a million states
collide is about 3e-8; a collision could only hide states, never invent a
counterexample (every trace is replayed and re-judged).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from array import array
from collections.abc import Callable, Collection, Sequence
from typing import Any

import networkx as nx

from model.invariants import INVARIANTS, LIVENESS, SAFETY, converged, undetected, violations
from model.world import Kind, State, Transition, WorldConfig, enabled, flatten, initial

__all__ = ["CheckResult", "Step", "Violation", "check", "replay"]

Key = tuple[Any, ...]  #: Transition.key: (kind, actor, variant, args)


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a counterexample: the transition taken and the fields it changed."""

    kind: Kind
    actor: int
    variant: str
    args: tuple[Any, ...]
    label: str  #: the transition's sentence
    changes: tuple[tuple[str, str], ...]

    @property
    def key(self) -> Key:
        """The transition's key, to replay it (:func:`replay`)."""
        return (self.kind, self.actor, self.variant, self.args)


@dataclasses.dataclass(frozen=True)
class Violation:
    """An invariant broken, with the steps that break it (and the cycle, for liveness)."""

    invariant: str
    kind: str  #: "safety" or "liveness"
    steps: tuple[Step, ...]
    cycle: tuple[Step, ...] = ()

    @property
    def trace(self) -> list[str]:
        """The sentences of the steps, in order."""
        return [s.label for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        """The violation as plain JSON values."""
        out: dict[str, Any] = {"invariant": self.invariant, "kind": self.kind, "trace": self.trace}
        if self.kind == "liveness":
            out["cycle"] = [s.label for s in self.cycle]
        return out


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What a check found and what it cost."""

    config: WorldConfig
    symmetry: bool
    states: int
    transitions: int
    depth: int
    seconds: float
    complete: bool
    incomplete_reason: str | None
    violations: tuple[Violation, ...]
    judged: frozenset[str] = frozenset(i.name for i in INVARIANTS)

    @property
    def invariants(self) -> dict[str, str]:
        """Each invariant's verdict: holds, violated, unknown when incomplete, or not judged."""
        broken = {v.invariant for v in self.violations}
        out = {}
        for info in INVARIANTS:
            if info.name in broken:
                out[info.name] = "violated"
            elif info.name not in self.judged:
                out[info.name] = "not judged"
            else:
                out[info.name] = "holds" if self.complete else "unknown"
        return out

    @property
    def states_per_second(self) -> float:
        """Distinct states found per second of wall time."""
        return self.states / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Complete and nothing violated."""
        return self.complete and not self.violations

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON object ``sselab check --json`` prints."""
        return {
            "fixes": list(self.config.fixes.on()),
            "config": self.config.to_dict() | {"symmetry": self.symmetry},
            "states": self.states,
            "transitions": self.transitions,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "invariants": self.invariants,
            "violations": [v.to_json() for v in self.violations],
        }


def _canon_fn(cfg: WorldConfig, symmetry: bool) -> Callable[[State], State]:
    if not symmetry or cfg.clients < 2:
        return lambda s: s

    def canon(s: State) -> State:
        return s._replace(clients=tuple(sorted(s.clients, key=hash)))

    return canon


def check(
    config: WorldConfig,
    *,
    symmetry: bool = True,
    max_states: int = 3_000_000,
    max_depth: int = 10_000,
    liveness: bool = True,
    stop_at_first: bool = False,
    only: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Explore every interleaving of ``config``'s world within the bounds; return the verdicts.

    ``stop_at_first`` ends the search after the BFS layer with the first violation
    (the result is then incomplete for the other invariants); ``only`` judges just
    those safety invariants (liveness is still judged unless ``liveness=False``).
    """
    if only is not None:
        unknown = set(only) - set(SAFETY)
        if unknown:
            raise ValueError(f"not safety invariants: {sorted(unknown)}; accepted: {', '.join(SAFETY)}")
    judged = set(SAFETY if only is None else only)
    started = time.perf_counter()
    canon = _canon_fn(config, symmetry)
    s0 = canon(initial(config))
    seen: dict[int, int] = {hash(s0): 0}
    parent = array("q", [-1])
    via = array("l", [-1])
    labels: list[Key] = []
    label_ids: dict[Key, int] = {}
    first: dict[str, int] = {}  # invariant -> state id of its first (shortest) violation
    settled_edges: dict[int, list[int]] = {}
    settled_conv: dict[int, bool] = {}
    settled_undetected: dict[int, int] = {}
    transitions = 0
    depth = 0
    incomplete: str | None = None
    frontier: list[tuple[State, int]] = [(s0, 0)]
    replicas = range(config.replicas)
    clients = range(config.clients)

    while frontier:
        if depth >= max_depth:
            incomplete = f"depth bound {max_depth} reached"
            break
        nxt: list[tuple[State, int]] = []
        for state, sid in frontier:
            bad = violations(config, state)
            if bad and only is not None:
                bad = [name for name in bad if name in judged]
            if bad:
                for name in bad:
                    first.setdefault(name, sid)
                continue
            succ = enabled(config, state)
            transitions += len(succ)
            settled = liveness and not any(
                t.state.faults != state.faults or t.state.published != state.published
                or t.state.pubs != state.pubs
                for t in succ
            )
            out_ids: list[int] = []
            for t in succ:
                n = canon(t.state)
                h = hash(n)
                nid = seen.get(h)
                if nid is None:
                    nid = len(parent)
                    seen[h] = nid
                    parent.append(sid)
                    text = t.key
                    lid = label_ids.get(text)
                    if lid is None:
                        lid = label_ids[text] = len(labels)
                        labels.append(text)
                    via.append(lid)
                    nxt.append((n, nid))
                if settled:
                    out_ids.append(nid)
            if settled:
                settled_edges[sid] = out_ids
                settled_conv[sid] = all(converged(config, state, i) for i in clients)
                settled_undetected[sid] = sum(
                    1 << r for r in replicas if undetected(config, state, r))
            if len(parent) > max_states:
                incomplete = f"state bound {max_states:,} reached"
                break
        if incomplete:
            break
        if stop_at_first and first:
            incomplete = "stopped at the first violation"
            break
        frontier = nxt
        if frontier:
            depth += 1
        if progress is not None:
            progress(len(parent), depth)

    explored = time.perf_counter()
    found: list[Violation] = []
    for name in SAFETY:
        if name in first and name in judged:
            steps = _path_steps(config, canon, parent, via, labels, seen, first[name])
            found.append(Violation(name, "safety", tuple(steps)))
    if liveness and incomplete is None:
        found.extend(_liveness(config, canon, parent, via, labels, seen, settled_edges,
                               settled_conv, settled_undetected, {v.invariant for v in found}))
    del explored
    return CheckResult(
        config=config,
        symmetry=symmetry,
        states=len(parent),
        transitions=transitions,
        depth=depth,
        seconds=time.perf_counter() - started,
        complete=incomplete is None,
        incomplete_reason=incomplete,
        violations=tuple(found),
        judged=frozenset(judged | (set(LIVENESS) if liveness else set())),
    )


def _path_ids(parent: Sequence[int], sid: int) -> list[int]:
    path = []
    while sid > 0:
        path.append(sid)
        sid = parent[sid]
    path.reverse()
    return path


def _follow(config: WorldConfig, canon: Callable[[State], State], state: State, key: Key,
            target: int | None) -> Transition:
    """The transition of ``state`` with ``key`` (leading to hash ``target``), canonical state."""
    for t in enabled(config, state):
        if t.key == key:
            n = canon(t.state)
            if target is None or hash(n) == target:
                return t._replace(state=n)
    raise AssertionError(f"no transition {key!r} from this state")


def _states_along(config: WorldConfig, canon: Callable[[State], State], parent: Sequence[int],
                  via: Sequence[int], labels: Sequence[Key], hashes: dict[int, int], sid: int
                  ) -> list[Transition]:
    state = canon(initial(config))
    out = []
    for pid in _path_ids(parent, sid):
        t = _follow(config, canon, state, labels[via[pid]], hashes[pid])
        state = t.state
        out.append(t)
    return out


def _steps(config: WorldConfig, start: State, path: list[Transition]) -> list[Step]:
    prev = flatten(config, start)
    steps = []
    for t in path:
        now = flatten(config, t.state)
        changes = tuple((k, v) for k, v in now.items() if prev.get(k) != v)
        changes += tuple((k, "gone") for k in prev if k not in now)
        steps.append(Step(t.kind, t.actor, t.variant, t.args, t.sentence, changes))
        prev = now
    return steps


def _path_steps(config: WorldConfig, canon: Callable[[State], State], parent: Sequence[int],
                via: Sequence[int], labels: Sequence[Key], seen: dict[int, int], sid: int
                ) -> list[Step]:
    on_path = set(_path_ids(parent, sid))
    hashes = {v: k for k, v in seen.items() if v in on_path}
    path = _states_along(config, canon, parent, via, labels, hashes, sid)
    return _steps(config, canon(initial(config)), path)


def _liveness(config: WorldConfig, canon: Callable[[State], State], parent: Sequence[int],
              via: Sequence[int], labels: Sequence[Key], seen: dict[int, int],
              edges: dict[int, list[int]], conv: dict[int, bool], undet: dict[int, int],
              already: set[str]) -> list[Violation]:
    graph: Any = nx.DiGraph()
    graph.add_nodes_from(edges)
    leaky: set[int] = set()
    for u, outs in edges.items():
        for v in outs:
            if v in edges:
                graph.add_edge(u, v)
            else:
                leaky.add(u)
    found: dict[str, tuple[int, set[int]]] = {}
    for comp in nx.strongly_connected_components(graph):
        if any(u in leaky for u in comp):
            continue
        if any(v not in comp for u in comp for v in graph.successors(u)):
            continue
        entry = min(comp)
        if not any(conv[u] for u in comp):
            if "convergence" not in found or entry < found["convergence"][0]:
                found["convergence"] = (entry, comp)
        dead_all = ~0
        for u in comp:
            dead_all &= undet[u]
        if dead_all and ("detection-bound" not in found or entry < found["detection-bound"][0]):
            found["detection-bound"] = (entry, comp)
    out = []
    for name in LIVENESS:
        if name not in found or name in already:
            continue
        entry, comp = found[name]
        ids = set(_path_ids(parent, entry)) | comp
        hashes = {v: k for k, v in seen.items() if v in ids}
        prefix = _states_along(config, canon, parent, via, labels, hashes, entry)
        start = canon(initial(config))
        steps = _steps(config, start, prefix)
        entry_state = prefix[-1].state if prefix else start
        cycle_steps: list[Step] = []
        sub = graph.subgraph(comp)
        best: list[int] | None = None
        for succ in sub.successors(entry):
            path = nx.shortest_path(sub, succ, entry)
            if best is None or len(path) < len(best) + 1:
                best = [entry, *path]
        if best is not None:
            cur = entry_state
            cyc = []
            for _, v in itertools.pairwise(best):
                for t in enabled(config, cur):
                    n = canon(t.state)
                    if hash(n) == hashes[v]:
                        cyc.append(t._replace(state=n))
                        cur = n
                        break
            cycle_steps = _steps(config, entry_state, cyc)
        out.append(Violation(name, "liveness", tuple(steps), tuple(cycle_steps)))
    return out


def replay(config: WorldConfig, keys: Sequence[Key], *, symmetry: bool = False) -> list[State]:
    """Replay transitions by key (:attr:`Step.key`) from the initial state; return the states."""
    canon = _canon_fn(config, symmetry)
    state = canon(initial(config))
    out = [state]
    for key in keys:
        state = _follow(config, canon, state, key, None).state
        out.append(state)
    return out
