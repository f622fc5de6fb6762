"""Counterexamples: rebuilding a path from stored fingerprints, liveness lassos, replay.

The search stores each state as its fingerprint and its parent's. A path is
rebuilt by walking parents back to the root, then replaying forwards from the
initial state: at each step, of the transitions whose target has the next
fingerprint, the one with the smallest key code (the search's own tie-break).
So the rebuilt states are exactly those the search held, in the world's real
indices (never a permuted representative), and every step is re-judged.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from model.invariants import LIVENESS
from model.world import State, Transition, WorldConfig, enabled, flatten, initial
from sims.check.canon import Canon, key_code
from sims.check.partition import SettledPart
from sims.check.pools import Pool
from sims.check.result import Key, Step, Violation

__all__ = ["bottom_components", "liveness_violations", "path_to", "replay", "steps_of"]


def path_fps(pool: Pool, root: int, fp: int) -> list[int]:
    """Fingerprints from the root's child to ``fp``, asking each owner for parents."""
    out = []
    while fp != root:
        out.append(fp)
        (pfp,) = pool.call(fp % pool.size, "parents", [fp])
        if pfp is None:
            raise AssertionError(f"fingerprint {fp} has no stored parent")
        fp = pfp
    out.reverse()
    return out


def follow(config: WorldConfig, canon: Canon, state: State, target: int) -> Transition:
    """The transition of ``state`` reaching fingerprint ``target`` with the smallest key code."""
    best: Transition | None = None
    best_code = 0
    for t in enabled(config, state):
        if canon.fingerprint(t.state) == target:
            code = key_code(t.key)
            if best is None or code < best_code:
                best, best_code = t, code
    if best is None:
        raise AssertionError("no transition reaches the stored fingerprint (a world that is not "
                             "deterministic, or a fingerprint collision)")
    return best


def path_to(config: WorldConfig, canon: Canon, fps: Sequence[int]) -> list[Transition]:
    """Replay from the initial state through the fingerprints ``fps``."""
    state = initial(config)
    out = []
    for fp in fps:
        t = follow(config, canon, state, fp)
        out.append(t)
        state = t.state
    return out


def steps_of(config: WorldConfig, start: State, path: Sequence[Transition]) -> list[Step]:
    """The path as steps, each with the fields it changed."""
    prev = flatten(config, start)
    steps = []
    for t in path:
        now = flatten(config, t.state)
        changes = tuple((k, v) for k, v in now.items() if prev.get(k) != v)
        changes += tuple((k, "gone") for k in prev if k not in now)
        steps.append(Step(t.kind, t.actor, t.variant, t.args, t.sentence, changes))
        prev = now
    return steps


#: edges converted or compared at a time (bounds the temporary arrays to a few tens of MB)
CHUNK = 1 << 22


def index_dtype(n: int) -> Any:
    """The smallest numpy integer type that numbers ``n`` nodes and one more (int32 mostly)."""
    return np.int32 if n + 1 < 2**31 else np.int64


