"""The client machine: every status against every input, with all fixes on and all off.

Reachable states (a search from a fresh client) must either be handled, keeping
the client's rules (one stream, a counter of real attempts, failed only after
the maximum, timers that match the status...), or refused with a
LocalProtocolError that names the state and the input. Every other combination
of flags must at least never raise anything else.
"""

from __future__ import annotations

import pytest
from machine_spaces import (
    CLIENT_INPUT_KINDS,
    CLIENT_INPUTS,
    FIXSETS,
    MAX_ATTEMPTS,
    client_config,
    client_reachable,
    client_representatives,
)

from model import client as cl
from model.core import Action, CancelTimer, EventId, LocalProtocolError, StartTimer
from model.fixes import Fixes

STATUSES = list(cl.Status)

#: Refusals raised inside a handler: (words naming the input, words naming the state).
GUARDS: dict[str, tuple[str, str]] = {
    "StreamOpened": ("stream opened", "no attempt is in flight"),
    "StreamFailed": ("attempt failed", "no attempt is in flight"),
    "TimerFired(heartbeat)": ("heartbeat timer fired", "the monitor is stopped"),
    "TimerFired(backoff)": ("backoff timer fired", "while {status}"),
    "TimerFired(unknown)": ("unknown client timer 'no-such-timer'", ""),
    "RehydrateDone": ("snapshot reported", "none is in flight"),
    "RehydrateFailed": ("snapshot failure reported", "none is in flight"),
}


def states_for(fixset: str, status: cl.Status) -> list[cl.ClientState]:
    """Reachable states of this status (a plain failed client when failed is unreachable)."""
    states = sorted((s for s in client_reachable(fixset) if s.status is status), key=repr)
    if not states:
        assert (fixset, status) == ("all-off", cl.Status.FAILED), "every other status is reachable"
        states = [cl.ClientState(status=cl.Status.FAILED)]
    return states


def check_refusal(state: cl.ClientState, kind: str, event: cl.ClientInput,
                  exc: LocalProtocolError) -> None:
    """A refusal names the state and the input, and says what to do."""
    assert exc.message and exc.hint
    if (state.status, type(event)) not in cl.TRANSITIONS:
        assert f"status {state.status.value!r}" in exc.message
        assert type(event).__name__ in exc.message
        accepted = sorted(t.__name__ for (st, t) in cl.TRANSITIONS if st is state.status)
        assert exc.hint == "accepted here: " + ", ".join(accepted)
        return
    names_input, names_state = GUARDS[kind]
    assert names_input in exc.message
    assert names_state.format(status=state.status.value) in exc.message


