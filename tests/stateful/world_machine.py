"""A Hypothesis state machine over ``model.world``: the example to copy for your own.

The shape, in four parts:

* ``@initialize`` draws a :class:`~model.world.WorldConfig` (sizes, limits,
  timings, which fixes are on) from :func:`world_configs` and starts the world.
* One ``@rule`` per *kind* of transition (:class:`model.world.Kind`):
  every environment action and every fault. A rule's ``@precondition`` asks
  whether a transition of its kind is enabled now; the rule then draws one of
  the enabled ones by its label. Nothing is written twice: the world's own
  :func:`~model.world.successors` says what may happen and what it does.
* One ``@invariant`` per safety invariant in :data:`model.invariants.SAFETY`,
  each asking :func:`model.invariants.violations` -- the very predicate the
  exhaustive checker uses -- whether its name is among those broken.
* ``teardown`` is the heal phase (:func:`sims.heal.heal`): faults stop, the world
  is driven to quiescence deterministically, the safety invariants are judged
  on the way, and ``convergence`` is asserted at the end.

Rule choice has one documented bias (see "The scheduling bias" below): each run
also draws which fault kinds it suffers and which kinds of progress are slow.

A broken invariant raises :class:`InvariantViolation` (one subclass per name,
so Hypothesis shrinks each bug on its own) whose message lists the labels of
the steps taken; the labels are ``note()``-d too, so Hypothesis prints them
under its falsifying example.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from model.fixes import FIXES, Fixes
from model.invariants import CONVERGENCE, SAFETY, violations
from model.world import Kind, State, Transition, WorldConfig, enabled, flatten, initial
from sims.heal import heal

__all__ = [
    "INVISIBLE_FIXES",
    "SLOWABLE_KINDS",
    "WORLD_FAULT_KINDS",
    "Found",
    "InvariantViolation",
    "WorldMachine",
    "find_violation",
    "machine_for",
    "violation_type",
    "world_configs",
]

#: Fixes whose absence no world state can show (efficiency or service-level only):
#: the drawn configs switch them on and off freely, and nothing may break.
INVISIBLE_FIXES: tuple[str, ...] = tuple(info.name for info in FIXES if not info.worlds)

#: The faults the world can suffer, by their names in ``model.faults`` (in Kind's order).
WORLD_FAULT_KINDS: tuple[str, ...] = tuple(k.value for k in Kind if k.fault)
#: The world's progress kinds, in Kind's order (a stable order keeps derandomized runs stable).
PROGRESS: tuple[str, ...] = tuple(k.value for k in Kind if not k.fault)


# The scheduling bias, documented. Hypothesis picks uniformly among the rules whose
# preconditions hold, which in this world is lopsided in two ways, so each run draws
# two things next to its config (both printed in a counterexample, both shrunk by
# Hypothesis to what the counterexample needs):
#
# * its *fault kinds*, at most as many as its fault budget. Eight fault rules compete
#   with a handful of progress rules, so the budget is otherwise spent in the first
#   steps on whichever faults come first. A run with N faults uses at most N kinds,
#   so this loses no trace; it is swarm testing, restricted to faults.
# * its *slow kinds*: a transition of a slow kind is taken only when no other
#   progress (time passing and faults aside) is enabled -- a load balancer slow to
#   accept, a snapshot slow to load. This too only chooses among the world's own
#   interleavings. Uniform choice rarely delays one kind of step for several others
#   in a row, which some seed bugs need (replay-failed-signal: events pass through
#   Redis before the stream is accepted; head-before-snapshot: commits land while
#   a snapshot loads).
#
# Nothing else is weighted and no trace is written down anywhere.

#: Progress kinds a run may draw as slow (all but time passing).
SLOWABLE_KINDS: tuple[str, ...] = tuple(k for k in PROGRESS if k != Kind.TICK.value)


# ---------------------------------------------------------------- configs


@st.composite
def world_configs(draw: st.DrawFn, /, *, fixes: Fixes | None = None, start_cursor: int | None = None,
                  without_faults: tuple[str, ...] = (),
                  **fixed: int | tuple[int, int]) -> WorldConfig:
    """Small worlds: 1-2 clients, replicas and publishers, up to 4 events and 3 faults.

    ``fixes`` (default: all on) is the base; the fixes in :data:`INVISIBLE_FIXES`
    are drawn on or off on top of it. A keyword pins a size (``publishers=2``) or
    narrows its range (``faults=(1, 2)``); ``start_cursor=0`` starts the clients
    resuming from ``0-0`` instead of as fresh browsers.
    """
    ranges = {
        "clients": (1, 2), "replicas": (1, 2), "publishers": (1, 2), "events": (1, 4),
        "faults": (0, 3), "max_attempts": (1, 3), "replay_limit": (1, 3),
        "heartbeat_timeout": (1, 3), "heartbeat_check_interval": (1, 2),
        "sentinel_interval": (1, 4), "sentinel_timeout": (1, 2), "backoff_base": (0, 2),
        "backoff_cap": (1, 4),
    }
    unknown = set(fixed) - set(ranges)
    if unknown:
        raise TypeError(f"world_configs() cannot pin {sorted(unknown)}")
    sizes: dict[str, int] = {}
    for name, (lo, hi) in ranges.items():
        pinned = fixed.get(name, (lo, hi))
        if isinstance(pinned, int):
            sizes[name] = pinned
        else:
            sizes[name] = draw(st.integers(*pinned), label=name)
    base = Fixes.all() if fixes is None else fixes
    off = [name for name in INVISIBLE_FIXES if not draw(st.booleans(), label=f"{name} on")]
    return WorldConfig(**sizes, start_cursor=start_cursor, without_faults=without_faults,
                       fixes=base.without(*off) if off else base)


# ---------------------------------------------------------------- failures


class InvariantViolation(AssertionError):
    """A shared invariant broke; ``invariant`` is its name, ``trace`` the labels that broke it."""

    invariant: ClassVar[str] = ""

    def __init__(self, message: str, trace: tuple[str, ...]) -> None:
        super().__init__(message)
        self.trace = trace


_TYPES: dict[str, type[InvariantViolation]] = {
    name: type(name.title().replace("-", "") + "Violated", (InvariantViolation,),
               {"invariant": name, "__module__": __name__})
    for name in (*SAFETY, CONVERGENCE)
}


def violation_type(name: str) -> type[InvariantViolation]:
    """The exception raised when the invariant ``name`` breaks."""
    return _TYPES[name]


def _describe(cfg: WorldConfig, trace: tuple[str, ...], s: State, what: str) -> str:
    lines = [what, f"config: {cfg.to_dict()}", f"steps ({len(trace)}):"]
    lines += [f"  {n:>3}. {text}" for n, text in enumerate(trace, 1)]
    lines.append("state at the violation:")
    lines += [f"  {k} = {v}" for k, v in flatten(cfg, s).items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- the machine


def _kind_rule(kind: str, doc: str) -> Callable[..., None]:
    """A rule taking one enabled transition of ``kind``, drawn by its label."""

    def take(self: WorldMachine, data: st.DataObject) -> None:
        self.take(kind, data)

    def allowed(self: WorldMachine) -> bool:
        return self.allowed(kind)

    # Named before decorating: Hypothesis prints a step as ``state.<name>(...)``.
    take.__name__ = take.__qualname__ = kind.replace(".", "_").replace("-", "_")
    take.__doc__ = doc
    allowed.__name__ = allowed.__qualname__ = f"{take.__name__}_enabled"
    return precondition(allowed)(rule(data=st.data())(take))


def _safety_invariant(name: str) -> Callable[..., None]:
    """An invariant asking the shared predicate whether ``name`` holds."""

    def holds(self: WorldMachine) -> None:
        self.judge(name)

    holds.__name__ = holds.__qualname__ = "holds_" + name.replace("-", "_")
    holds.__doc__ = f"The shared invariant {name!r} holds (model.invariants.violations)."
    return invariant()(holds)


class WorldMachine(RuleBasedStateMachine):
    """Random runs of the composed world, judged by the shared invariants, healed at the end."""

    #: Where configs come from; :func:`machine_for` makes subclasses with other ones.
    configs: ClassVar[st.SearchStrategy[WorldConfig]] = world_configs()
    #: Whether teardown runs the heal phase and asserts convergence.
    healing: ClassVar[bool] = True
    #: Whether each run draws its fault kinds and slow kinds (the scheduling bias above).
    scheduling_bias: ClassVar[bool] = True
    #: The safety invariants judged after every step (all of them unless a test narrows it).
    judged: ClassVar[frozenset[str]] = frozenset(SAFETY)
    #: Rule steps and runs since the counters were reset (for benchmarks/bug_hunt.py).
    counters: ClassVar[dict[str, float]] = {"runs": 0, "steps": 0}

    def __init__(self) -> None:
        super().__init__()
        self.cfg: WorldConfig | None = None
        self.state: State | None = None
        self.trace: list[str] = []
        self.broken = False
        self.slow: frozenset[str] = frozenset()
        self.fault_kinds: frozenset[str] = frozenset(WORLD_FAULT_KINDS)
        self._moves: dict[str, list[Transition]] | None = None
        self._violations: list[str] | None = None

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """Draw the world's config and start it: clients connecting, subscribers healthy."""
        self.cfg = data.draw(type(self).configs, label="config")
        self.state = initial(self.cfg)
        if type(self).scheduling_bias:
            budget = self.cfg.faults
            picks = data.draw(st.lists(st.sampled_from(WORLD_FAULT_KINDS), min_size=min(budget, 1),
                                       max_size=budget), label="fault kinds")
            self.fault_kinds = frozenset(picks)
            self.slow = data.draw(st.frozensets(st.sampled_from(SLOWABLE_KINDS)), label="slow kinds")
        self._changed()
        type(self).counters["runs"] += 1

    # -- what may happen now, by kind, computed once per state

    def moves(self, kind: str) -> list[Transition]:
        """The enabled transitions of ``kind`` in the current state."""
        if self._moves is None:
            assert self.cfg is not None and self.state is not None
            grouped: dict[str, list[Transition]] = {}
            for t in enabled(self.cfg, self.state):
                grouped.setdefault(t.kind.value, []).append(t)
            unruled = set(grouped) - set(RULED_KINDS)
            if unruled:
                raise AssertionError(f"the world has transition kinds without a rule: {unruled}")
            self._moves = grouped
        return self._moves.get(kind, [])

    def allowed(self, kind: str) -> bool:
        """Whether the rule of ``kind`` may run: enabled, a fault of this run, not held back as slow."""
        if not self.moves(kind):
            return False
        if kind in WORLD_FAULT_KINDS:
            return kind in self.fault_kinds
        if kind not in self.slow:
            return True
        return not any(self.moves(k) for k in SLOWABLE_KINDS if k not in self.slow)

    def take(self, kind: str, data: st.DataObject) -> None:
        """Take one enabled transition of ``kind``, chosen by its label."""
        options = {t.sentence: t for t in reversed(self.moves(kind))}  # a repeated one: its first
        labels = list(reversed(options))
        text = labels[0] if len(labels) == 1 else data.draw(st.sampled_from(labels), label=kind)
        self.state = options[text].state
        self.trace.append(text)
        self._changed()
        type(self).counters["steps"] += 1
        note(f"{len(self.trace):>3}. {text}")

    def _changed(self) -> None:
        self._moves = None
        self._violations = None

    # -- rules: one per kind of environment action, machine step and fault

    publish = _kind_rule("publish", "A publisher takes an id, commits, or publishes to Redis.")
    deliver = _kind_rule("deliver", "Redis delivers the next message (event or sentinel) to a replica.")
    accept = _kind_rule("accept", "A replica takes a client's stream and registers it for live fan-out.")
    open = _kind_rule("open", "The replica reads the head and opens the stream's session.")
    refuse = _kind_rule("refuse", "A connection attempt is refused: no replica is up.")
    replay = _kind_rule("replay", "Postgres answers a running replay query.")
    receive = _kind_rule("receive", "A client receives the next frame on its stream.")
    snapshot = _kind_rule("snapshot", "A client's snapshot (re-hydration) finishes loading.")
    timer = _kind_rule("timer", "A due timer fires: heartbeat check, backoff, sentinel, sentinel timeout.")
    tick = _kind_rule("tick", "Time passes: every running timer moves on by one tick.")
    wake = _kind_rule("wake", "A sleeping laptop wakes; its timers are all due.")
    reconnect = _kind_rule("reconnect", "A disconnected Redis subscriber reconnects.")
    replica_up = _kind_rule("replica-up", "A replica that went down comes back up.")
    trigger = _kind_rule("trigger", "The browser goes online or the page becomes visible.")
    retry = _kind_rule("retry", "The user presses Retry on a failed client: recover().")
    probe = _kind_rule("probe", "A replica's head probe reads the topic head for its streams.")
    reauth = _kind_rule("reauth", "A replica's re-check finds a stream's token revoked.")

    network_drop = _kind_rule("network.drop", "Fault: a client's stream drops; both ends see it.")
    network_stall = _kind_rule("network.stall", "Fault: a client's stream goes silent without closing.")
    clients_sleep = _kind_rule("clients.sleep", "Fault: a laptop sleeps; its timers and stream freeze.")
    redis_subscriber_dies = _kind_rule("redis.subscriber_dies",
                                       "Fault: a replica's subscriber link dies silently.")
    redis_disconnect = _kind_rule("redis.disconnect", "Fault: a subscriber link drops visibly.")
    postgres_replay_fails = _kind_rule("postgres.replay_fails", "Fault: a replay query fails.")
    redis_publish_lost = _kind_rule("redis.publish_lost",
                                    "Fault: a publish to Redis is lost after its commit.")
    postgres_snapshot_fails = _kind_rule("postgres.snapshot_fails", "Fault: a snapshot load fails.")
    auth_revoke = _kind_rule("auth.revoke", "Fault: a streaming client's token is revoked.")
    postgres_prune = _kind_rule("postgres.prune", "Fault: retention prunes the oldest kept event.")
    replicas_down = _kind_rule("replicas.down", "Fault: a replica goes down and drops its streams.")

    @precondition(lambda self: not any(self.allowed(k) for k in RULED_KINDS))
    @rule()
    def quiescent(self) -> None:
        """Nothing may happen (no timer runs, nothing is owed, no fault of this run): the world rests."""
        note(f"{len(self.trace):>3}. (nothing can happen)")

    # -- invariants: one per shared safety invariant, the checker's own predicate

    holds_bounded_counter = _safety_invariant("bounded-counter")
    holds_failed_only_after_max = _safety_invariant("failed-only-after-max")
    holds_bounded_replay = _safety_invariant("bounded-replay")
    holds_no_silent_stale = _safety_invariant("no-silent-stale")
    holds_detection_bound = _safety_invariant("detection-bound")
    holds_single_stream = _safety_invariant("single-stream")
    holds_ordered_delivery = _safety_invariant("ordered-delivery")
    holds_no_stream_without_cursor = _safety_invariant("no-stream-without-cursor")
    holds_revoked_stream_ends = _safety_invariant("revoked-stream-ends")

    def judge(self, name: str) -> None:
        """Raise if the current state breaks the shared invariant ``name``."""
        assert self.cfg is not None and self.state is not None
        if name not in type(self).judged:
            return
        if self._violations is None:
            self._violations = violations(self.cfg, self.state)
        if name in self._violations:
            self._fail(name, self.state, tuple(self.trace), f"{name} violated")

    def _fail(self, name: str, s: State, trace: tuple[str, ...], what: str) -> None:
        assert self.cfg is not None
        self.broken = True
        counters = type(self).counters
        if "first_steps" not in counters:  # the cost of finding it, for benchmarks/bug_hunt.py
            counters.update(first_runs=counters["runs"], first_steps=counters["steps"],
                            first_seconds=time.perf_counter() - counters.get("started", 0.0))
        raise violation_type(name)(_describe(self.cfg, trace, s, what), trace)

    # -- the heal phase

    def teardown(self) -> None:
        """Heal: no more faults, drive to quiescence, judge safety on the way, then convergence."""
        if not type(self).healing or self.broken or self.cfg is None or self.state is None:
            return
        cfg = self.cfg
        healed = heal(cfg, self.state)
        trace = tuple(self.trace)
        judged = type(self).judged
        for n, s in enumerate(healed.states if judged else (), 1):
            bad = [name for name in violations(cfg, s) if name in judged]
            if bad:
                steps = (*trace, "-- heal --", *(t.sentence for t in healed.steps[:n]))
                self._fail(bad[0], s, steps, f"{bad[0]} violated during the heal phase")
        if not healed.converged:
            shown = tuple(t.sentence for t in healed.steps[-HEAL_STEPS_SHOWN:])
            skipped = len(healed.steps) - len(shown)
            steps = (*trace, "-- heal --", *([f"({skipped} heal steps)"] if skipped else []), *shown)
            self._fail(CONVERGENCE, healed.final, steps,
                       f"convergence: {healed.reason}; clients {list(healed.not_converged)} "
                       "not live and up to date")