class SettledGraph:
    """The settled states of every partition, numbered densely, their edges in flat arrays.

    Building it empties ``parts`` (each partition's arrays are dropped once converted), and
    successors are numbered in 32 bits while the graph has fewer than 2**31 states: two
    clients and two replicas settle about 20 M states with 100 M edges, which the older
    build held several times over in 64-bit copies (6.1 GB at peak).
    """

    def __init__(self, parts: list[SettledPart]) -> None:
        def flat(n: int) -> Any:
            chunks = [np.asarray(part[n], dtype=np.int64) for part in parts]
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

        self.fps = flat(0)  #: dense index -> fingerprint
        self._order = np.argsort(self.fps, kind="stable")
        self._sorted = self.fps[self._order]
        n = len(self.fps)
        sizes = [len(part[2]) for part in parts]
        offsets = np.cumsum([0, *sizes[:-1]])
        #: successors of node u: targets[starts[u]:starts[u + 1]], -1 for a state not settled
        self.starts = np.concatenate([np.zeros(1, dtype=np.int64),
                                      *[np.asarray(part[1], dtype=np.int64) + off
                                        for part, off in zip(parts, offsets, strict=True)]])
        self.conv = np.zeros(n, dtype=bool)  #: converged, by dense index
        self.conv[self.dense(flat(3))] = True
        self.undet = np.zeros(n, dtype=np.int64)  #: undetected replicas' mask, by dense index
        self.undet[self.dense(flat(4))] = flat(5)
        self.targets = np.empty(sum(sizes), dtype=index_dtype(n))
        at = 0
        while parts:  # one partition at a time, dropped once its successors are numbered
            raw = parts.pop(0)[2]
            for lo in range(0, len(raw), CHUNK):
                chunk = np.asarray(raw[lo:lo + CHUNK], dtype=np.int64)
                self.targets[at + lo:at + lo + len(chunk)] = self.dense(chunk)
            at += len(raw)
            del raw

    def dense(self, fps: Any) -> Any:
        """The dense index of each fingerprint (-1 for one not settled)."""
        if not len(self._sorted):
            return np.full(len(fps), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, fps), len(self._sorted) - 1)
        return np.where(self._sorted[pos] == fps, self._order[pos], -1)

    def successors(self, u: int) -> list[int]:
        """Node u's successors (dense; -1 where one is not settled)."""
        return [int(v) for v in self.targets[self.starts[u]:self.starts[u + 1]]]

    def index(self, fp: int) -> int:
        """The dense index of a settled state's fingerprint."""
        return int(self.dense(np.array([fp], dtype=np.int64))[0])


def liveness_violations(config: WorldConfig, canon: Canon, pool: Pool, root: int,
                        settled: list[SettledPart], already: set[str]) -> list[Violation]:
    """Bottom components of the settled graph where clients never converge or a death stays unseen.

    Empties ``settled`` (see :class:`SettledGraph`).
    """
    graph = SettledGraph(settled)
    fps, conv, undet = graph.fps, graph.conv, graph.undet
    found: dict[str, tuple[int, set[int]]] = {}
    for dense in bottom_components_dense(len(fps), graph.starts, graph.targets):
        comp = {int(fps[u]) for u in dense}
        entry = min(comp)
        if not conv[dense].any():
            if "convergence" not in found or entry < found["convergence"][0]:
                found["convergence"] = (entry, comp)
        if np.bitwise_and.reduce(undet[dense]) and (
                "detection-bound" not in found or entry < found["detection-bound"][0]):
            found["detection-bound"] = (entry, comp)
    out = []
    start = initial(config)
    for name in LIVENESS:
        if name not in found or name in already:
            continue
        entry, comp = found[name]
        prefix = path_to(config, canon, path_fps(pool, root, entry))
        steps = steps_of(config, start, prefix)
        entry_state = prefix[-1].state if prefix else start
        # The component in fingerprint order, each node's edges in the order the world
        # listed them (the same state is expanded whatever N): networkx's choice of a
        # shortest cycle then depends only on the graph.
        nodes = sorted(comp)
        sub: Any = nx.DiGraph()
        sub.add_nodes_from(nodes)
        sub.add_edges_from((u, int(fps[v])) for u in nodes
                           for v in graph.successors(graph.index(u)) if v >= 0)
        best: list[int] | None = None
        for succ in sorted(sub.successors(entry)):
            path = nx.shortest_path(sub, succ, entry)
            if best is None or len(path) < len(best) + 1:
                best = [entry, *path]
        cycle_steps: list[Step] = []
        if best is not None:
            cur = entry_state
            cyc = []
            for _, v in itertools.pairwise(best):
                t = follow(config, canon, cur, v)
                cyc.append(t)
                cur = t.state
            cycle_steps = steps_of(config, entry_state, cyc)
        out.append(Violation(name, "liveness", tuple(steps), tuple(cycle_steps)))
    return out


