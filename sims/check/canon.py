"""The checker's canonical encoding of world states: stable 64-bit fingerprints.

What it owns. How a :class:`model.world.State` is turned into the one integer
the checker stores, and which states count as the same under symmetry. The
world knows nothing of this; the encoding is the checker's business.

Rules.

* **Stable everywhere.** A fingerprint is ``hash()`` of a nested tuple of ints
  and floats only, whose hashes CPython computes without the per-process
  string salt; enum members become their index in their class, strings a
  BLAKE2 digest, ``None`` a fixed constant. So two processes, forked or
  spawned, or two Dask workers on other machines (same CPython, 64-bit) give
  the same fingerprint for the same state. ``hash()`` of the world's own
  objects is never used: its enums hash by identity.
* **Generic.** The encoder walks NamedTuples, tuples, frozen dataclasses,
  enums, ints, bools, floats, strings and ``None``, whatever their fields, so
  a new field or a new machine state needs no change here. A type it does not
  know raises :class:`TypeError` naming it.
* **Interned.** Each distinct client slot, replica and "rest of the world"
  (every other field of the state) is encoded once and remembered by value, so
  a successor that shares most of its parts with its parent costs a few dict
  lookups and one small tuple hash.
* **Symmetry.** Clients are interchangeable, and so are replicas. With client
  symmetry the clients' codes are sorted. With replica symmetry the replicas
  are put in the order of their own codes (a replica holds no replica index, so
  its code is the same whatever the numbering), every field named ``replica``
  anywhere in the state (e.g. ``Stream.replica``) is renamed to match, -1
  staying -1, and where replicas are equal (a tie) every permutation among them
  is tried and the smallest clients kept. That is a function of the state's
  orbit: two states that differ only by numbering get the same fingerprint.
  A field that holds a *client* index would need the same treatment; none
  exists today.
* **Dead fields.** A few fields the world carries are never read by a move, a
  machine step or an invariant, or are read only up to a renaming; two states that
  differ only there have the same futures and the same verdicts, so they get one
  fingerprint (``dead=False`` keeps them apart). :func:`forget_replica` and
  :func:`forget_slot` say which and why; ``tests/check/test_reductions.py`` checks
  on every reached state of several worlds that forgetting commutes with every
  move and keeps every invariant's verdict.
* **Identity first.** A successor shares most of its parts with its parent (and
  the world's memo hands out the same slot objects again), so each part's code
  is looked up by object identity before it is hashed by value.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

from model.memo import remember
from model.world import ClientSlot, Replica, State, StreamPhase, WorldConfig

__all__ = ["Canon", "encode", "forget_replica", "forget_slot", "key_code", "stable_str"]

_NONE = -0x5EED_0000_0000_0001  #: None's code, unlike any small int the world uses
Perm = tuple[int, ...]  #: old replica index -> new replica index
Encoder = Callable[[Any, Perm], Any]
_ENCODERS: dict[type, Encoder] = {}
_STR: dict[str, int] = {}


def stable_str(text: str) -> int:
    """A string's 63-bit code, the same in every process (``hash(str)`` is salted)."""
    code = _STR.get(text)
    if code is None:
        code = _STR[text] = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(),
                                           "big") >> 1
    return code


def _tag(cls: type) -> int:
    return stable_str(f"{cls.__module__}.{cls.__qualname__}")


