"""Proof that the checks bite: semantic mutants of ``model/``, each run through the checker.

What it owns. A small, readable catalogue (:data:`CATALOGUE`) of *semantic*
mutants of the machines: each is a named bug a careful engineer could write
("the replay starts one row late", "the sentinel deadline is never armed"),
with the one function or table entry of a ``model`` module it replaces and the
invariant family that ought to catch it. :func:`run` checks every mutant with
:func:`sims.check.check` at default bounds, all fixes on, and reports it
**killed** (by which invariant, in how many steps) or **survived**.

How a mutant is applied. Never by editing a file: a mutant is a list of
:class:`Swap` values, each replacing one module attribute of a ``model``
machine (a handler, a helper such as ``model.session._catch_up``, or an action
class the machine builds). When the attribute replaced is a handler, every
entry of the module's ``TRANSITIONS`` table that holds it is replaced too, so
``step`` reaches the mutant. The world imports the machines as modules
(``from model import client as cl``) and calls ``cl.step``, so a swap made
before the check runs reaches the world. Each mutant runs in its own spawned
process (``max_tasks_per_child=1``): the parent never imports a mutated module
and no mutant sees another's swaps. ``model/`` stays pure and untouched.

Teeth of the catalogue itself. A mutant that changes nothing would "survive"
for free, and a mutant that breaks the world by accident would be "killed" for
nothing. So every mutant carries a *probe*: a few inputs to the mutated machine
through its public ``step``, whose result must differ from the unmutated
machine's (:attr:`Outcome.differs`). The child runs the probe before and after
applying the swaps, then the check; an error in the check is reported as such,
never as a kill.

:data:`EXPECTED_SURVIVORS` names mutants allowed to survive, each with its reason;
it is empty, and the tests assert that every listed one really survives, so the
map cannot go stale. A mutant whose bug another fix would mask (defence in depth:
the head probe also brings what an ignored resync leaves behind) is checked with
that fix off (:attr:`Mutant.masked_by`, as ``FixInfo.also_off``).

Deliberate divergence: no mutation library. mutmut (3.x) and cosmic-ray (8.x)
are maintained, but both make *syntactic* mutants (operator and constant
swaps) by rewriting source files on disk (cosmic-ray in place, mutmut in a
``mutants/`` copy) and run a test command per mutant. Here the mutants are
named semantic bugs, the oracle is the checker rather than a test suite, and
the checkout is shared, so nothing may be written to it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from model import client as cl
from model import session as se
from model import subscriber as sb
from model import world as wd
from model.core import Action, EventId, Log, StartTimer
from model.fixes import Fixes
from model.world import WorldConfig

if TYPE_CHECKING:
    from sims.check import CheckResult

__all__ = [
    "CATALOGUE",
    "EXPECTED_SURVIVORS",
    "Mutant",
    "Outcome",
    "Swap",
    "applied",
    "by_name",
    "default_config",
    "expected",
    "run",
    "run_mutant",
]


@dataclasses.dataclass(frozen=True)
class Swap:
    """Replace ``module.name`` by ``new`` (and every ``TRANSITIONS`` entry holding the old value)."""

    module: ModuleType
    name: str
    new: object


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A named semantic bug: what it changes, where, what should catch it, and its probe."""

    name: str
    module: str  #: the model module it mutates
    target: str  #: the function, table entry or class it replaces
    change: str  #: the bug, in one sentence
    swaps: tuple[Swap, ...]
    probe: Callable[[], object]  #: a few inputs through ``step``; must differ once mutated
    #: fixes that would mask the bug (defence in depth, as ``FixInfo.also_off``), switched off
    masked_by: tuple[str, ...] = ()
    #: fault kinds left out of its world (the bug a masking fix exists for would come first)
    without_faults: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the checker made of one mutant."""

    mutant: str
    verdict: str  #: "killed", "survived", "unknown" (the check was incomplete) or "error"
    invariant: str | None = None  #: the invariant of the shortest counterexample
    kind: str | None = None  #: "safety" or "liveness"
    steps: int | None = None  #: steps of that counterexample (liveness: to the cycle)
    cycle: int | None = None  #: length of the liveness cycle
    also: tuple[str, ...] = ()  #: other invariants violated by the same check
    states: int = 0
    seconds: float = 0.0
    differs: bool = False  #: the probe shows the mutant behaves differently
    restored: bool = False  #: after the swaps are undone the probe gives the original again
    probe_before: str = ""
    probe_after: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON values."""
        out = dataclasses.asdict(self)
        out["also"] = list(self.also)
        out["seconds"] = round(self.seconds, 3)
        out["expected_survivor"] = EXPECTED_SURVIVORS.get(self.mutant)
        return out


