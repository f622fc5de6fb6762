"""The attempts witness counts what really happened, whatever the machine's counter says."""

from __future__ import annotations

from model import client as cl
from model.core import Action, EventId, UnhandledActionError, dispatch, ignore
from model.fixes import Fixes
from model.witness import AttemptsWitness, observe


def _run(cfg: cl.ClientConfig, events: list[cl.ClientInput]) -> tuple[cl.ClientState, AttemptsWitness]:
    state, witness = cl.initial(EventId(0, 0)), AttemptsWitness()
    for event in events:
        after, acts = cl.step(cfg, state, event)
        witness = observe(witness, event, state, after, acts)
        state = after
    return state, witness


def test_the_witness_counts_opens_and_restarts_on_the_first_message() -> None:
    cfg = cl.ClientConfig(max_attempts=5)
    state, w = _run(cfg, [cl.Start(), cl.StreamFailed(reason="refused"),
                          cl.TimerFired(timer=cl.BACKOFF)])
    assert w.started == 2 == state.attempts
    state, w2 = _run(cfg, [cl.Start(), cl.StreamOpened(), cl.HeartbeatReceived()])
    assert w2 == AttemptsWitness(0, True) and state.attempts == 0


def test_the_witness_disagrees_with_a_counter_that_resets_on_open() -> None:
    cfg = cl.ClientConfig(max_attempts=5, fixes=Fixes().without("stable-reset"))
    state, w = _run(cfg, [cl.Start(), cl.StreamOpened(), cl.StreamClosed(reason="drop"),
                          cl.TimerFired(timer=cl.BACKOFF)])
    assert w.started == 2 and state.attempts == 1


def test_dispatch_is_loud_about_an_action_without_a_handler() -> None:
    seen: list[Action] = []
    table = {cl.OpenStream: seen.append, cl.StatusChanged: ignore}
    dispatch(table, [cl.OpenStream(last_event_id=None)], shell="test")
    assert len(seen) == 1
    try:
        dispatch(table, [cl.CloseStream()], shell="test")
    except UnhandledActionError as exc:
        assert "CloseStream" in str(exc) and "OpenStream" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("an unknown action passed silently")