def bottom_components(edges: Mapping[int, Sequence[int]]) -> Iterator[set[int]]:
    """The strongly connected components no edge leaves (none reaches a state outside ``edges``)."""
    keys = array("q", edges)
    ends, targets = array("q"), array("q")
    for u in keys:
        targets.extend(edges[u])
        ends.append(len(targets))
    graph = SettledGraph([(keys, ends, targets, array("q"), array("q"), array("q"))])
    for comp in bottom_components_dense(len(graph.fps), graph.starts, graph.targets):
        yield {int(graph.fps[u]) for u in comp}


def bottom_components_dense(n: int, starts: Any, targets: Any) -> Iterator[list[int]]:
    """Bottom components of the graph on nodes 0..n-1 (u's successors: ``targets[starts[u]:
    starts[u + 1]]``, -1 for a node outside it, which no bottom component may reach;
    either array a sequence of ints or a numpy array).

    Strong components come from scipy's compiled Tarjan on a sparse matrix (a Python
    Tarjan spent half a minute on two clients' settled graph); a component is bottom when
    no edge leaves it. Every node outside the graph is one extra node n, which no bottom
    component may reach. Memory beyond the arrays given: the matrix shares ``targets``
    when it is a 32-bit numpy array (outside nodes are renumbered n in place, and back
    after), its values take a byte an edge, and edges are compared in chunks.
    """
    if n == 0:
        return
    st = np.asarray(starts, dtype=np.int64)
    dtype = index_dtype(n)
    tg = np.asarray(targets, dtype=dtype)
    outside = np.flatnonzero(tg < 0)
    tg[outside] = n  # (restored below, when tg is the caller's own array)
    try:
        indptr = np.append(st, st[-1]).astype(dtype)  # node n (outside) has no edges
        # one byte an edge; scipy takes a float64 copy of it while it runs. (A float64
        # matrix given to it as is hangs scipy 1.17's strong components on a node whose
        # edges all lead to the same node: seen with a broadcast and with a real array.)
        ones = np.ones(len(tg), dtype=np.int8)
        graph = csr_matrix((ones, tg, indptr), shape=(n + 1, n + 1))
        count, labels = connected_components(graph, directed=True, connection="strong")
        del graph
        bad = np.zeros(count, dtype=bool)
        bad[labels[n]] = True
        # a component is bad when an edge leaves it: compared a block of nodes at a time
        lo = 0
        while lo < n:
            hi = min(n, int(np.searchsorted(st, st[lo] + CHUNK, side="right")))
            hi = max(hi, lo + 1)
            src = np.repeat(np.arange(lo, hi, dtype=dtype), np.diff(st[lo:hi + 1]))
            dst = tg[st[lo]:st[hi]]
            leaving = labels[src] != labels[dst]
            bad[labels[src[leaving]]] = True
            lo = hi
    finally:
        tg[outside] = -1
    mine = labels[:n]
    keep = np.flatnonzero(~bad[mine])
    if not len(keep):
        return
    order = keep[np.argsort(mine[keep], kind="stable")]
    cuts = np.flatnonzero(np.diff(mine[order])) + 1
    for comp in np.split(order, cuts):
        yield comp.tolist()


def _by_key(config: WorldConfig, state: State, key: Key) -> Transition:
    for t in enabled(config, state):
        if t.key == key:
            return t
    raise AssertionError(f"no transition {key!r} from this state")


def replay(config: WorldConfig, keys: Sequence[Key], *, symmetry: bool = False) -> list[State]:
    """Replay transitions by key (:attr:`Step.key`) from the initial state; return the states.

    Counterexamples are in the world's real indices, so ``symmetry`` changes nothing; it is
    accepted for callers written when traces were of permuted representatives.
    """
    del symmetry
    state = initial(config)
    out = [state]
    for key in keys:
        state = _by_key(config, state, key).state
        out.append(state)
    return out