# ---------------------------------------------------------------- applying swaps


@contextlib.contextmanager
def applied(mutant: Mutant) -> Iterator[None]:
    """Apply a mutant's swaps for the duration of the block, then restore every one."""
    undo: list[Callable[[], None]] = []
    try:
        for swap in mutant.swaps:
            undo.extend(_swap(swap))
        yield
    finally:
        for restore in reversed(undo):
            restore()


def _swap(swap: Swap) -> list[Callable[[], None]]:
    module, name = swap.module, swap.name
    old = getattr(module, name)
    undo: list[Callable[[], None]] = [lambda: setattr(module, name, old)]
    setattr(module, name, swap.new)
    table = getattr(module, "TRANSITIONS", None)
    if isinstance(table, dict):
        keys = [key for key, handler in table.items() if handler is old]
        for key in keys:
            table[key] = swap.new
        undo.append(lambda: table.update(dict.fromkeys(keys, old)))
    return undo


# ---------------------------------------------------------------- the originals the mutants wrap
# Captured when this module is imported, before any swap: a wrapper calls these, never
# the module attribute it replaces.

_SE_ON_OPEN = se._on_open
_SE_QUERY = se._query
_SE_LIVE = se._live
_SE_CATCH_UP = se._catch_up
_SE_INSERT = se._insert
_SE_ON_RESYNC = se._on_resync
_CL_ON_REHYDRATED = cl._on_rehydrated
_CL_ON_OPENED = cl._on_opened
_CL_AFTER_LOSS = cl._after_loss
_CL_STOP_MONITOR = cl._stop_monitor
_CL_START_REHYDRATE = cl.StartRehydrate
_SB_ON_TIMER = sb._on_timer

SessionResult = tuple[se.SessionState, list[Action]]
ClientResult = tuple[cl.ClientState, list[Action]]


# ---------------------------------------------------------------- session mutants


def _open_skipping_replay(cfg: se.SessionConfig, s: se.SessionState, e: se.SessionInput
                          ) -> SessionResult:
    """A stream whose cursor is behind the head goes live from the head, unreplayed."""
    assert isinstance(e, se.Open)
    n, acts = _SE_ON_OPEN(cfg, s, e)
    if n.phase is not se.Phase.REPLAYING:
        return n, acts
    return (n._replace(phase=se.Phase.LIVE, cursor=e.topic.head, upto=None),
            [a for a in acts if not isinstance(a, se.QueryReplay)])


def _query_one_late(cfg: se.SessionConfig, s: se.SessionState, after: int, upto: int | None,
                    acts: list[Action]) -> se.SessionState:
    """Every replay query starts one row late (``seq > after + 1``)."""
    return _SE_QUERY(cfg, s, after + 1, upto, acts)


def _flush_forgetting_owed(cfg: se.SessionConfig, s: se.SessionState, acts: list[Action]
                           ) -> se.SessionState:
    """``session._flush`` without its last rule: the catch-up owed after a query is never run.

    A copy of ``_flush`` minus ``if owed_catch_up(...): return _catch_up(...)``, so the
    session still *says* it owes a catch-up (``owed_catch_up``) but never pays it.
    """
    buffer = s.buffer
    s = s._replace(buffer=(), upto=None, phase=se.Phase.LIVE)
    for i, seq in enumerate(buffer):
        s = _SE_LIVE(cfg, s, seq, acts)
        if s.phase is se.Phase.REPLAYING:
            rest = buffer[i + 1 :]
            return s._replace(buffer=tuple(sorted(set(s.buffer) | set(rest))))
    return s


def _truncate_silently(cfg: se.SessionConfig, s: se.SessionState, reason: se.TruncateReason,
                       acts: list[Action]) -> se.SessionState:
    """The session skips its cursor past the gap but never sends ``replay-truncated``."""
    return s._replace(cursor=max(s.cursor, s.head))


