"""The seed's five fixes, and the ones a careful reviewer adds, as switches.

Every engine (checker, Hypothesis, SimPy, the service) takes a :class:`Fixes`
value; with a switch off, the machines behave as the seed describes the code
*before* that fix, so each engine can show the bug the fix prevents.

=====  ========================  ==============================================  ============
alias  name                      what it does when on                            seed item
=====  ========================  ==============================================  ============
F1     bounded-replay            replay reads at most limit + 1 rows; a larger   1
                                 gap sends ``replay-truncated``; the client
                                 re-hydrates
F2     replay-failed-signal      a failed replay sends ``replay-failed``; the    2
                                 client re-hydrates (off: logged and swallowed)
F3     heartbeat-guard           the heartbeat check does nothing while a        3
                                 connect is in flight and stops itself before
                                 reconnecting (off: it bumps the counter every
                                 check)
F4     subscriber-health         subscriber lifecycle handlers and a sentinel    4
                                 round trip detect a dead Redis subscriber
F5     max-reconnect             after max attempts the client is ``failed``     5
                                 with its cursor cleared; ``recover()``
                                 re-hydrates, then reconnects
-      topic-sequence            per-topic contiguous sequence numbers given in  beyond
                                 the publishing transaction (off: one shared
                                 sequence whose ids can commit out of order)
-      retention-floor           a cursor older than the oldest kept row counts  beyond
                                 as truncated, not caught up
-      gap-from-head             the gap is measured from the topic head, so a   beyond
                                 stale client costs O(1) rows
-      event-epoch               ids carry the topic's epoch; a cursor from      beyond
                                 another epoch counts as unknown
-      head-before-snapshot      recovery reads the head cursor before the       beyond
                                 snapshot, then streams from it
-      stable-reset              the counter resets only after the first         beyond
                                 message on a stream (off: on open)
-      resync-after-recovery     after a subscriber recovers, the replica's      beyond
                                 open streams catch up from their cursors
-      announce-head             a stream opened without a cursor is told the    beyond
                                 head (an id-only message) and the client
                                 adopts it: no stream without a cursor
-      head-probe                sessions read the topic head periodically and   beyond
                                 catch up: a publish lost after its commit
                                 still arrives
-      reauthorize               every reconnect and replay re-checks the        beyond
                                 token; streams are scoped to their user
=====  ========================  ==============================================  ============
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["FIXES", "FixInfo", "Fixes", "Teeth", "UnknownFixError", "info", "resolve_fix_name",
           "teeth"]

#: World settings (``model.world.WorldConfig`` fields) on top of the defaults: sizes, or
#: ``without_faults`` (fault kinds that cannot happen there).
Sizes = tuple[tuple[str, int | tuple[str, ...]], ...]


class FixInfo(NamedTuple):
    """One switch: its name, alias, the field on Fixes, what it protects, and where its bug shows.

    ``worlds`` are the smallest worlds (as ``WorldConfig`` overrides of the defaults) in
    which the checker finds the bug with the fix off; the first is the one every engine
    uses first. A fix no world can show says why in ``no_world``. The teeth tests, the
    bug-hunt benchmark, the checker report and the real-stack replays all read this.
    """

    name: str
    alias: str | None
    field: str
    summary: str
    protects: tuple[str, ...]
    worlds: tuple[Sizes, ...] = ((),)
    no_world: str = ""
    also_off: tuple[str, ...] = ()  #: fixes that mask its bug (defence in depth), off with it


class Teeth(NamedTuple):
    """A fix switched off, a world that shows its bug, and the invariants it may break."""

    fix: str
    sizes: dict[str, int | tuple[str, ...]]
    protects: frozenset[str]
    also_off: tuple[str, ...] = ()

    @property
    def fixes(self) -> Fixes:
        """Every fix on but this one (and those that would mask its bug)."""
        return Fixes.all().without(self.fix, *self.also_off)


def info(name: str) -> FixInfo:
    """The table row of a fix, by name or alias."""
    return _BY_KEY[resolve_fix_name(name)]


def teeth(*, only_first: bool = False) -> list[Teeth]:
    """Every (fix, world) pair that must show a bug with the fix off, in table order."""
    out = []
    for row in FIXES:
        for sizes in row.worlds[:1] if only_first else row.worlds:
            protects = row.protects
            if sizes == _F1_ROWS:  # the row-overrun world: only the bound itself can break
                protects = ("bounded-replay",)
            out.append(Teeth(row.name, dict(sizes), frozenset(protects), row.also_off))
    return out


_F1_ROWS: Sizes = (("replay_limit", 1), ("events", 3), ("faults", 0))


FIXES: tuple[FixInfo, ...] = (
    FixInfo("bounded-replay", "F1", "bounded_replay",
            "bound the replay query and signal truncation", ("bounded-replay", "no-silent-stale"),
            worlds=((), _F1_ROWS)),
    FixInfo("replay-failed-signal", "F2", "replay_failed_signal",
            "signal replay failures to the client", ("no-silent-stale",)),
    FixInfo("heartbeat-guard", "F3", "heartbeat_guard",
            "heartbeat check skips while connecting", ("bounded-counter",)),
    FixInfo("subscriber-health", "F4", "subscriber_health",
            "detect a dead Redis subscriber with a sentinel", ("no-silent-stale", "detection-bound")),
    FixInfo("max-reconnect", "F5", "max_reconnect",
            "fail after max attempts; recover() re-hydrates",
            ("bounded-counter", "failed-only-after-max")),
    FixInfo("topic-sequence", None, "topic_sequence",
            "contiguous per-topic sequence in the publishing transaction", ("no-silent-stale",),
            worlds=((("publishers", 2),),)),
    FixInfo("retention-floor", None, "retention_floor",
            "a cursor below the retention floor is truncated", ("no-silent-stale",)),
    FixInfo("gap-from-head", None, "gap_from_head",
            "gap measured from the head: O(1) rows for a stale cursor", ("bounded-replay",),
            worlds=(), no_world="an efficiency fix: without it a stale cursor costs one query of "
            "limit + 1 rows instead of none, which bounded-replay allows; no verdict changes "
            "(the replay-storm report and benchmark measure the rows)"),
    FixInfo("event-epoch", None, "event_epoch",
            "a cursor from another epoch counts as unknown", ("no-silent-stale",),
            worlds=(), no_world="the world's topic has one epoch: no database is restored or "
            "reset in it; the session's unit tests and the service's integration tests show it"),
    FixInfo("head-before-snapshot", None, "head_before_snapshot",
            "recovery reads the head before the snapshot", ("no-silent-stale",)),
    FixInfo("stable-reset", None, "stable_reset",
            "reset the counter only after a stable connection", ("bounded-counter",)),
    FixInfo("resync-after-recovery", None, "resync_after_recovery",
            "resync open streams when the subscriber recovers", ("no-silent-stale",),
            # the head probe also brings what a resync would: off, and with it the lost
            # publish it exists for, so the counterexample is the resync's own bug
            worlds=((("without_faults", ("redis.publish_lost",)),),), also_off=("head-probe",)),
    FixInfo("announce-head", None, "announce_head",
            "a cursorless stream is told the head; the client adopts it",
            ("no-stream-without-cursor", "no-silent-stale")),
    FixInfo("head-probe", None, "head_probe",
            "a periodic head probe catches up publishes lost after their commit",
            ("no-silent-stale",)),
    FixInfo("reauthorize", None, "reauthorize",
            "re-check the token on every reconnect, replay and re-check interval",
            ("revoked-stream-ends",)),
)

_BY_KEY: dict[str, FixInfo] = {}
for _info in FIXES:
    _BY_KEY[_info.name] = _info
    _BY_KEY[_info.field] = _info
    if _info.alias:
        _BY_KEY[_info.alias.lower()] = _info


class UnknownFixError(ValueError):
    """A fix name that is neither a known name nor an F1..F5 alias."""


def resolve_fix_name(text: str) -> str:
    """Return the canonical kebab-case name for a fix name or alias (F1..F5)."""
    info = _BY_KEY.get(text.strip().lower())
    if info is None:
        accepted = ", ".join(f"{i.name}" + (f" ({i.alias})" if i.alias else "") for i in FIXES)
        raise UnknownFixError(f"unknown fix {text!r}; accepted: {accepted}")
    return info.name


@dataclasses.dataclass(frozen=True, slots=True)
class Fixes:
    """Which fixes are switched on; all are on by default."""

    bounded_replay: bool = True
    replay_failed_signal: bool = True
    heartbeat_guard: bool = True
    subscriber_health: bool = True
    max_reconnect: bool = True
    topic_sequence: bool = True
    retention_floor: bool = True
    gap_from_head: bool = True
    event_epoch: bool = True
    head_before_snapshot: bool = True
    stable_reset: bool = True
    resync_after_recovery: bool = True
    announce_head: bool = True
    head_probe: bool = True
    reauthorize: bool = True

    @classmethod
    def all(cls) -> Fixes:
        """Every fix switched on."""
        return cls()

    @classmethod
    def none(cls) -> Fixes:
        """Every fix switched off: the code as the seed found it."""
        return cls(**{info.field: False for info in FIXES})

    def without(self, *names: str) -> Fixes:
        """A copy with the named fixes (names or F1..F5) switched off."""
        fields = {_BY_KEY[resolve_fix_name(n)].field: False for n in names}
        return dataclasses.replace(self, **fields)

    def with_(self, *names: str) -> Fixes:
        """A copy with the named fixes switched on."""
        fields = {_BY_KEY[resolve_fix_name(n)].field: True for n in names}
        return dataclasses.replace(self, **fields)

    def enabled(self, name: str) -> bool:
        """Whether the named fix (name or alias) is on."""
        return bool(getattr(self, _BY_KEY[resolve_fix_name(name)].field))

    def on(self) -> tuple[str, ...]:
        """Names of the fixes switched on, in table order."""
        return tuple(i.name for i in FIXES if getattr(self, i.field))

    def off(self) -> tuple[str, ...]:
        """Names of the fixes switched off, in table order."""
        return tuple(i.name for i in FIXES if not getattr(self, i.field))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Fixes:
        """Exactly the named fixes on, the rest off."""
        fixes = cls.none()
        names = list(names)
        return fixes.with_(*names) if names else fixes

    @classmethod
    def parse(cls, text: str) -> Fixes:
        """Parse ``"all"``, ``"none"``, ``"all,-F3"`` or a comma list of names to switch on."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise UnknownFixError("empty fix list; use 'all', 'none', 'all,-F3' or names")
        fixes = cls.none()
        for part in parts:
            if part == "all":
                fixes = cls.all()
            elif part == "none":
                fixes = cls.none()
            elif part.startswith("-"):
                fixes = fixes.without(part[1:])
            else:
                fixes = fixes.with_(part.lstrip("+"))
        return fixes

    def __str__(self) -> str:
        off = self.off()
        if not off:
            return "all"
        return "all," + ",".join(f"-{n}" for n in off)
