"""The heal phase: faults stop, the world is driven to quiescence, convergence is judged.

Why. Safety invariants hold or fail in one state; ``convergence`` is about where
a run *ends*, which a random walk (Hypothesis) or a timed fleet cannot see on its
own. After such a run, :func:`heal` takes the world where the run left it,
allows no more faults, and drives it deterministically until every publish has
happened and every client is live and up to date -- or a step budget runs out,
which is a convergence failure, never a pass.

How. At each step it takes the first enabled non-fault transition by a fixed
priority of transition kinds (:data:`HEAL_PRIORITY`), the first of that kind in
:func:`model.world.enabled` order. "Faults stop"
comes first: laptops wake, replicas come back up and Redis links reconnect before
anything else, so no retry loop can starve them. A ``failed``
client is recovered by pressing Retry (the user's ``recover()``), as the
invariant allows. Every state passed is returned, so a caller can judge the
safety invariants along the way too.

Why this order. Waking, replicas coming up and links reconnecting come first:
with a zero backoff a client's "timer fires, connection refused" loop would
otherwise never let a replica come back, a livelock of the driver, not of the
world. Retry comes before time, and the browser's online / visible triggers come
last (only when no time can pass), so a waiting client waits out its backoff as
it would with nobody at the keyboard, and a failed client is recovered by Retry,
as the convergence invariant states it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from model.invariants import converged
from model.world import PROGRESS_KINDS, Kind, State, Transition, WorldConfig, enabled, pubs_idle

__all__ = ["HEAL_PRIORITY", "HealResult", "default_budget", "heal", "settled"]

#: Progress kinds in the order the heal phase takes them (see the module docstring).
HEAL_PRIORITY: tuple[Kind, ...] = (
    Kind.WAKE, Kind.REPLICA_UP, Kind.RECONNECT, Kind.TIMER, Kind.PROBE, Kind.REAUTH,
    Kind.SNAPSHOT, Kind.RECEIVE,
    Kind.REPLAY, Kind.ACCEPT, Kind.OPEN, Kind.REFUSE, Kind.DELIVER, Kind.PUBLISH, Kind.RETRY, Kind.TICK,
    Kind.TRIGGER,
)

assert set(HEAL_PRIORITY) == PROGRESS_KINDS, "HEAL_PRIORITY must order every progress kind"


@dataclasses.dataclass(frozen=True)
class HealResult:
    """Where a heal ended: converged or not, the steps taken and the states passed."""

    converged: bool
    steps: tuple[Transition, ...]  #: the transitions taken, in order
    states: tuple[State, ...]  #: the state after each step (same length as ``steps``)
    final: State
    reason: str  #: why it stopped, in words
    not_converged: tuple[int, ...]  #: clients not live and up to date at the end


def settled(cfg: WorldConfig, s: State) -> bool:
    """Whether nothing is left to publish and every client is live and up to date."""
    if s.published < cfg.events or not pubs_idle(s):
        return False
    return all(converged(cfg, s, i) for i in range(cfg.clients))


def default_budget(cfg: WorldConfig) -> int:
    """A generous step budget for healing a world of ``cfg``."""
    # Every event reaches everyone, every link is checked by a sentinel round, every
    # client backs off to its maximum and recovers: about five times the longest heal
    # seen in 3,000 random runs of worlds with up to 2 clients, 2 replicas, 4 events.
    per_client = (cfg.max_attempts + 1) * (cfg.backoff_cap + cfg.heartbeat_timeout + 6)
    return (50 + 6 * cfg.events * (cfg.clients + cfg.replicas)
            + 3 * cfg.detection_bound * cfg.replicas + cfg.clients * per_client)


def heal(cfg: WorldConfig, state: State, *, budget: int | None = None,
         priority: Sequence[Kind] = HEAL_PRIORITY) -> HealResult:
    """Drive ``state`` with no more faults until it settles or ``budget`` steps are spent."""
    limit = default_budget(cfg) if budget is None else budget
    rank = {kind: n for n, kind in enumerate(priority)}
    steps: list[Transition] = []
    states: list[State] = []
    current = state

    def result(ok: bool, reason: str) -> HealResult:
        lagging = tuple(i for i in range(cfg.clients) if not converged(cfg, current, i))
        return HealResult(ok, tuple(steps), tuple(states), current, reason, lagging)

    while True:
        if settled(cfg, current):
            return result(True, f"settled after {len(steps)} steps")
        if len(steps) >= limit:
            return result(False, f"step budget {limit} spent without converging")
        best: tuple[int, Transition] | None = None
        for t in enabled(cfg, current):
            r = rank.get(t.kind)
            if r is None or t.kind.fault:
                continue
            if best is None or r < best[0]:
                best = (r, t)
        if best is None:
            return result(False, f"stuck after {len(steps)} steps: no progress transition enabled")
        step = best[1]
        current = step.state
        steps.append(step)
        states.append(current)