def _send_twice(s: se.SessionState, seq: int, acts: list[Action]) -> se.SessionState:
    """Every event is written to the stream twice."""
    event = se.Send(event_id=EventId(s.epoch, seq))
    acts.extend((event, event))
    return s._replace(cursor=seq)


def _live_forwarding_duplicates(cfg: se.SessionConfig, s: se.SessionState, seq: int,
                                acts: list[Action]) -> se.SessionState:
    """A live event the stream already sent (by replay) is forwarded again."""
    if seq <= s.cursor:
        acts.append(se.Send(event_id=EventId(s.epoch, seq)))
        return s
    return _SE_LIVE(cfg, s, seq, acts)


def _resync_ignored(cfg: se.SessionConfig, s: se.SessionState, e: se.SessionInput
                    ) -> SessionResult:
    """A resync after the subscriber recovered is ignored by the stream."""
    return s, []


# ---------------------------------------------------------------- client mutants


def _rehydrated_without_cursor(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput
                               ) -> ClientResult:
    """After re-hydration the client holds no cursor and streams without one."""
    n, acts = _CL_ON_REHYDRATED(cfg, s, e)
    if n.status is cl.Status.FAILED:
        return n, acts
    acts = [cl.OpenStream(last_event_id=None) if isinstance(a, cl.OpenStream) else a for a in acts]
    return n._replace(last_event_id=None), acts


def _snapshot_first(*, head_first: bool = True) -> cl.StartRehydrate:
    """The client always asks for the snapshot first and the head after it."""
    return _CL_START_REHYDRATE(head_first=False)


def _rehydrated_moving_back(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput
                            ) -> ClientResult:
    """The client adopts the snapshot's head even when its own cursor is newer."""
    return _CL_ON_REHYDRATED(cfg, s._replace(last_event_id=None), e)


def _opened_resetting_counter(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput
                              ) -> ClientResult:
    """The reconnect counter resets when a stream opens, before any message proves it."""
    n, acts = _CL_ON_OPENED(cfg, s, e)
    return n._replace(attempts=0), acts


def _after_loss_keeping_cursor(cfg: cl.ClientConfig, state: cl.ClientState, now: float, u: float,
                               reason: str, actions: list[Action]) -> cl.ClientState:
    """A client that gives up (``failed``) keeps its cursor."""
    n = _CL_AFTER_LOSS(cfg, state, now, u, reason, actions)
    if n.status is cl.Status.FAILED:
        return n._replace(last_event_id=state.last_event_id)
    return n


def _heartbeat_timeout_only_stops(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput
                                  ) -> ClientResult:
    """The heartbeat monitor gives up on a silent stream but never reconnects."""
    acts: list[Action] = []
    if s.status is not cl.Status.CONNECTED:
        return s, acts
    n = _CL_STOP_MONITOR(s, acts)
    acts.append(Log(level="warning", message="heartbeat timeout"))
    return n, acts


def _heartbeat_rearms_forever(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput
                              ) -> ClientResult:
    """The heartbeat monitor re-arms itself on a silent stream and never reconnects."""
    acts: list[Action] = []
    if s.status is not cl.Status.CONNECTED:
        return s, acts
    acts.append(StartTimer(timer=cl.HEARTBEAT, at=e.now + cfg.heartbeat_timeout))
    return s._replace(monitor=True), acts


def _close_without_closing(state: cl.ClientState, actions: list[Action]) -> cl.ClientState:
    """The client forgets its stream without closing it."""
    return state._replace(stream=False, stable=False)


# ---------------------------------------------------------------- subscriber mutants


def _sentinel_without_deadline(cfg: sb.SubscriberConfig, s: sb.SubscriberState,
                               e: sb.SubscriberInput) -> tuple[sb.SubscriberState, list[Action]]:
    """Sentinels are published, but the deadline for their round trip is never armed."""
    n, acts = _SB_ON_TIMER(cfg, s, e)
    return n, [a for a in acts
               if not (isinstance(a, StartTimer) and a.timer == sb.SENTINEL_TIMEOUT)]


# ---------------------------------------------------------------- probes
# Each runs a few inputs through the machine's public ``step`` and returns what came out.

