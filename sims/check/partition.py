"""One partition of the search: the states whose fingerprints it owns, and the frontier it holds.

A search with ``N`` partitions gives each the fingerprints ``fp % N == index``.
A partition is a plain object driven level by level by :mod:`sims.check.search`
through a pool (in this process, in worker processes, or as Dask actors), so
the same code runs everywhere:

1. :meth:`Partition.expand` judges every state of its frontier (a violating
   state is recorded and not expanded), asks the world for its transitions and
   fingerprints their targets. A target it owns and has seen is dropped at once;
   every other one becomes a *candidate* ``(fp, parent fp)``, at most one per
   fingerprint: the one with the smallest parent, and among a parent's
   transitions the smallest key code (:func:`sims.check.canon.key_code`); its
   state is kept here until the owner rules. Candidates go to their owners.
2. :meth:`Partition.claim` (the owner) drops candidates it has seen and, of those
   left, keeps for each fingerprint the one with the smallest parent (a parent is
   expanded by one partition only, so there are no further ties): the BFS tree,
   and with it every counterexample, is the same whatever ``N`` and whatever
   order messages arrive in.
3. :meth:`Partition.keep` (the generator) drops the states that lost and sends
   the new ones to their owners (:meth:`Partition.receive`), which expand them
   next: so the work spreads over the partitions.

Fingerprints travel between partitions, and each new state once, to its owner.
"""

from __future__ import annotations

import itertools
import pickle
import resource
import sys
from array import array
from typing import Any

import numpy as np

from model.invariants import converged, undetected, violations
from model.world import Kind, Memo, State, Transition, WorldConfig, enabled, initial
from sims.check.canon import Canon, key_code
from sims.check.coverage import coverage_of

__all__ = ["LevelReport", "Partition", "SettledPart", "peak_kb"]

#: what expand() returns: candidates per owner (fingerprint, parent fingerprint, ... flat, so
#: they pickle as bytes), transitions taken, states judged violating, what reductions spared
LevelReport = tuple[list["array[int]"], int, dict[str, int], dict[str, int]]


#: what a partition hands over of its settled states (:meth:`Partition.settled`): their
#: fingerprints, where each one's successors end in the next array, the successors, the
#: converged ones, and those with a dead, undetected link with their masks; flat arrays
#: pickle as bytes (a dict of millions of arrays took seconds each way)
SettledPart = tuple["array[int]", "array[int]", "array[int]", "array[int]", "array[int]",
                    "array[int]"]


#: the kinds that keep a state from being settled: a fault, or a publisher's step
_UNSETTLING = frozenset(k for k in Kind if k.fault or k is Kind.PUBLISH)


