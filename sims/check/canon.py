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
  symmetry the clients' codes are sorted; with replica symmetry every
  permutation of replica indices is tried (a replica's code moves to its new
  index, and every field named ``replica`` anywhere in the state, e.g.
  ``Stream.replica``, is renamed the same way, -1 staying -1) and the smallest
  result kept. Replica counts are small (``R!`` tries). A field that holds a
  *client* index would need the same treatment; none exists today.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

from model.world import State, WorldConfig

__all__ = ["Canon", "encode", "key_code", "stable_str"]

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


class Canon:
    """Fingerprints of one world's states, with or without client and replica symmetry."""

    def __init__(self, config: WorldConfig, *, clients: bool = True, replicas: bool = True) -> None:
        self.client_symmetry = clients and config.clients > 1
        self.replica_symmetry = replicas and config.replicas > 1
        n = config.replicas
        ident = tuple(range(n))
        self.perms: list[Perm] = (list(itertools.permutations(range(n))) if self.replica_symmetry
                                  else [ident])
        fields = State._fields
        self._at_clients = fields.index("clients")
        self._at_replicas = fields.index("replicas")
        other = [n for n, f in enumerate(fields) if f not in ("clients", "replicas")]
        self._rest_of: Callable[[State], Any] = operator.itemgetter(*other)
        self._clients: dict[tuple[Any, Perm], int] = {}
        self._replicas: dict[tuple[Any, Perm], int] = {}
        self._rest: dict[tuple[Any, Perm], int] = {}
        self._clients0: dict[Any, int] = {}  #: the identity permutation's, keyed by value alone
        self._replicas0: dict[Any, int] = {}
        self._rest0: dict[Any, int] = {}

    def _client(self, slot: Any, perm: Perm) -> int:
        code = self._clients.get((slot, perm))
        if code is None:
            code = self._clients[(slot, perm)] = hash(encode(slot, perm))
        return code

    def _replica(self, rep: Any, perm: Perm) -> int:
        code = self._replicas.get((rep, perm))
        if code is None:
            code = self._replicas[(rep, perm)] = hash(encode(rep, perm))
        return code

    def _rest_code(self, rest: Any, perm: Perm) -> int:
        code = self._rest.get((rest, perm))
        if code is None:
            code = self._rest[(rest, perm)] = hash(encode(rest, perm))
        return code

    def fingerprint(self, s: State) -> int:
        """The state's 64-bit fingerprint (equal for states equal up to the symmetries on)."""
        if self.replica_symmetry:
            return self._fingerprint_permuted(s)
        rest = self._rest_of(s)
        code = self._rest0.get(rest)
        if code is None:
            code = self._rest0[rest] = self._rest_code(rest, ())
        known_clients = self._clients0
        slots: tuple[Any, ...] = s[self._at_clients]  # type: ignore[assignment]
        clients: list[Any] = [known_clients.get(slot) for slot in slots]
        if None in clients:
            clients = [self._client(slot, ()) for slot in slots]
            for slot, c in zip(slots, clients, strict=True):
                known_clients[slot] = c
        if self.client_symmetry:
            clients.sort()
        known_replicas = self._replicas0
        reps: tuple[Any, ...] = s[self._at_replicas]  # type: ignore[assignment]
        replicas: list[Any] = [known_replicas.get(rep) for rep in reps]
        if None in replicas:
            replicas = [self._replica(rep, ()) for rep in reps]
            for rep, r in zip(reps, replicas, strict=True):
                known_replicas[rep] = r
        return hash((code, *replicas, -1, *clients))

    def _fingerprint_permuted(self, s: State) -> int:
        rest = self._rest_of(s)
        slots: tuple[Any, ...] = s[self._at_clients]  # type: ignore[assignment]
        reps: tuple[Any, ...] = s[self._at_replicas]  # type: ignore[assignment]
        best: tuple[Any, ...] | None = None
        for perm in self.perms:
            placed = [0] * len(perm)
            for old, new in enumerate(perm):
                placed[new] = self._replica(reps[old], perm)
            clients = [self._client(slot, perm) for slot in slots]
            if self.client_symmetry:
                clients.sort()
            cand = (self._rest_code(rest, perm), tuple(placed), tuple(clients))
            if best is None or cand < best:
                best = cand
        return hash(best)

    def stats(self) -> dict[str, int]:
        """How many distinct parts were interned."""
        return {"clients": len(self._clients), "replicas": len(self._replicas),
                "rest": len(self._rest)}


def fingerprints(canon: Canon, states: Sequence[State]) -> list[int]:
    """Fingerprints of many states (a convenience for tests)."""
    return [canon.fingerprint(s) for s in states]