def check_handled(cfg: cl.ClientConfig, s: cl.ClientState, e: cl.ClientInput,
                  n: cl.ClientState, actions: list[Action]) -> None:
    """The rules every handled client input keeps."""
    fixes = cfg.fixes
    assert isinstance(n, cl.ClientState) and isinstance(n.status, cl.Status)
    assert isinstance(n.rehydration, cl.Rehydration)
    assert all(isinstance(a, Action) for a in actions)
    hash(n)  # states stay hashable (the checker stores them)

    # single-stream: OpenStream only when no stream is held (closing one first is fine).
    held = s.stream and not isinstance(e, cl.StreamFailed | cl.StreamClosed)
    opens = [a for a in actions if isinstance(a, cl.OpenStream)]
    for a in actions:
        if isinstance(a, cl.CloseStream):
            assert held, "CloseStream without a stream"
            held = False
        elif isinstance(a, cl.OpenStream):
            assert not held, "OpenStream while a stream is held"
            held = True
    if not isinstance(e, cl.Recover):
        assert held == n.stream
    assert len(opens) <= 1
    if opens:
        assert n.status is cl.Status.CONNECTING and n.stream
        assert opens[0].last_event_id == n.last_event_id

    # The counter counts real attempts: it moves up only by opening a stream (or, seed code
    # with heartbeat-guard off, on a heartbeat check), and never past the maximum with F5.
    assert n.attempts >= 0
    if n.attempts > s.attempts:
        assert opens or (not fixes.heartbeat_guard and isinstance(e, cl.TimerFired))
        if opens and fixes.heartbeat_guard:
            assert n.attempts == (0 if isinstance(e, cl.Start) else s.attempts) + 1
    if fixes.max_reconnect and s.attempts <= cfg.max_attempts:
        assert n.attempts <= cfg.max_attempts

    # failed-only-after-max: failed only with F5, after the maximum, with the cursor cleared;
    # left only by recover() (or a trigger that calls it) re-hydrating first, or by Stop.
    if n.status is cl.Status.FAILED:
        assert fixes.max_reconnect or s.status is cl.Status.FAILED
        assert n.last_event_id is None
        assert not n.stream and not n.monitor
        if s.status is not cl.Status.FAILED:
            assert n.attempts >= cfg.max_attempts
    if s.status is cl.Status.FAILED and n.status is not cl.Status.FAILED:
        assert isinstance(e, cl.Recover | cl.Online | cl.Visible | cl.Stop)
        if not isinstance(e, cl.Stop):
            assert not opens and n.rehydration is cl.Rehydration.RUNNING
            assert n.attempts == 0

    # The status shown to the user: one StatusChanged exactly when it changes.
    changes = [a for a in actions if isinstance(a, cl.StatusChanged)]
    if n.status is s.status:
        assert not changes
    else:
        assert changes == [cl.StatusChanged(status=n.status, attempts=n.attempts)]

    # Timers match the status.
    started = {a.timer for a in actions if isinstance(a, StartTimer)}
    assert started <= {cl.HEARTBEAT, cl.BACKOFF}
    if cl.BACKOFF in started:
        assert n.status is cl.Status.WAITING
    if n.status is cl.Status.WAITING and s.status is not cl.Status.WAITING:
        assert cl.BACKOFF in started
    if s.status is cl.Status.WAITING and n.status is not cl.Status.WAITING \
            and not isinstance(e, cl.TimerFired):
        assert CancelTimer(timer=cl.BACKOFF) in actions
    if n.monitor and not s.monitor:
        assert cl.HEARTBEAT in started
    if s.monitor and not n.monitor:
        assert CancelTimer(timer=cl.HEARTBEAT) in actions or (
            isinstance(e, cl.TimerFired) and e.timer == cl.HEARTBEAT) or isinstance(e, cl.Recover)
    if fixes.heartbeat_guard:
        assert not n.monitor or n.status is cl.Status.CONNECTED  # F3: no check while connecting
        if isinstance(e, cl.TimerFired) and e.timer == cl.HEARTBEAT \
                and s.status is not cl.Status.CONNECTED:
            assert (n, actions) == (s, [])  # the guard: `if (this.isConnecting) return`

    # One snapshot at a time; a started one is tracked as running.
    rehydrates = [a for a in actions if isinstance(a, cl.StartRehydrate)]
    assert len(rehydrates) <= 1
    if rehydrates:
        assert s.rehydration is not cl.Rehydration.RUNNING
        assert n.rehydration is cl.Rehydration.RUNNING
        assert rehydrates[0].head_first is fixes.head_before_snapshot

    # Delivery is idempotent: only newer events reach the application, once.
    delivered = [a for a in actions if isinstance(a, cl.Deliver)]
    assert len(delivered) <= 1
    if delivered:
        assert isinstance(e, cl.EventReceived) and delivered[0].event_id == e.event_id
        assert n.last_event_id == e.event_id
    if isinstance(e, cl.EventReceived) and s.last_event_id == e.event_id:
        assert not delivered

    if cl.is_live(n):
        assert n.stream and n.monitor


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("kind", CLIENT_INPUT_KINDS)
@pytest.mark.parametrize("status", STATUSES, ids=[s.value for s in STATUSES])
def test_every_reachable_state_handles_or_refuses_every_input(
        status: cl.Status, kind: str, fixset: str) -> None:
    cfg = client_config(FIXSETS[fixset])
    for state in states_for(fixset, status):
        for event in CLIENT_INPUT_KINDS[kind]:
            try:
                n, actions = cl.step(cfg, state, event)
            except LocalProtocolError as exc:
                check_refusal(state, kind, event, exc)
            else:
                check_handled(cfg, state, event, n, actions)


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("status", STATUSES, ids=[s.value for s in STATUSES])
def test_any_flags_are_handled_or_refused_never_crash(status: cl.Status, fixset: str) -> None:
    cfg = client_config(FIXSETS[fixset])
    for state in (s for s in client_representatives() if s.status is status):
        for event in CLIENT_INPUTS:
            try:
                n, actions = cl.step(cfg, state, event)
            except LocalProtocolError as exc:
                assert exc.message and exc.hint
            else:
                assert isinstance(n, cl.ClientState)
                assert all(isinstance(a, Action) for a in actions)


def test_every_status_is_reachable_and_failed_needs_max_reconnect() -> None:
    assert {s.status for s in client_reachable("all-on")} == set(cl.Status)
    assert {s.status for s in client_reachable("all-off")} == set(cl.Status) - {cl.Status.FAILED}
    flags = {(s.rehydration, s.stream, s.monitor) for s in client_reachable("all-on")}
    assert {r for r, _, _ in flags} == set(cl.Rehydration)


