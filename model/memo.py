"""What a search may remember of the world between states: each actor's own moves.

A client's own moves (``model.world.CLIENT_ENABLERS``) read only the config, the
client's slot and the database, and change only that slot (and the fault count
and the replay overrun); a replica's own moves (``REPLICA_ENABLERS``) read and
change only the replica (and the fault count), unless its subscriber fans a
resync out to the replica's streams. So a :class:`Memo` computes them once per
distinct (actor, its state, database, fault budget left) and rebuilds each
successor from the remembered part: in the default world 182,051 states share
1,527 client keys. A move is computed on a state that lacks what it may not read
(no replicas for a client, :data:`model.world_shell.DETACHED` clients for a
replica), so one that reads more fails loudly; one that fans out raises
:class:`model.world_shell.FansOut` and is never remembered. The parts of world-wide
moves that touch one actor (Redis delivering an event to one client's streams, one
client's or replica's tick, a replica going down for one client) are remembered the
same way in :class:`model.world_shell.Pieces`, by (part, actor, its state, database,
arguments).

Lookups go by object identity first (a successor shares most objects with its
parent, and the memo hands out the same slot objects again), then by value.
Identity tables hold the objects they key, so an id is not reused while its
entry is kept, and start afresh past :data:`ID_CAP` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from model.world_shell import DETACHED, ID_CAP, FansOut, Pieces, keep
from model.world_state import Arg, ClientSlot, Db, Fed, Kind, Replica, State, Transition, WorldConfig

__all__ = ["ID_CAP", "ActorEnabler", "ClientMove", "Memo", "ReplicaMove", "remember"]

#: The moves of one actor (a client or a replica, by index) in a state.
ActorEnabler = Callable[[WorldConfig, State, int], Iterator[Transition]]
#: One actor's move, as remembered: kind, variant, args, feeds, the actor's new client
#: slot or replica, the faults it spent (and, for a client, the replay overrun it saw).
ClientMove = tuple[Kind, str, tuple[Arg, ...], tuple[Fed, ...], ClientSlot, int, int]
ReplicaMove = tuple[Kind, str, tuple[Arg, ...], tuple[Fed, ...], Replica, int]

V = TypeVar("V")


def remember(table: dict[int, tuple[Any, V]], obj: object, value: V) -> V:
    """Keep ``value`` for ``obj`` in an identity table (holding ``obj``); return it."""
    keep(table, id(obj), (obj, value))
    return value


def _client_moves(cfg: WorldConfig, s: State, i: int,
                  enablers: tuple[ActorEnabler, ...]) -> tuple[ClientMove, ...]:
    """Client i's moves in ``s``, computed without the replicas, publishers and counters."""
    bare = State(s.clients, (), s.db, (), 0, 0, 0)  # what a client move may not read
    return tuple((t.kind, t.variant, t.args, t.feeds, t.state.clients[i], t.state.faults,
                  t.state.overrun)
                 for enabler in enablers for t in enabler(cfg, bare, i))


def _replica_moves(cfg: WorldConfig, s: State, r: int,
                   enablers: tuple[ActorEnabler, ...]) -> tuple[ReplicaMove, ...] | None:
    """Replica r's moves in ``s``, computed without clients; None if one fans out to streams."""
    bare = State(DETACHED, s.replicas, s.db, (), 0, 0, 0)
    try:
        return tuple((t.kind, t.variant, t.args, t.feeds, t.state.replicas[r], t.state.faults)
                     for enabler in enablers for t in enabler(cfg, bare, r))
    except FansOut:
        return None