_SCFG = se.SessionConfig(replay_limit=2)
_CCFG = cl.ClientConfig(max_attempts=3)
_SUBCFG = sb.SubscriberConfig()


def _session_run(*inputs: se.SessionInput, state: se.SessionState | None = None) -> object:
    s = se.initial() if state is None else state
    out: list[object] = []
    for event in inputs:
        s, acts = se.step(_SCFG, s, event)
        out.append(tuple(acts))
    return s, tuple(out)


def _client_run(state: cl.ClientState, *inputs: cl.ClientInput,
                cfg: cl.ClientConfig = _CCFG) -> object:
    out: list[object] = []
    for event in inputs:
        state, acts = cl.step(cfg, state, event)
        out.append(tuple(acts))
    return state, tuple(out)


def _open(last: int | None, head: int) -> se.Open:
    return se.Open(last_event_id=None if last is None else EventId(0, last),
                   topic=se.TopicHead(0, head))


def _probe_skip_replay() -> object:
    return _session_run(_open(1, 2))


def _probe_replay_off_by_one() -> object:
    return _session_run(_open(0, 2))


def _probe_forget_owed() -> object:
    # a resync to head 3 arrives while the replay of (0, 2] runs; the rows come back
    return _session_run(_open(0, 2), se.Resync(topic=se.TopicHead(0, 3)),
                        se.ReplayRows(seqs=(1, 2)))


def _probe_truncation_dropped() -> object:
    return _session_run(_open(0, 5))


def _probe_send_twice() -> object:
    return _session_run(_open(0, 0), se.LiveEvent(seq=1))


def _probe_duplicate_live() -> object:
    return _session_run(_open(0, 2), se.ReplayRows(seqs=(1, 2)), se.LiveEvent(seq=2))


def _probe_resync_ignored() -> object:
    return _session_run(_open(0, 0), se.Resync(topic=se.TopicHead(0, 2)))


def _probe_adopt_no_cursor() -> object:
    failed = cl.ClientState(status=cl.Status.FAILED)
    return _client_run(failed, cl.Recover(), cl.RehydrateDone(head=EventId(0, 2)))


def _probe_head_after_snapshot() -> object:
    return _client_run(cl.ClientState(status=cl.Status.FAILED), cl.Recover())


def _probe_cursor_backwards() -> object:
    live = cl.ClientState(status=cl.Status.CONNECTED, last_event_id=EventId(0, 3), stream=True,
                          stable=True, monitor=True)
    return _client_run(live, cl.ReplayFailed(), cl.RehydrateDone(head=EventId(0, 1)))


def _probe_counter_reset() -> object:
    connecting = cl.ClientState(status=cl.Status.CONNECTING, attempts=2, stream=True)
    return _client_run(connecting, cl.StreamOpened())


def _probe_failed_keeps_cursor() -> object:
    connecting = cl.ClientState(status=cl.Status.CONNECTING, attempts=3, stream=True,
                                last_event_id=EventId(0, 2))
    return _client_run(connecting, cl.StreamFailed())


def _probe_heartbeat() -> object:
    live = cl.ClientState(status=cl.Status.CONNECTED, attempts=0, stream=True, stable=True,
                          monitor=True, last_event_id=EventId(0, 1))
    return _client_run(live, cl.TimerFired(timer=cl.HEARTBEAT))


def _probe_sentinel() -> object:
    s, acts = sb.step(_SUBCFG, sb.initial(), sb.Ready())
    s, acts = sb.step(_SUBCFG, s, sb.TimerFired(timer=sb.SENTINEL))
    return s, tuple(acts)


# ---------------------------------------------------------------- world (shell order) mutants


def _not_registered_yet() -> bool:
    """A stream taken by a replica hears no live events until its session opens."""
    return False


def _head_read_first(s: wd.State) -> int:
    """The head is read when the stream is taken, before it is registered for live events."""
    return s.db.head


def _open_with_head_read_first(stream: wd.Stream, db: wd.Db) -> se.TopicHead:
    """The session opens at the head read before registering."""
    return se.TopicHead(0, stream.head_read, db.floor)


def _probe_head_first() -> object:
    s = wd.initial(wd.WorldConfig())
    return (wd._registered_hears_live(), wd._head_at_register(s))


# ---------------------------------------------------------------- the catalogue