def _encoder(cls: type) -> Encoder:
    """Build (once per type) the function that encodes values of ``cls``."""
    if cls is type(None):
        return lambda x, perm: _NONE
    if issubclass(cls, enum.Flag):
        return lambda x, perm: int(x.value)
    if issubclass(cls, enum.Enum):
        index = {member: n for n, member in enumerate(cls)}
        return lambda x, perm: index[x]
    if cls is bool or cls is int or cls is float:
        return lambda x, perm: x
    if issubclass(cls, int):
        return lambda x, perm: int(x)
    if cls is str:
        return lambda x, perm: stable_str(x)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        tag = _tag(cls)
        fields: tuple[str, ...] = cls._fields
        if "replica" in fields:
            at = fields.index("replica")

            def named_with_replica(x: Any, perm: Perm) -> Any:
                out = [tag]
                for n, v in enumerate(x):
                    if n == at and isinstance(v, int) and 0 <= v < len(perm):
                        out.append(perm[v])
                    else:
                        out.append(encode(v, perm))
                return tuple(out)
            return named_with_replica
        return lambda x, perm: (tag, *[encode(v, perm) for v in x])
    if issubclass(cls, tuple):
        return lambda x, perm: tuple([encode(v, perm) for v in x])
    if dataclasses.is_dataclass(cls):
        tag = _tag(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        return lambda x, perm: (tag, *[encode(getattr(x, n), perm) for n in names])
    raise TypeError(f"the checker cannot encode a {cls.__module__}.{cls.__qualname__} in a world "
                    "state; add it to sims/check/canon.py's _encoder")


def encode(value: object, perm: Perm = ()) -> Any:
    """A value's canonical encoding: nested tuples of ints and floats, replicas renamed by ``perm``."""
    cls = type(value)
    enc = _ENCODERS.get(cls)
    if enc is None:
        enc = _ENCODERS[cls] = _encoder(cls)
    return enc(value, perm)


_KEYS: dict[Any, int] = {}


def key_code(key: Any) -> int:
    """A transition key's stable code, the tie-break that makes every worker pick the same parent."""
    code = _KEYS.get(key)
    if code is None:
        code = _KEYS[key] = hash(encode(key))
    return code


def forget_replica(rep: Replica, token_space: int) -> Replica:
    """The replica with its dead fields forgotten: what no move or invariant can tell apart.

    * ``subscriber.last_ok_at`` (when a sentinel last came back) is read only by the
      health view, never by a step: it becomes ``None``.
    * Sentinel tokens are compared only for equality and drawn as ``(token + 1) mod
      token_space``, so turning every token of one replica (the last one used, the
      one awaited and those in its Redis queue) by the same amount is a renaming that
      commutes with every step: they are turned until the last one used is 0.
    """
    sub = rep.subscriber
    shift = sub.token
    if shift:
        out = sub.outstanding
        sub = sub._replace(token=0, outstanding=None if out is None else (out - shift) % token_space)
        rep = rep._replace(queue=tuple(m if m > 0 else -((-m - shift) % token_space)
                                       for m in rep.queue))
    if sub.last_ok_at is not None:
        sub = sub._replace(last_ok_at=None)
    return rep._replace(subscriber=sub) if sub is not rep.subscriber else rep


def forget_slot(slot: ClientSlot, delay: bool = True) -> ClientSlot:
    """The client slot with its dead fields forgotten.

    * ``machine.last_delay`` (the previous backoff delay) is read only by policies that
      read it (``BackoffPolicy.reads_previous``); with ``delay`` (the world's policy does
      not) it becomes 0.
    * A stalled stream's ``last_sent``: its session is gone and nothing is written on it
      again, so the last id sent is never compared with another; it becomes 0.
    """
    m = slot.machine
    if delay and m.last_delay:
        slot = slot._replace(machine=m._replace(last_delay=0.0))
    if any(st.phase is StreamPhase.STALLED and st.last_sent for st in slot.streams):
        slot = slot._replace(streams=tuple(
            st._replace(last_sent=0) if st.phase is StreamPhase.STALLED else st
            for st in slot.streams))
    return slot


class Canon:
    """Fingerprints of one world's states, with or without symmetry and dead fields."""

    def __init__(self, config: WorldConfig, *, clients: bool = True, replicas: bool = True,
                 dead: bool = True) -> None:
        self.client_symmetry = clients and config.clients > 1
        self.replica_symmetry = replicas and config.replicas > 1
        self.dead_fields = dead
        self._forget_delay = not config.client.policy.reads_previous
        self._tokens = config.subscriber.token_space
        n = config.replicas
        ident = tuple(range(n))
        self.perms: list[Perm] = (list(itertools.permutations(range(n))) if self.replica_symmetry
                                  else [ident])
        self._perm = {p: p for p in self.perms}  #: each permutation, interned
        #: with two replicas: the permutation when they are in order, and when swapped
        self._pair = (ident, tuple(reversed(ident))) if n == 2 else (ident, ident)
        fields = State._fields
        self._at_clients = fields.index("clients")
        self._at_replicas = fields.index("replicas")
        other = [n for n, f in enumerate(fields) if f not in ("clients", "replicas")]
        self._rest_of: Callable[[State], Any] = operator.itemgetter(*other)
        self._clients: dict[tuple[Any, Perm], int] = {}
        self._replicas: dict[Any, int] = {}
        self._rest: dict[Any, int] = {}
        #: the same codes by object identity (a successor shares most parts with its parent)
        self._client_ids: dict[Perm, dict[int, tuple[Any, int]]] = {p: {} for p in self.perms}
        self._replica_ids: dict[int, tuple[Any, int]] = {}
        #: the last replicas' and clients' tuples fingerprinted, and their codes
        self._last_reps: tuple[Any, ...] | None = None
        self._last_codes: list[int] = []
        self._last_placed: list[int] = []  #: the last replicas' codes in canonical order
        self._last_perms: list[Perm] = []  #: and the permutations that put them there
        self._last_slots: tuple[Any, ...] | None = None
        self._last_slot_perms: list[Perm] = []  #: the permutations the last clients' codes took
        self._last_clients: list[int] = []
        self._last_best: Perm = ident  #: the permutation the last clients' codes were taken under
        self._last_rest: tuple[Any, ...] = (None,) * (len(fields) - 2)
        self._last_rest_code = 0

    def _client(self, slot: Any, perm: Perm) -> int:
        """Client slot's code with replicas renamed by ``perm``: by identity, then by value."""
        seen = self._client_ids[perm]
        hit = seen.get(id(slot))
        if hit is not None and hit[0] is slot:
            return hit[1]
        code = self._clients.get((slot, perm))
        if code is None:
            code = self._clients[(slot, perm)] = hash(encode(self._forget_slot(slot), perm))
        return remember(seen, slot, code)

    def _replica(self, rep: Any) -> int:
        """A replica's code; it holds no replica index, so no renaming applies."""
        hit = self._replica_ids.get(id(rep))
        if hit is not None and hit[0] is rep:
            return hit[1]
        code = self._replicas.get(rep)
        if code is None:
            code = self._replicas[rep] = hash(encode(self._forget_replica(rep), ()))
        return remember(self._replica_ids, rep, code)

    def _forget_slot(self, slot: ClientSlot) -> ClientSlot:
        return forget_slot(slot, self._forget_delay) if self.dead_fields else slot

    def _forget_replica(self, rep: Replica) -> Replica:
        return forget_replica(rep, self._tokens) if self.dead_fields else rep

    def forget(self, s: State) -> State:
        """The state with every slot's and replica's dead fields forgotten, as fingerprints see it."""
        return s._replace(clients=tuple(self._forget_slot(c) for c in s.clients),
                          replicas=tuple(self._forget_replica(r) for r in s.replicas))

    def _rest_code(self, s: State) -> int:
        rest = self._rest_of(s)
        if rest == self._last_rest:  # most often the very parts of the last one (compared by identity)
            return self._last_rest_code
        code = self._rest.get(rest)
        if code is None:
            code = self._rest[rest] = hash(encode(rest, ()))
        self._last_rest, self._last_rest_code = rest, code
        return code

    def fingerprint(self, s: State) -> int:
        """The state's 64-bit fingerprint (equal for states equal up to the symmetries on)."""
        # Successors of one state come one after another and share most parts with it (a
        # client's move keeps the replicas' tuple, a replica's the clients'): the last
        # tuple's codes are kept and reused when the same object comes again.
        rest = self._rest_code(s)
        reps: tuple[Any, ...] = s[self._at_replicas]  # type: ignore[assignment]
        slots: tuple[Any, ...] = s[self._at_clients]  # type: ignore[assignment]
        if reps is self._last_reps:
            codes, placed, perms = self._last_codes, self._last_placed, self._last_perms
        else:
            rids = self._replica_ids
            codes = []
            for rep in reps:
                hit = rids.get(id(rep))
                codes.append(hit[1] if hit is not None and hit[0] is rep else self._replica(rep))
            if self.replica_symmetry:
                # put the replicas in the order of their codes; only replicas with equal
                # codes leave a choice (then the smallest clients win)
                placed = sorted(codes)
                perms = self._perms_placing(codes, placed)
            else:
                placed, perms = codes, self.perms  # the identity alone
            self._last_reps, self._last_codes = reps, codes
            self._last_placed, self._last_perms = placed, perms
        if slots is self._last_slots and perms == self._last_slot_perms:
            return hash((rest, *placed, -1, *self._last_clients))
        best: list[int] | None = None
        best_perm = perms[0]
        client_ids, symmetric = self._client_ids, self.client_symmetry
        for perm in perms:
            cids = client_ids[perm]
            clients = []
            for slot in slots:
                got = cids.get(id(slot))
                clients.append(got[1] if got is not None and got[0] is slot
                               else self._client(slot, perm))
            if symmetric:
                clients.sort()
            if best is None or clients < best:
                best, best_perm = clients, perm
        assert best is not None
        self._last_slots, self._last_slot_perms, self._last_clients = slots, perms, best
        self._last_best = best_perm
        return hash((rest, *placed, -1, *best))

    def places(self) -> list[int]:
        """Where the last fingerprinted state's actors stand in its canonical form.

        One entry per replica, then per client: its position (replica ``p`` at ``p``,
        client ``q`` at ``replicas + q``), the same for every state of the orbit, or -1
        for an actor whose code it shares with another (no position of its own).
        """
        codes, perm = self._last_codes, self._last_best
        n = len(codes)
        out: list[int] = []
        for r, code in enumerate(codes):
            if not self.replica_symmetry:
                out.append(r)
            else:
                out.append(perm[r] if codes.count(code) == 1 else -1)
        slots = self._last_slots
        assert slots is not None
        if not self.client_symmetry:
            out.extend(range(n, n + len(slots)))
            return out
        placed = self._last_clients
        for slot in slots:
            code = self._client(slot, perm)
            out.append(n + placed.index(code) if placed.count(code) == 1 else -1)
        return out

    def _perms_placing(self, codes: list[int], placed: list[int]) -> list[Perm]:
        """Every permutation (old index -> new) that puts the codes in sorted order."""
        if len(codes) == 2:  # the common case, without building a permutation
            a, b = codes
            if a != b:
                return [self._pair[a > b]]
        elif len(set(codes)) == len(codes):
            perm = [0] * len(codes)
            for new, old in enumerate(sorted(range(len(codes)), key=codes.__getitem__)):
                perm[old] = new
            return [self._perm[tuple(perm)]]
        return [p for p in self.perms if all(placed[p[old]] == c for old, c in enumerate(codes))]

    def stats(self) -> dict[str, int]:
        """How many distinct parts were interned."""
        return {"clients": len(self._clients), "replicas": len(self._replicas),
                "rest": len(self._rest)}


def fingerprints(canon: Canon, states: Sequence[State]) -> list[int]:
    """Fingerprints of many states (a convenience for tests)."""
    return [canon.fingerprint(s) for s in states]