def peak_kb() -> int:
    """This process's peak resident memory, in kB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Partition:
    """The states one worker owns (and each one's parent fingerprint) and the frontier it holds."""

    def __init__(self, index: int, count: int, config: WorldConfig, options: dict[str, Any]) -> None:
        self.index = index
        self.count = count
        self.config = config
        self.canon = Canon(config, clients=options.get("client_symmetry", True),
                           replicas=options.get("replica_symmetry", True),
                           dead=options.get("dead_fields", True))
        self.coverage: set[tuple[str, ...]] | None = set() if options.get("coverage") else None
        self.liveness: bool = options.get("liveness", True)
        only = options.get("only")
        self.only: frozenset[str] | None = frozenset(only) if only is not None else None
        #: owned fingerprints; and, in the order they were stored, each one and its parent's
        #: (the root's is itself): a set and two flat arrays take about a third less than a
        #: dict of int to int, and parents are looked up only to rebuild a counterexample
        self.seen: set[int] = set()
        self.stored: array[int] = array("q")
        self.stored_parents: array[int] = array("q")
        self.frontier: list[tuple[int, State]] = []
        self.pending: dict[int, tuple[int, Transition]] = {}  #: candidate -> (parent, move)
        #: the settled states (flat: 8 bytes a state or an edge): each one, where its
        #: successors end in ``edge_targets``, and those successors
        self.edge_keys: array[int] = array("q")
        self.edge_ends: array[int] = array("q")
        self.edge_targets: array[int] = array("q")
        self.conv: array[int] = array("q")  #: settled states where every client has converged
        #: settled states with a dead, undetected link, and which (a mask)
        self.undet_keys: array[int] = array("q")
        self.undet_masks: array[int] = array("q")
        self.memo = Memo()  #: each client's and replica's own moves (model.world.enabled)
        self._parts: dict[Any, Any] = {}  #: each client slot, replica, db, pubs seen: itself

    def start(self) -> int:
        """Seed the initial state if this partition owns it; return its fingerprint."""
        s0 = initial(self.config)
        fp = self.canon.fingerprint(s0)
        if fp % self.count == self.index:
            self.seen.add(fp)
            self.stored.append(fp)
            self.stored_parents.append(fp)
            self.frontier = [(fp, s0)]
        return fp

    def expand(self) -> LevelReport:
        """Judge and expand the frontier; return the candidates for each owner."""
        cfg = self.config
        fingerprint = self.canon.fingerprint
        count, seen, pending = self.count, self.seen, self.pending
        only, liveness = self.only, self.liveness
        memo = self.memo
        unsettling = _UNSETTLING
        clients = range(cfg.clients)
        replicas = range(cfg.replicas)
        sym_replicas = self.canon.replica_symmetry
        bad_first: dict[str, int] = {}
        spared: dict[str, int] = {}  # what a reduction spared (none yet beyond symmetry)
        transitions = 0
        for fp, state in self.frontier:
            bad = violations(cfg, state, memo)
            if bad and only is not None:
                bad = [name for name in bad if name in only]
            if bad:
                for name in bad:
                    if name not in bad_first or fp < bad_first[name]:
                        bad_first[name] = fp
                continue
            succ = enabled(cfg, state, memo)
            settled = liveness and not any(t.kind in unsettling for t in succ)
            if self.coverage is not None:
                self.coverage.update(coverage_of(succ))
            transitions += len(succ)
            outs: list[int] = []
            for t in succ:
                nfp = fingerprint(t[5])  # t.state
                if settled:
                    outs.append(nfp)
                if nfp in seen:
                    continue
                cur = pending.get(nfp)
                if cur is None:
                    pending[nfp] = (fp, t)
                elif cur[0] == fp and key_code(t.key) < key_code(cur[1].key):
                    # the frontier is in fingerprint order, so only a sibling can win a tie
                    pending[nfp] = (fp, t)
            if settled:
                self.edge_keys.append(fp)
                self.edge_targets.extend(outs)
                self.edge_ends.append(len(self.edge_targets))
                if all(converged(cfg, state, i) for i in clients):
                    self.conv.append(fp)
                mask = sum(1 << r for r in replicas if undetected(cfg, state, r))
                if mask:
                    # Under replica symmetry a representative's replica numbering is arbitrary:
                    # judge "some replica undetected" (sound: see the essay, Liveness).
                    self.undet_keys.append(fp)
                    self.undet_masks.append(1 if sym_replicas else mask)
        self.frontier = []
        out: list[array[int]] = [array("q") for _ in range(count)]
        if count == 1:  # its own owner: every pending state is new, and wins
            seen.update(pending)
            self.stored.extend(pending)
            self.stored_parents.extend([pfp for pfp, _ in pending.values()])
            self.frontier = sorted(((nfp, t.state) for nfp, (_, t) in pending.items()),
                                   key=lambda item: item[0])
            self.pending = {}
            return out, transitions, bad_first, spared
        for nfp, (pfp, _) in pending.items():
            out[nfp % count].extend((nfp, pfp))
        return out, transitions, bad_first, spared

    def claim(self, batches: list[tuple[int, array[int]]]) -> list[array[int]]:
        """As owner: rule on candidates ``(generator, [fp, parent, ...])``; winners per generator.

        A parent is expanded by one generator only, so the smallest parent decides.
        """
        seen = self.seen
        best: dict[int, tuple[int, int]] = {}
        for gen, flat in batches:
            it = iter(flat)
            for fp, pfp in zip(it, it, strict=True):
                if fp in seen:
                    continue
                cur = best.get(fp)
                if cur is None or pfp < cur[0]:
                    best[fp] = (pfp, gen)
        won: list[array[int]] = [array("q") for _ in range(self.count)]
        for fp, (_, gen) in best.items():
            won[gen].append(fp)
        seen.update(best)
        self.stored.extend(best)
        self.stored_parents.extend([pfp for pfp, _ in best.values()])
        return won

    def keep(self, fps: list[array[int]]) -> list[bytes]:
        """As generator: keep the won states this partition owns; return the rest per owner.

        Shipping each new state to its owner spreads the frontier: without it, the
        partition holding the root would expand every state itself. They travel
        pickled, so whoever forwards them (the coordinator) never unpickles a state.
        """
        count = self.count
        if count == 1:
            return [b""]
        out: list[list[tuple[int, State]]] = [[] for _ in range(count)]
        pending = self.pending
        mine: list[tuple[int, State]] = []
        for batch in fps:
            for fp in batch:
                owner = fp % count
                (mine if owner == self.index else out[owner]).append((fp, pending[fp][1].state))
        self.frontier = mine
        self.pending = {}
        return [pickle.dumps(batch, pickle.HIGHEST_PROTOCOL) if batch else b"" for batch in out]

    def receive(self, batches: list[bytes]) -> tuple[int, int]:
        """As owner: take the states shipped to it (the frontier in fingerprint order).

        Returns the frontier's size and this process's peak resident memory in kB.
        """
        if self.count > 1:
            intern = self._intern
            for blob in batches:
                if blob:
                    self.frontier.extend((fp, intern(st)) for fp, st in pickle.loads(blob))
            self.frontier.sort(key=lambda item: item[0])
        return len(self.frontier), peak_kb()

    def _intern(self, s: State) -> State:
        """The same state made of this partition's own part objects, where it has them.

        A state that arrives pickled is made of new objects; the memo and the fingerprint
        look parts up by identity first, so each part is swapped for the equal one seen
        before (looked up by value once, here).
        """
        parts = self._parts
        clients, replicas, db, pubs, published, faults, overrun = s
        return tuple.__new__(State, (
            tuple([parts.setdefault(c, c) for c in clients]),
            tuple([parts.setdefault(r, r) for r in replicas]),
            parts.setdefault(db, db), parts.setdefault(pubs, pubs), published, faults, overrun))

    def covered(self) -> set[tuple[str, ...]]:
        """Transition kinds and machine (state, input) pairs this partition's expansions took."""
        return self.coverage or set()

    def owned(self) -> int:
        """How many states this partition owns."""
        return len(self.seen)

    def parents(self, fps: list[int]) -> list[int | None]:
        """The parent fingerprint of each owned fingerprint (None when not owned)."""
        out: list[int | None] = []
        # a view of the array, which cannot grow while one exists: dropped on the way out
        keys = np.frombuffer(self.stored, dtype=np.int64)
        try:
            for fp in fps:
                if fp not in self.seen:
                    out.append(None)
                    continue
                at = int(np.flatnonzero(keys == fp)[0])
                out.append(self.stored_parents[at])
        finally:
            del keys
        return out

    def settled(self) -> SettledPart:
        """The settled part of the graph this partition expanded (see ``SettledPart``)."""
        return (self.edge_keys, self.edge_ends, self.edge_targets, self.conv, self.undet_keys,
                self.undet_masks)

    def memory(self) -> dict[str, int]:
        """Peak resident memory of this process and the bytes its stored states take."""
        seen = self.seen
        sample = list(itertools.islice(seen, 1000))
        per_int = sum(sys.getsizeof(k) for k in sample) / max(1, len(sample))
        arrays = sum(a.buffer_info()[1] * a.itemsize for a in (self.stored, self.stored_parents))
        stored = sys.getsizeof(seen) + int(per_int * len(seen)) + arrays
        return {"peak_kb": peak_kb(), "stored_bytes": stored, "stored_states": len(seen)}