#: How many of a failed heal's last steps a convergence failure lists.
HEAL_STEPS_SHOWN = 12

#: Every kind the world's transitions can have, each with its rule above.
RULED_KINDS: tuple[str, ...] = (*PROGRESS, *WORLD_FAULT_KINDS)


# ---------------------------------------------------------------- running it for teeth and benchmarks


def machine_for(fixes: Fixes, *, healing: bool = True, judged: frozenset[str] = frozenset(SAFETY),
                sizes: Mapping[str, Any] | None = None,
                start_cursor: int | None = None) -> type[WorldMachine]:
    """A WorldMachine subclass whose configs have ``fixes`` (plus invisible ones) and pinned sizes."""
    off = "_".join(n.replace("-", "_") for n in fixes.off()) or "all_fixes"
    return type(f"WorldMachine_{off}", (WorldMachine,), {
        "configs": world_configs(fixes=fixes, start_cursor=start_cursor, **(sizes or {})),
        "healing": healing,
        "judged": judged,
        "counters": {"runs": 0, "steps": 0},
        "__module__": __name__,
    })


class Found:
    """What a search found: the invariant, the shrunk trace, and what finding it cost."""

    def __init__(self, invariant: str, trace: tuple[str, ...], report: str, *,
                 counters: dict[str, float], seconds: float, others: tuple[str, ...] = ()) -> None:
        self.invariant = invariant
        self.trace = trace
        self.report = report  #: the violation's message and Hypothesis's falsifying example
        self.runs = int(counters.get("first_runs", 0))  #: runs (examples) until the first violation
        self.steps = int(counters.get("first_steps", 0))  #: rule steps over all those runs
        self.first_seconds = counters.get("first_seconds", 0.0)  #: wall time to the first violation
        self.seconds = seconds  #: wall time including shrinking
        self.others = others  #: other invariants reported in the same run

    def __repr__(self) -> str:
        return f"Found({self.invariant!r}, {len(self.trace)} steps, runs={self.runs})"


def find_violation(machine: type[WorldMachine], hypothesis_settings: settings) -> Found | None:
    """Run ``machine`` under ``hypothesis_settings``; the shrunk violation, or None if none."""
    counters = machine.counters
    counters.clear()
    counters.update(runs=0, steps=0, started=time.perf_counter())
    caught: list[InvariantViolation] = []
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings)
    except InvariantViolation as exc:
        caught.append(exc)
    except BaseExceptionGroup as group:
        matched, rest = group.split(InvariantViolation)
        if rest is not None or matched is None:
            raise
        caught.extend(e for e in _leaves(matched) if isinstance(e, InvariantViolation))
    if not caught:
        return None
    top = caught[0]
    notes = "\n".join(getattr(top, "__notes__", ()))
    return Found(top.invariant, top.trace, f"{top}\n{notes}", counters=counters,
                 seconds=time.perf_counter() - counters["started"],
                 others=tuple(e.invariant for e in caught[1:]))


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