_SE, _CL, _SB, _WD = "model.session", "model.client", "model.subscriber", "model.world"

#: Every mutant, in the order the table prints them.
CATALOGUE: tuple[Mutant, ...] = (
    Mutant("skip-replay", _SE, "TRANSITIONS[new, Open] (_on_open)",
           "a stream opened behind the head goes live from the head without replaying",
           (Swap(se, "_on_open", _open_skipping_replay),), _probe_skip_replay),
    Mutant("replay-off-by-one", _SE, "_query",
           "every replay query starts one row late (seq > after + 1)",
           (Swap(se, "_query", _query_one_late),), _probe_replay_off_by_one),
    Mutant("forget-owed-catch-up", _SE, "_flush",
           "a resync that arrives during a query is remembered but never caught up",
           (Swap(se, "_flush", _flush_forgetting_owed),), _probe_forget_owed),
    Mutant("truncation-signal-dropped", _SE, "_truncate",
           "the session skips past a gap without sending replay-truncated",
           (Swap(se, "_truncate", _truncate_silently),), _probe_truncation_dropped),
    Mutant("send-id-twice", _SE, "_send",
           "every event is written to the stream twice",
           (Swap(se, "_send", _send_twice),), _probe_send_twice),
    Mutant("duplicate-live-forwarded", _SE, "_live",
           "a live event already sent by the replay is forwarded again",
           (Swap(se, "_live", _live_forwarding_duplicates),), _probe_duplicate_live),
    Mutant("resync-ignored", _SE, "TRANSITIONS[*, Resync] (_on_resync)",
           "a stream ignores the resync after its subscriber recovered",
           (Swap(se, "_on_resync", _resync_ignored),), _probe_resync_ignored,
           masked_by=("head-probe",)),
    Mutant("adopt-no-cursor", _CL, "TRANSITIONS[*, RehydrateDone] (_on_rehydrated)",
           "after re-hydration the client holds no cursor and streams without one",
           (Swap(cl, "_on_rehydrated", _rehydrated_without_cursor),), _probe_adopt_no_cursor),
    Mutant("head-after-snapshot", _CL, "StartRehydrate",
           "re-hydration loads the snapshot first and reads the head after it",
           (Swap(cl, "StartRehydrate", _snapshot_first),), _probe_head_after_snapshot),
    Mutant("cursor-backwards", _CL, "TRANSITIONS[*, RehydrateDone] (_on_rehydrated)",
           "the client adopts the snapshot's head even when its cursor is newer",
           (Swap(cl, "_on_rehydrated", _rehydrated_moving_back),), _probe_cursor_backwards),
    Mutant("counter-reset-on-open", _CL, "TRANSITIONS[connecting, StreamOpened] (_on_opened)",
           "the reconnect counter resets when a stream opens, not after its first message",
           (Swap(cl, "_on_opened", _opened_resetting_counter),), _probe_counter_reset),
    Mutant("failed-keeps-cursor", _CL, "_after_loss",
           "a client that gives up keeps its cursor",
           (Swap(cl, "_after_loss", _after_loss_keeping_cursor),), _probe_failed_keeps_cursor),
    Mutant("heartbeat-never-reconnects", _CL, "_on_heartbeat_timer",
           "the heartbeat monitor gives up on a silent stream but never reconnects",
           (Swap(cl, "_on_heartbeat_timer", _heartbeat_timeout_only_stops),), _probe_heartbeat),
    Mutant("heartbeat-rearms-forever", _CL, "_on_heartbeat_timer",
           "the heartbeat monitor keeps re-arming on a silent stream instead of reconnecting "
           "(armed forever, it would cover the stream forever if coverage had no clock)",
           (Swap(cl, "_on_heartbeat_timer", _heartbeat_rearms_forever),), _probe_heartbeat),
    Mutant("stream-never-closed", _CL, "_close",
           "the client forgets its stream without closing it, then opens another",
           (Swap(cl, "_close", _close_without_closing),), _probe_heartbeat),
    Mutant("head-read-before-register", _WD, "_registered_hears_live, _head_at_register, _open_head",
           "a replica reads the head before it registers the stream for live fan-out (the "
           "service's open order reversed): an event published in between is lost",
           (Swap(wd, "_registered_hears_live", _not_registered_yet),
            Swap(wd, "_head_at_register", _head_read_first),
            Swap(wd, "_open_head", _open_with_head_read_first)), _probe_head_first,
           masked_by=("head-probe",), without_faults=("redis.publish_lost",)),
    Mutant("sentinel-deadline-never-armed", _SB, "TRANSITIONS[*, TimerFired] (_on_timer)",
           "sentinels are published but their round-trip deadline is never armed",
           (Swap(sb, "_on_timer", _sentinel_without_deadline),), _probe_sentinel),
)