def test_every_table_entry_is_used_by_a_reachable_state() -> None:
    used = set()
    for fixset, fixes in FIXSETS.items():
        cfg = client_config(fixes)
        for state in client_reachable(fixset):
            for event in CLIENT_INPUTS:
                try:
                    cl.step(cfg, state, event)
                except LocalProtocolError:
                    continue
                used.add((state.status, type(event)))
    # Timers are dispatched by name from every status; idle and failed arm none (and a
    # connecting client has a timer only with heartbeat-guard off, the seed's race).
    idle_timers = {(cl.Status.IDLE, cl.TimerFired), (cl.Status.FAILED, cl.TimerFired)}
    assert set(cl.TRANSITIONS) - used == idle_timers


def test_refusal_leaves_the_callers_state_untouched() -> None:
    state = cl.ClientState(status=cl.Status.IDLE, last_event_id=EventId(0, 1))
    before = repr(state)
    with pytest.raises(LocalProtocolError, match="'idle' cannot take StreamOpened"):
        cl.step(client_config(Fixes()), state, cl.StreamOpened())
    assert repr(state) == before


def test_the_counter_resets_only_on_the_first_message_with_stable_reset() -> None:
    cfg = client_config(Fixes())
    s, _ = cl.step(cfg, cl.ClientState(status=cl.Status.CONNECTING, attempts=2, stream=True),
                   cl.StreamOpened())
    assert (s.status, s.attempts) == (cl.Status.CONNECTED, 2)  # open alone is not stable
    s, _ = cl.step(cfg, s, cl.HeartbeatReceived())
    assert (s.stable, s.attempts) == (True, 0)
    seed_code = client_config(Fixes().without("stable-reset"))
    s, _ = cl.step(seed_code, cl.ClientState(status=cl.Status.CONNECTING, attempts=2, stream=True),
                   cl.StreamOpened())
    assert s.attempts == 0  # the seed's onopen reset


def test_triggers_merge_into_one_attempt() -> None:
    cfg = client_config(Fixes())
    s = cl.ClientState(status=cl.Status.WAITING, attempts=1, last_event_id=EventId(0, 1))
    s, first = cl.step(cfg, s, cl.Online())
    s, second = cl.step(cfg, s, cl.Visible())
    assert sum(isinstance(a, cl.OpenStream) for a in first + second) == 1
    assert second == []


# ---------------------------------------------------------------- bugs the tests found (fixed)


def test_a_snapshot_finishing_after_stop_is_accepted() -> None:
    cfg = client_config(Fixes())
    s = cl.initial(EventId(0, 1))
    for event in (cl.Start(), cl.StreamOpened(), cl.ReplayTruncated(head=EventId(0, 9)), cl.Stop()):
        s, _ = cl.step(cfg, s, event)
    assert s.status is cl.Status.IDLE and s.rehydration is cl.Rehydration.RUNNING
    s, actions = cl.step(cfg, s, cl.RehydrateDone(head=EventId(0, 9)))  # the load was in flight
    assert s.status is cl.Status.IDLE and s.last_event_id == EventId(0, 9)
    assert not any(isinstance(a, cl.OpenStream) for a in actions)


def test_a_restart_reloads_a_snapshot_that_failed_before_stop() -> None:
    cfg = client_config(Fixes())
    s = cl.initial(EventId(0, 1))
    for event in (cl.Start(), cl.StreamOpened(), cl.ReplayTruncated(head=EventId(0, 9)),
                  cl.RehydrateFailed(), cl.Stop()):
        s, _ = cl.step(cfg, s, event)
    assert s.status is cl.Status.IDLE and s.rehydration is cl.Rehydration.RETRY
    s, actions = cl.step(cfg, s, cl.Start())
    started = sum(isinstance(a, cl.StartRehydrate) for a in actions)
    if any(isinstance(a, cl.OpenStream) for a in actions):  # drive it as a shell would
        s, _ = cl.step(cfg, s, cl.StreamOpened())
        for t in range(1, 600, 5):  # ten minutes of a healthy stream
            s, actions = cl.step(cfg, s, cl.HeartbeatReceived(now=float(t)))
            started += sum(isinstance(a, cl.StartRehydrate) for a in actions)
    assert started == 1, f"the owed snapshot was never loaded again; client ends {s}"
    assert s.rehydration is cl.Rehydration.RUNNING


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        cl.ClientConfig(max_attempts=0)
    with pytest.raises(ValueError, match="must be positive"):
        cl.ClientConfig(heartbeat_timeout=0)
    assert MAX_ATTEMPTS == 3
