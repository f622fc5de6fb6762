"""The heal driver (``sims.heal``): it converges where the world can, and says so when it cannot."""

from __future__ import annotations

from model.fixes import Fixes
from model.invariants import converged, violations
from model.world import PROGRESS_KINDS, Kind, State, WorldConfig, enabled, initial
from sims.heal import HEAL_PRIORITY, default_budget, heal


def _after(cfg: WorldConfig, *sentences: str) -> State:
    """The state reached from the start by the transitions whose sentences are ``sentences``."""
    state = initial(cfg)
    for sentence in sentences:
        state = next(t.state for t in enabled(cfg, state) if t.sentence == sentence)
    return state


def test_a_fresh_world_settles_with_every_event_everywhere() -> None:
    """From the start, every publish happens and every client ends live and up to date."""
    cfg = WorldConfig(clients=2, replicas=2, events=3)
    result = heal(cfg, initial(cfg))
    assert result.converged, result.reason
    assert result.final.published == 3 and result.final.db.head == 3
    assert all(converged(cfg, result.final, i) for i in range(2))
    assert not any(violations(cfg, s) for s in result.states)


def test_heal_is_deterministic_and_takes_no_fault() -> None:
    """Two heals of one state take the same steps, and none of them is a fault."""
    cfg = WorldConfig(clients=2, events=2, faults=3)
    start = _after(cfg, "replica 0 goes down", "client 0's connection is refused")
    first, second = heal(cfg, start), heal(cfg, start)
    assert first.steps == second.steps and first.converged
    assert first.final.faults == start.faults


def test_a_failed_client_is_recovered_by_retry() -> None:
    """Failed after the maximum, the client converges once the heal presses Retry."""
    cfg = WorldConfig(max_attempts=1, events=1)
    failed = _after(cfg, "replica 0 goes down", "client 0's connection is refused")
    assert failed.clients[0].machine.status.value == "failed"
    result = heal(cfg, failed)
    assert result.converged, result.reason
    sentences = [t.sentence for t in result.steps]
    assert "client 0: user presses Retry" in sentences
    assert result.steps[0].kind is Kind.REPLICA_UP  # faults stop first
    assert not any(t.kind.fault for t in result.steps)


def test_a_spent_budget_is_a_failure_not_a_pass() -> None:
    """Zero steps allowed on an unsettled world: not converged, and the reason says why."""
    cfg = WorldConfig()
    result = heal(cfg, initial(cfg), budget=0)
    assert not result.converged
    assert "budget 0 spent" in result.reason
    assert result.not_converged == (0,)


def test_a_silently_dead_subscriber_without_health_checks_never_converges() -> None:
    """F4 off: the event lost in a dead link never arrives; the heal runs out of budget."""
    # (the head probe would bring the lost event too: defence in depth, so it is off here)
    cfg = WorldConfig(fixes=Fixes.all().without("F4", "head-probe"), events=1)
    start = _after(cfg, "replica 0 accepts client 0's stream",
                   "redis: subscriber of replica 0 dies silently")
    result = heal(cfg, start)
    assert not result.converged
    assert result.not_converged == (0,)
    assert len(result.steps) <= default_budget(cfg)


def test_priority_orders_every_progress_kind_once() -> None:
    """The heal's priority is a permutation of the world's progress kinds, faults ending first."""
    assert len(HEAL_PRIORITY) == len(PROGRESS_KINDS) and set(HEAL_PRIORITY) == PROGRESS_KINDS
    assert HEAL_PRIORITY[:3] == (Kind.WAKE, Kind.REPLICA_UP, Kind.RECONNECT)
