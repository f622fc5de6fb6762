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
from collections.abc import Callable
from typing import Any

import numpy as np

from model.invariants import converged, undetected, violations
from model.memo import remember
from model.world import Kind, Memo, State, Transition, WorldConfig, enabled, initial
from sims.check.canon import Canon, key_code
from sims.check.coverage import coverage_of

__all__ = ["LevelReport", "Partition", "Parts", "SettledPart", "peak_kb"]

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


#: how many of the newest levels' fingerprints a partition keeps in a set (the rest sorted)
HOT_LEVELS = 3


def _sleep_sets(succ: list[Transition], spans: list[tuple[int, int, int]],
                asleep: int) -> list[int] | None:
    """Each of a state's transitions' sleep set for its target (actor bits), or None if all empty.

    ``asleep`` is the state's own sleep set, ``spans`` its actors' own moves
    (``Memo.spans``). A move of an actor's own passes on every other actor that is
    asleep here or listed before it: each reads and changes only its actor (and the
    database, which no such move writes), so the two commute, and neither disables the
    other, except that a fault may spend the last of the budget: then the other actor's
    faults are disabled for good (the budget only falls), so asleep they are not missed.
    World-wide moves pass on nothing.
    """
    if len(spans) < 2:
        return None
    out = [0] * len(succ)
    local = 0
    for span in spans:
        local |= 1 << span[0]
    asleep &= local
    prefix = 0  # the actors listed before, whose moves were taken here
    for bit, start, end in spans:
        z = (prefix | asleep) & ~(1 << bit)
        if z:
            for j in range(start, end):
                out[j] = z
        if not asleep >> bit & 1:
            prefix |= 1 << bit
    return out


class Store:
    """The fingerprints a partition owns and each one's parent: a set for the newest levels,
    one sorted pair of numpy arrays for the rest.

    In breadth-first order almost every transition that reaches a found state reaches
    the level being built or one of the last few (two clients, two replicas, two
    publishers: 99.85 % within three stored levels, ``benchmarks/levels.py --gaps``), so
    those answer from a set as the states are expanded; the candidates
    left are looked up in the sorted arrays once per level, together (:meth:`unseen`). A
    state held there takes 16 bytes, against about 90 in a set of ints and two flat arrays.
    """

    def __init__(self, hot_levels: int = HOT_LEVELS) -> None:
        if hot_levels < 1:
            raise ValueError(f"hot_levels must be at least 1, got {hot_levels}")
        self.hot_levels = hot_levels
        self.hot: set[int] = set()  #: the newest levels' fingerprints
        #: the newest levels, oldest first: each one's fingerprints and their parents
        self.levels: list[tuple[array[int], array[int]]] = []
        self.cold = np.zeros(0, dtype=np.int64)  #: the older ones' fingerprints, sorted
        self.cold_parents = np.zeros(0, dtype=np.int64)  #: and their parents, aligned

    def __len__(self) -> int:
        return len(self.hot) + len(self.cold)

    def add_level(self, fps: array[int], parents: array[int]) -> None:
        """Store a level's new fingerprints (none stored before) and their parents."""
        self.hot.update(fps)
        self.levels.append((fps, parents))
        while len(self.levels) > self.hot_levels:
            old, old_parents = self.levels.pop(0)
            if not old:
                continue
            self.hot.difference_update(old)
            keys = np.array(old, dtype=np.int64)
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            at = np.searchsorted(self.cold, keys)
            self.cold = np.insert(self.cold, at, keys)
            self.cold_parents = np.insert(self.cold_parents,
                                          at, np.array(old_parents, dtype=np.int64)[order])

    def unseen(self, keys: Any) -> Any:
        """Which of ``keys`` (an int64 array, none in the newest levels) are not stored."""
        cold = self.cold
        if not len(cold):
            return np.ones(len(keys), dtype=bool)
        at = np.minimum(np.searchsorted(cold, keys), len(cold) - 1)
        return cold[at] != keys

    def parents(self, fps: list[int]) -> list[int | None]:
        """The parent fingerprint of each stored fingerprint (None when not stored)."""
        out: list[int | None] = []
        for fp in fps:
            if fp in self.hot:
                for keys, parents in self.levels:  # scanned: only a counterexample asks
                    if fp in keys:
                        out.append(parents[keys.index(fp)])
                        break
                continue
            at = int(np.searchsorted(self.cold, fp))
            found = at < len(self.cold) and int(self.cold[at]) == fp
            out.append(int(self.cold_parents[at]) if found else None)
        return out

    def nbytes(self) -> int:
        """Bytes the stored fingerprints and parents take."""
        sample = list(itertools.islice(self.hot, 1000))
        per_int = sum(sys.getsizeof(k) for k in sample) / max(1, len(sample))
        levels = sum(a.buffer_info()[1] * a.itemsize for level in self.levels for a in level)
        return (sys.getsizeof(self.hot) + int(per_int * len(self.hot)) + levels
                + self.cold.nbytes + self.cold_parents.nbytes)