class Memo:
    """What ``model.world.enabled`` may remember between calls of one search of one world.

    Each client's own moves by (client, slot, db, budget left), each replica's by
    (replica, replica state, db, budget left); None where a replica's move fans out to
    streams and so depends on more. Start a new one when the model's functions change
    (a mutant is swapped in).
    """

    __slots__ = ("by_id", "clients", "judged", "pieces", "replicas", "replicas_by_id", "skipped",
                 "spans", "track_spans")

    def __init__(self) -> None:
        self.clients: dict[tuple[int, ClientSlot, Db, bool], tuple[ClientMove, ...]] = {}
        self.replicas: dict[tuple[int, Replica, Db, bool], tuple[ReplicaMove, ...] | None] = {}
        #: the same client moves by identity: (client, id(slot), id(db), budget) -> ...
        self.by_id: dict[tuple[int, int, int, bool],
                         tuple[ClientSlot, Db, tuple[ClientMove, ...]]] = {}
        #: the same replica moves by identity: (replica, id(replica), id(db), budget) -> ...
        self.replicas_by_id: dict[tuple[int, int, int, bool],
                                  tuple[Replica, Db, tuple[ReplicaMove, ...] | None]] = {}
        #: what model.invariants.violations judged of a client slot alone, by identity
        self.judged: dict[int, tuple[ClientSlot, int]] = {}
        #: what each client's part of a world-wide move gave (model.world_shell.on_client)
        self.pieces = Pieces()
        #: whether :meth:`extend` lists ``spans`` (a search with sleep sets asks for them)
        self.track_spans = False
        #: of the last :meth:`extend` (with ``track_spans``): each remembered actor's moves
        #: listed, in order, as
        #: (actor bit, first index in ``out``, end index);
        #: replica ``r`` is bit ``r``, client ``i`` bit ``replicas + i``; an actor ``skip``
        #: left out is listed with no moves (start == end); a replica whose move fans out
        #: to streams is not remembered and not listed
        self.spans: list[tuple[int, int, int]] = []
        #: of the last :meth:`extend`: how many moves the ``skip`` mask left out
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.clients) + len(self.replicas) + len(self.pieces)

    def extend(self, out: list[Transition], cfg: WorldConfig, s: State, budget: bool,
               replica_own: tuple[ActorEnabler, ...], awake_own: tuple[ActorEnabler, ...],
               asleep_own: tuple[ActorEnabler, ...], skip: int = 0) -> None:
        """Append each replica's, then each client's own moves in ``s`` to ``out``.

        ``skip`` leaves out the remembered moves of the actors whose bits it sets (see
        ``spans``); a replica whose move fans out is never left out.
        """
        clients, replicas, db, pubs, published, faults, overrun = s
        spans: list[tuple[int, int, int]] = []
        track, skipped = self.track_spans, 0
        n_replicas = len(replicas)
        new_tuple = tuple.__new__  # State(...) and Transition(...) without their Python __new__
        known_replicas, replicas_by_id = self.replicas, self.replicas_by_id
        for r, rep in enumerate(replicas):
            rfast = (r, id(rep), id(db), budget)
            rhit = replicas_by_id.get(rfast)
            if rhit is not None and rhit[0] is rep and rhit[1] is db:
                rmoves = rhit[2]
            else:
                rkey = (r, rep, db, budget)
                if rkey in known_replicas:
                    rmoves = known_replicas[rkey]
                else:
                    rmoves = known_replicas[rkey] = _replica_moves(cfg, s, r, replica_own)
                keep(replicas_by_id, rfast, (rep, db, rmoves))
            if rmoves is None:
                for replica_enabler in replica_own:
                    out.extend(replica_enabler(cfg, s, r))
                continue
            if skip >> r & 1:
                skipped += len(rmoves)
                spans.append((r, len(out), len(out)))
                continue
            start = len(out)
            for kind, variant, args, feeds, new_rep, spent in rmoves:
                reps = (*replicas[:r], new_rep, *replicas[r + 1:])
                out.append(new_tuple(Transition, (kind, r, variant, args, feeds, new_tuple(
                    State, (clients, reps, db, pubs, published, faults + spent, overrun)))))
            if track:
                spans.append((r, start, len(out)))
        known_clients, by_id = self.clients, self.by_id
        for i, slot in enumerate(clients):
            fast = (i, id(slot), id(db), budget)
            hit = by_id.get(fast)
            if hit is not None and hit[0] is slot and hit[1] is db:
                moves = hit[2]
            else:
                key = (i, slot, db, budget)
                found = known_clients.get(key)
                if found is None:
                    found = known_clients[key] = _client_moves(
                        cfg, s, i, asleep_own if slot.asleep else awake_own)
                moves = found
                keep(by_id, fast, (slot, db, moves))
            if skip >> (n_replicas + i) & 1:
                skipped += len(moves)
                spans.append((n_replicas + i, len(out), len(out)))
                continue
            start = len(out)
            for kind, variant, args, feeds, new, spent, over in moves:
                after = (*clients[:i], new, *clients[i + 1:])
                out.append(new_tuple(Transition, (kind, i, variant, args, feeds, new_tuple(
                    State, (after, replicas, db, pubs, published, faults + spent,
                            over if over > overrun else overrun)))))
            if track:
                spans.append((n_replicas + i, start, len(out)))
        self.spans, self.skipped = spans, skipped
