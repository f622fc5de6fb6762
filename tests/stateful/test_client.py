"""The client alone on fake time: attempts never overlap, delays follow the policy, the counter counts.

``TestClient`` runs :class:`~stateful.client_machine.ClientMachine` under the
``HYPOTHESIS_PROFILE`` profile with every fix on. The teeth below switch off each
fix the client machine owns and expect the named check to break under fixed,
derandomized settings; the same settings with every fix on find nothing. The
oracle's timing checks get teeth from mutants: a client with a subtly wrong delay,
monitor or stream handling (swapped in with ``monkeypatch``) must fail the check
that guards it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from model import client as cl
from model.backoff import BackoffPolicy, delay
from model.core import Action, StartTimer
from model.fixes import Fixes
from model.invariants import BOUNDED_COUNTER, SINGLE_STREAM
from stateful.client_machine import BACKOFF_POLICY, HEARTBEAT_TIMING, ClientCheckFailed, ClientMachine

TestClient = ClientMachine.TestCase
TestClient.settings = settings(suppress_health_check=[HealthCheck.too_slow])

CLIENT_TEETH_SETTINGS = settings(
    derandomize=True, database=None, max_examples=300, stateful_step_count=30, deadline=None,
    report_multiple_bugs=False, phases=(Phase.explicit, Phase.generate, Phase.shrink),
)

# (fix off, the check it must break): all three are the counter's, as model.fixes.FIXES says.
CLIENT_TEETH = [("heartbeat-guard", BOUNDED_COUNTER), ("stable-reset", BOUNDED_COUNTER),
                ("max-reconnect", BOUNDED_COUNTER)]


def _machine(fixes: Fixes) -> type[ClientMachine]:
    name = "ClientMachine_" + ("_".join(n.replace("-", "_") for n in fixes.off()) or "all_fixes")
    return type(name, (ClientMachine,), {"fixes": fixes, "__module__": __name__})


@pytest.mark.parametrize(("fix", "check"), CLIENT_TEETH)
def test_client_fix_off_breaks_its_check(fix: str, check: str) -> None:
    """With the fix off, the client machine's oracle catches the bug and names it."""
    with pytest.raises(ClientCheckFailed) as caught:
        run_state_machine_as_test(_machine(Fixes.all().without(fix)), settings=CLIENT_TEETH_SETTINGS)
    print(f"\n{fix} off -> {caught.value.check}: {caught.value}")
    print("\n".join(getattr(caught.value, "__notes__", ())))
    assert caught.value.check == check


def test_client_with_every_fix_on_passes_the_same_settings() -> None:
    """The teeth settings with every fix on find nothing."""
    run_state_machine_as_test(_machine(Fixes.all()), settings=CLIENT_TEETH_SETTINGS)


def _jitter_ignored(policy: BackoffPolicy, attempt: int, u: float, previous: float | None = None
                    ) -> float:
    return delay(policy, attempt, 0.5, previous)


def _one_attempt_behind(policy: BackoffPolicy, attempt: int, u: float,
                        previous: float | None = None) -> float:
    return delay(policy, max(1, attempt - 1), u, previous)


def _monitor_too_eager(cfg: cl.ClientConfig, state: cl.ClientState, now: float,
                       actions: list[Action]) -> cl.ClientState:
    actions.append(StartTimer(timer=cl.HEARTBEAT, at=now + cfg.heartbeat_timeout / 2))
    return state._replace(monitor=True)


def _close_forgets_the_stream(state: cl.ClientState, actions: list[Action]) -> cl.ClientState:
    return state._replace(stream=False, stable=False)


# (what the mutant breaks in model.client, the function swapped in, the check that must catch it)
MUTANTS = [
    ("delay", _jitter_ignored, BACKOFF_POLICY),
    ("delay", _one_attempt_behind, BACKOFF_POLICY),
    ("_start_monitor", _monitor_too_eager, HEARTBEAT_TIMING),
    ("_close", _close_forgets_the_stream, SINGLE_STREAM),
]


@pytest.mark.parametrize(("name", "mutant", "check"), MUTANTS,
                         ids=[m.__name__.strip("_") for _, m, _ in MUTANTS])
def test_the_oracle_catches_a_mutant_client(monkeypatch: pytest.MonkeyPatch, name: str,
                                            mutant: Callable[..., Any], check: str) -> None:
    """A client whose timing or streams are subtly wrong fails the named check (the oracle's teeth)."""
    monkeypatch.setattr(cl, name, mutant)
    with pytest.raises(ClientCheckFailed) as caught:
        run_state_machine_as_test(_machine(Fixes.all()), settings=CLIENT_TEETH_SETTINGS)
    print(f"\nmutant {mutant.__name__} -> {caught.value}")
    assert caught.value.check == check