def _row(s: State, code: Callable[[Any], int]) -> list[int]:
    """The state as a row, each part numbered by ``code``."""
    clients, replicas, db, pubs, published, faults, overrun = s
    return [*[code(c) for c in clients], *[code(r) for r in replicas], code(db), code(pubs),
            published, faults, overrun]


class Parts:
    """Every distinct part (client slot, replica, database, publishers) a partition's states
    are made of, numbered: a held state is then a row of small ints, 8 bytes a field.

    A state held as Python objects took about 420 bytes on the frontier (two clients), and
    more in the pending table, its transition with it; as a row it takes
    ``8 * (clients + replicas + 5)``.
    Decoding hands out the numbered objects themselves, so the memo and the fingerprint,
    which look parts up by identity first, find them.
    """

    __slots__ = ("by_id", "by_value", "objs")

    def __init__(self) -> None:
        self.objs: list[Any] = []  #: code -> the part
        self.by_value: dict[Any, int] = {}  #: part -> code
        self.by_id: dict[int, tuple[Any, int]] = {}  #: id(part) -> (part, code), capped

    def code(self, obj: Any) -> int:
        """The part's number: by identity, then by value (numbering it if new)."""
        hit = self.by_id.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        return remember(self.by_id, obj, self.number(obj))

    def number(self, obj: Any) -> int:
        """The part's number, looked up by value (numbering it if new)."""
        code = self.by_value.get(obj)
        if code is None:
            code = self.by_value[obj] = len(self.objs)
            self.objs.append(obj)
        return code

    def row(self, s: State) -> list[int]:
        """The state as a row: its clients', replicas', database's and publishers' numbers,
        then its counters."""
        return _row(s, self.code)

    def adopt(self, s: State) -> list[int]:
        """The row of a state made of objects never seen before (one that arrived pickled):
        numbered by value, and not remembered by identity, since they are dropped after."""
        return _row(s, self.number)

    def state(self, rows: array[int], at: int, clients: int, replicas: int) -> State:
        """The state whose row starts at ``rows[at]``, made of the numbered parts."""
        objs = self.objs
        mid = at + clients
        end = mid + replicas
        return tuple.__new__(State, (
            tuple([objs[j] for j in rows[at:mid]]), tuple([objs[j] for j in rows[mid:end]]),
            objs[rows[end]], objs[rows[end + 1]], rows[end + 2], rows[end + 3], rows[end + 4]))


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
        self.sleep: bool = options.get("sleep_sets", False)
        only = options.get("only")
        self.only: frozenset[str] | None = frozenset(only) if only is not None else None
        #: owned fingerprints and each one's parent (the root's is itself)
        self.store = Store(HOT_LEVELS)
        self.parts = Parts()
        #: a held state's row: clients, replicas, db, publishers, then three counters
        self.width = config.clients + config.replicas + 5
        #: the frontier, in fingerprint order: each state's fingerprint and its row
        self.frontier_fps: array[int] = array("q")
        self.frontier_rows: array[int] = array("q")
        #: each frontier state's sleep set: the canonical places (``Canon.places``) of the
        #: actors whose own moves it need not take (see the essay, Sleep sets)
        self.frontier_masks: array[int] = array("q")
        #: this level's candidates: fingerprint -> its number here, and by that number its
        #: parent's fingerprint and its state's row (until the owner rules)
        self.pending: dict[int, int] = {}
        self.pending_parents: array[int] = array("q")
        self.pending_rows: array[int] = array("q")
        self.pending_masks: array[int] = array("q")  #: and its sleep set so far
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
        self.memo.track_spans = self.sleep

    def start(self) -> int:
        """Seed the initial state if this partition owns it; return its fingerprint."""
        s0 = initial(self.config)
        fp = self.canon.fingerprint(s0)
        mine = fp % self.count == self.index
        self.store.add_level(array("q", [fp] if mine else []), array("q", [fp] if mine else []))
        if mine:
            self.frontier_fps = array("q", [fp])
            self.frontier_rows = array("q", self.parts.row(s0))
            self.frontier_masks = array("q", [0])
        return fp

    def expand(self) -> LevelReport:
        """Judge and expand the frontier; return the candidates for each owner."""
        cfg = self.config
        fingerprint = self.canon.fingerprint
        count, seen, pending = self.count, self.store.hot, self.pending
        parents, cand_rows, cand_masks = self.pending_parents, self.pending_rows, self.pending_masks
        row, decode = self.parts.row, self.parts.state
        w, n_clients, n_replicas = self.width, cfg.clients, cfg.replicas
        rows, masks = self.frontier_rows, self.frontier_masks
        only, liveness, sleep = self.only, self.liveness, self.sleep
        places = self.canon.places
        memo = self.memo
        unsettling = _UNSETTLING
        clients = range(cfg.clients)
        replicas = range(cfg.replicas)
        sym_replicas = self.canon.replica_symmetry
        bad_first: dict[str, int] = {}
        spared: dict[str, int] = {}  # what a reduction spared: moves the sleep sets left out
        transitions = slept = 0
        for i, fp in enumerate(self.frontier_fps):
            state = decode(rows, i * w, n_clients, n_replicas)
            bad = violations(cfg, state, memo)
            if bad and only is not None:
                bad = [name for name in bad if name in only]
            if bad:
                for name in bad:
                    if name not in bad_first or fp < bad_first[name]:
                        bad_first[name] = fp
                continue
            skip = 0
            if masks[i]:  # its sleep set, from canonical places to this state's actors
                fingerprint(state)
                asleep = masks[i]
                skip = sum(1 << a for a, place in enumerate(places())
                           if place >= 0 and asleep >> place & 1)
            succ = enabled(cfg, state, memo, skip)
            settled = liveness and not any(t.kind in unsettling for t in succ)
            if skip:
                if settled:  # a settled state is expanded in full: liveness reads its edges
                    succ = enabled(cfg, state, memo)
                    settled = not any(t.kind in unsettling for t in succ)
                else:
                    slept += memo.skipped
            sleeps = _sleep_sets(succ, memo.spans, skip) if sleep else None
            if self.coverage is not None:
                self.coverage.update(coverage_of(succ))
            transitions += len(succ)
            outs: list[int] = []
            first = len(parents)  # the candidates numbered from here on are this state's
            mine: list[Transition] = []
            for j, t in enumerate(succ):
                nfp = fingerprint(t[5])  # t.state
                if settled:
                    outs.append(nfp)
                if nfp in seen:
                    continue
                zs = 0
                if sleeps is not None and sleeps[j]:  # to canonical places, numbering-free
                    z = sleeps[j]
                    for a, place in enumerate(places()):
                        if place >= 0 and z >> a & 1:
                            zs |= 1 << place
                at = pending.get(nfp)
                if at is None:
                    pending[nfp] = len(parents)
                    parents.append(fp)
                    cand_rows.extend(row(t[5]))
                    cand_masks.append(zs)
                    mine.append(t)
                    continue
                if sleep:
                    cand_masks[at] &= zs  # sound for every edge in: the intersection
                if at >= first and key_code(t.key) < key_code(mine[at - first].key):
                    # a sibling's: the frontier is in fingerprint order, so a candidate numbered
                    # before this state's first came from a smaller parent, which wins
                    cand_rows[at * w:(at + 1) * w] = array("q", row(t[5]))
                    mine[at - first] = t
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
        if slept:
            spared["sleep_sets"] = slept
        self.frontier_fps, self.frontier_rows = array("q"), array("q")
        self.frontier_masks = array("q")
        out: list[array[int]] = [array("q") for _ in range(count)]
        if count == 1:  # its own owner: every pending state not stored long ago is new, and wins
            fps = array("q", pending)  # in the order they were numbered
            keys = np.frombuffer(fps, dtype=np.int64)
            new = self.store.unseen(keys)
            if not new.all():
                fps = array("q", keys[new].tobytes())
                parents = array("q", np.frombuffer(parents, dtype=np.int64)[new].tobytes())
                cand_rows = array("q", np.frombuffer(cand_rows, dtype=np.int64)
                                  .reshape(-1, w)[new].tobytes())
                cand_masks = array("q", np.frombuffer(cand_masks, dtype=np.int64)[new].tobytes())
            del keys  # a view of ``fps``, which could not grow while it exists
            self.store.add_level(fps, parents)
            self._hold(fps, cand_rows, cand_masks)
            self._forget_pending()
            return out, transitions, bad_first, spared
        for nfp, at in pending.items():
            out[nfp % count].extend((nfp, parents[at], cand_masks[at]))
        return out, transitions, bad_first, spared

    def _forget_pending(self) -> None:
        self.pending = {}
        self.pending_parents = array("q")
        self.pending_rows = array("q")
        self.pending_masks = array("q")

    def _hold(self, fps: array[int], rows: array[int], masks: array[int]) -> None:
        """Make ``fps`` (with their rows and sleep sets, in the same order) the frontier, in
        fingerprint order."""
        if not fps:
            return
        keys = np.frombuffer(fps, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.frontier_fps = array("q", keys[order].tobytes())
        self.frontier_rows = array("q", np.frombuffer(rows, dtype=np.int64)
                                   .reshape(-1, self.width)[order].tobytes())
        self.frontier_masks = array("q", np.frombuffer(masks, dtype=np.int64)[order].tobytes())
        del keys  # numpy views of the arrays, which could not grow while they exist

    def claim(self, batches: list[tuple[int, array[int]]]) -> list[array[int]]:
        """As owner: rule on candidates ``(generator, [fp, parent, sleep set, ...])``; winners per
        generator, each with the intersection of its candidates' sleep sets.

        A parent is expanded by one generator only, so the smallest parent decides.
        """
        seen = self.store.hot
        best: dict[int, tuple[int, int, int]] = {}
        for gen, flat in batches:
            it = iter(flat)
            for fp, pfp, zs in zip(it, it, it, strict=True):
                if fp in seen:
                    continue
                cur = best.get(fp)
                if cur is None:
                    best[fp] = (pfp, gen, zs)
                elif pfp < cur[0]:
                    best[fp] = (pfp, gen, zs & cur[2])
                elif zs & cur[2] != cur[2]:
                    best[fp] = (cur[0], cur[1], zs & cur[2])
        won: list[array[int]] = [array("q") for _ in range(self.count)]
        fps, parents = array("q"), array("q")
        new = self.store.unseen(np.array(list(best), dtype=np.int64)).tolist() if best else []
        for (fp, (pfp, gen, zs)), fresh in zip(best.items(), new, strict=True):
            if fresh:  # not stored in an older level either
                won[gen].extend((fp, zs))
                fps.append(fp)
                parents.append(pfp)
        self.store.add_level(fps, parents)
        return won

    def keep(self, fps: list[array[int]]) -> list[bytes]:
        """As generator: keep the won states this partition owns; return the rest per owner.

        Shipping each new state to its owner spreads the frontier: without it, the
        partition holding the root would expand every state itself. They travel
        pickled (as states: a row's numbers are this partition's own), so whoever
        forwards them (the coordinator) never unpickles a state.
        """
        count = self.count
        if count == 1:
            return [b""]
        w, n, r = self.width, self.config.clients, self.config.replicas
        pending, rows, decode = self.pending, self.pending_rows, self.parts.state
        out: list[list[tuple[int, State, int]]] = [[] for _ in range(count)]
        mine_fps: array[int] = array("q")
        mine_rows: array[int] = array("q")
        mine_masks: array[int] = array("q")
        for batch in fps:
            it = iter(batch)
            for fp, zs in zip(it, it, strict=True):
                owner = fp % count
                at = pending[fp] * w
                if owner == self.index:
                    mine_fps.append(fp)
                    mine_rows.extend(rows[at:at + w])
                    mine_masks.append(zs)
                else:
                    out[owner].append((fp, decode(rows, at, n, r), zs))
        self.frontier_fps, self.frontier_rows = mine_fps, mine_rows
        self.frontier_masks = mine_masks
        self._forget_pending()
        return [pickle.dumps(batch, pickle.HIGHEST_PROTOCOL) if batch else b"" for batch in out]

    def receive(self, batches: list[bytes]) -> tuple[int, int]:
        """As owner: take the states shipped to it (the frontier in fingerprint order).

        Returns the frontier's size and this process's peak resident memory in kB.
        """
        if self.count > 1:
            fps, rows, masks = self.frontier_fps, self.frontier_rows, self.frontier_masks
            adopt = self.parts.adopt  # they arrive as new objects: numbered by value, once
            for blob in batches:
                if blob:
                    for fp, st, zs in pickle.loads(blob):
                        fps.append(fp)
                        rows.extend(adopt(st))
                        masks.append(zs)
            self.frontier_fps, self.frontier_rows = array("q"), array("q")
            self.frontier_masks = array("q")
            self._hold(fps, rows, masks)
        return len(self.frontier_fps), peak_kb()

    def covered(self) -> set[tuple[str, ...]]:
        """Transition kinds and machine (state, input) pairs this partition's expansions took."""
        return self.coverage or set()

    def owned(self) -> int:
        """How many states this partition owns."""
        return len(self.store)

    def parents(self, fps: list[int]) -> list[int | None]:
        """The parent fingerprint of each owned fingerprint (None when not owned)."""
        return self.store.parents(fps)

    def settled(self) -> SettledPart:
        """The settled part of the graph this partition expanded (see ``SettledPart``), handed
        over: the partition lets go of it (the search is over when it is asked)."""
        out = (self.edge_keys, self.edge_ends, self.edge_targets, self.conv, self.undet_keys,
               self.undet_masks)
        self.edge_keys, self.edge_ends, self.edge_targets = array("q"), array("q"), array("q")
        self.conv, self.undet_keys, self.undet_masks = array("q"), array("q"), array("q")
        return out

    def memory(self) -> dict[str, int]:
        """Peak resident memory of this process and the bytes its stored states take."""
        return {"peak_kb": peak_kb(), "stored_bytes": self.store.nbytes(),
                "stored_states": len(self.store)}