#: Mutants that survive, with the reason; the tests assert each really survives. Empty: the
#: ordered-delivery invariant kills the duplicate and cursor mutants, and convergence (no free
#: false sentinel alarm any more) kills the forgotten catch-up (issue 12).
EXPECTED_SURVIVORS: dict[str, str] = {}

#: Mutants only a liveness check kills (the whole world is explored first): started first.
SLOW: frozenset[str] = frozenset({"forget-owed-catch-up"})


def by_name(name: str) -> Mutant:
    """The catalogue's mutant called ``name``."""
    for mutant in CATALOGUE:
        if mutant.name == name:
            return mutant
    raise KeyError(f"unknown mutant {name!r}; known: {', '.join(m.name for m in CATALOGUE)}")


def default_config(mutant: Mutant | None = None) -> WorldConfig:
    """The world a mutant is checked in: default bounds, all fixes on but those that mask it."""
    masked = mutant.masked_by if mutant is not None else ()
    return WorldConfig(fixes=Fixes.all().without(*masked) if masked else Fixes.all(),
                       without_faults=mutant.without_faults if mutant is not None else ())


# ---------------------------------------------------------------- running


def run_mutant(name: str) -> Outcome:
    """Probe and check one mutant in *this* process (call it in a child; it swaps model code)."""
    from sims.check import check  # networkx lives behind the check extra

    mutant = by_name(name)
    started = time.perf_counter()
    before = repr(mutant.probe())
    result: CheckResult | Exception
    with applied(mutant):
        try:
            after = repr(mutant.probe())
        except Exception as exc:  # a probe the mutant breaks still shows a difference
            after = f"raised {exc.__class__.__name__}: {exc}"
        try:
            result = check(default_config(mutant), stop_at_first=True)
        except Exception as exc:
            result = exc
    seen = Outcome(name, "error", differs=before != after, restored=repr(mutant.probe()) == before,
                   probe_before=before, probe_after=after)
    if isinstance(result, Exception):
        return dataclasses.replace(seen, seconds=time.perf_counter() - started,
                                   error=f"{result.__class__.__name__}: {result}")
    seen = dataclasses.replace(seen, states=result.states, seconds=time.perf_counter() - started)
    if result.violations:
        first = min(result.violations, key=lambda v: len(v.steps) + len(v.cycle))
        return dataclasses.replace(
            seen, verdict="killed", invariant=first.invariant, kind=first.kind,
            steps=len(first.steps), cycle=len(first.cycle) if first.kind == "liveness" else None,
            also=tuple(v.invariant for v in result.violations if v is not first))
    if result.complete:
        return dataclasses.replace(seen, verdict="survived")
    return dataclasses.replace(seen, verdict="unknown", error=result.incomplete_reason)


def run(names: Sequence[str] | None = None, *, workers: int = 1,
        done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Check the named mutants (default: all), each in its own process; outcomes in catalogue order.

    Expected survivors are started first: they explore the whole world and take longest.
    """
    chosen = [m.name for m in CATALOGUE] if names is None else [by_name(n).name for n in names]
    order = sorted(chosen, key=lambda n: n not in EXPECTED_SURVIVORS and n not in SLOW)
    ctx = multiprocessing.get_context("spawn")
    found: dict[str, Outcome] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_mutant, name): name for name in order}
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            found[outcome.mutant] = outcome
            if done is not None:
                done(outcome)
    return [found[name] for name in chosen]


def expected(outcome: Outcome) -> bool:
    """Whether an outcome is what the catalogue promises: killed, or a listed survivor surviving."""
    if not (outcome.differs and outcome.restored):
        return False
    if outcome.mutant in EXPECTED_SURVIVORS:
        return outcome.verdict == "survived"
    return outcome.verdict == "killed"

