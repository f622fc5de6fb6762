"""The session machine: every phase against every input, with all fixes on and all off.

Reachable states come from a search over a small topic (sequence numbers up to
9, replay limit 2) where replay answers are every answer the topic log could
give the running query. Handled inputs keep the session's rules (bounded
replay, cursor order, one query at a time, heartbeats whatever happens);
refusals name the phase and the input.
"""

from __future__ import annotations

import itertools

import pytest
from machine_spaces import (
    FIXSETS,
    REPLAY_LIMIT,
    SESSION_KIND_NAMES,
    session_config,
    session_inputs,
    session_reachable,
    session_representatives,
)

from model import session as se
from model.core import Action, CancelTimer, EventId, LocalProtocolError, StartTimer
from model.fixes import Fixes

PHASES = list(se.Phase)

#: Refusals raised inside a handler: words naming the input, and the state.
GUARDS: dict[str, tuple[str, str]] = {
    "ReplayRows": ("replay rows", "not ascending after {cursor}"),
    "TimerFired(unknown)": ("unknown session timer 'no-such-timer'", ""),
}


def check_refusal(state: se.SessionState, kind: str, event: se.SessionInput,
                  exc: LocalProtocolError) -> None:
    """A refusal names the phase and the input, and says what to do."""
    assert exc.message and exc.hint
    if (state.phase, type(event)) not in se.TRANSITIONS:
        assert f"phase {state.phase.value!r}" in exc.message
        assert type(event).__name__ in exc.message
        accepted = sorted(t.__name__ for (ph, t) in se.TRANSITIONS if ph is state.phase)
        assert exc.hint == "accepted here: " + ", ".join(accepted)
        return
    names_input, names_state = GUARDS[kind]
    assert names_input in exc.message
    assert names_state.format(cursor=state.cursor) in exc.message


def check_handled(cfg: se.SessionConfig, s: se.SessionState, e: se.SessionInput,
                  n: se.SessionState, actions: list[Action]) -> None:
    """The rules every handled session input keeps."""
    fixes = cfg.fixes
    assert isinstance(n, se.SessionState) and isinstance(n.phase, se.Phase)
    assert all(isinstance(a, Action) for a in actions)
    hash(n)

    # bounded-replay: with F1 every query asks for at most limit + 1 rows; without, no limit.
    queries = [a for a in actions if isinstance(a, se.QueryReplay)]
    assert len(queries) <= 1, "one query at a time"
    for q in queries:
        assert q.limit == (cfg.replay_limit + 1 if fixes.bounded_replay else None)
        assert q.after == n.cursor
        if q.upto is not None:
            assert q.upto > q.after
    if queries:
        assert n.phase is se.Phase.REPLAYING
    if n.phase is se.Phase.REPLAYING and s.phase is not se.Phase.REPLAYING:
        assert queries

    # Events go out in order, after the cursor, in the topic's epoch.
    sent = [a.event_id for a in actions if isinstance(a, se.Send)]
    assert all(eid.epoch == n.epoch for eid in sent)
    assert all(b.seq > a.seq for a, b in itertools.pairwise(sent))
    if not isinstance(e, se.Open):
        assert n.cursor >= s.cursor
        if sent:
            assert sent[0].seq > s.cursor
    if sent:
        assert n.cursor >= sent[-1].seq

    # Signals only with their fixes; a failed query is signalled with F2.
    truncs = [a for a in actions if isinstance(a, se.SendTruncated)]
    if truncs:  # (a flush may find a second, newer gap in the buffered live events)
        assert fixes.bounded_replay
        assert all(t.head.epoch == n.epoch and t.limit == cfg.replay_limit for t in truncs)
        assert all(b.head.seq > a.head.seq for a, b in itertools.pairwise(truncs))
        assert n.cursor >= truncs[-1].head.seq
    fails = [a for a in actions if isinstance(a, se.SendFailed)]
    if fails:
        assert fixes.replay_failed_signal
    if isinstance(e, se.ReplayError):
        assert bool(fails) is fixes.replay_failed_signal

    # Buffers only while a query runs.
    assert list(n.buffer) == sorted(set(n.buffer))
    if n.phase is se.Phase.LIVE:
        assert n.buffer == () and n.upto is None

    # event-epoch: a live event of another epoch is not this stream's sequence.
    if isinstance(e, se.LiveEvent) and e.epoch is not None and e.epoch != s.epoch \
            and fixes.event_epoch:
        assert (n, actions) == (s, [])

    # Any frame proves the connection: it re-arms the heartbeat an interval from now;
    # a step that writes nothing leaves the heartbeat as it was.
    frames = [a for a in actions if isinstance(
        a, se.Send | se.SendTruncated | se.SendFailed | se.AnnounceHead)]
    rearm = [a for a in actions if isinstance(a, StartTimer)]
    if frames and n.phase is not se.Phase.CLOSED:
        assert rearm == [StartTimer(timer=se.HEARTBEAT, at=e.now + cfg.heartbeat_interval)]
    elif not isinstance(e, se.TimerFired | se.Open):
        assert rearm == []
    if isinstance(e, se.TimerFired):
        assert n == s
        assert actions == [se.SendHeartbeat(),
                           StartTimer(timer=se.HEARTBEAT, at=e.now + cfg.heartbeat_interval)]
    if isinstance(e, se.Open):
        assert actions[0] == StartTimer(timer=se.HEARTBEAT, at=e.now + cfg.heartbeat_interval)
        assert n.phase in (se.Phase.LIVE, se.Phase.REPLAYING)
    if isinstance(e, se.Close):
        assert n.phase is se.Phase.CLOSED and actions == [CancelTimer(timer=se.HEARTBEAT)]
    elif isinstance(e, se.Revoked) and fixes.reauthorize:
        # a revoked or expired token: the session ends the stream
        assert n.phase is se.Phase.CLOSED
        assert [a for a in actions if isinstance(a, se.EndStream)]
    elif isinstance(e, se.ResyncFailed) and fixes.resync_after_recovery:
        # no head, no catch-up: end the stream so the client replays from its cursor
        assert n.phase is se.Phase.CLOSED
        assert [a for a in actions if isinstance(a, se.EndStream)]
    else:
        assert n.phase is not se.Phase.CLOSED


def states_for(fixset: str, phase: se.Phase) -> list[se.SessionState]:
    """Reachable states of this phase."""
    states = sorted((s for s in session_reachable(fixset) if s.phase is phase), key=repr)
    assert states, f"{phase} is reachable"
    return states


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("kind", SESSION_KIND_NAMES)
@pytest.mark.parametrize("phase", PHASES, ids=[p.value for p in PHASES])
def test_every_reachable_state_handles_or_refuses_every_input(
        phase: se.Phase, kind: str, fixset: str) -> None:
    cfg = session_config(FIXSETS[fixset])
    for state in states_for(fixset, phase):
        for event in session_inputs(state, kind):
            try:
                n, actions = se.step(cfg, state, event)
            except LocalProtocolError as exc:
                check_refusal(state, kind, event, exc)
            else:
                check_handled(cfg, state, event, n, actions)


@pytest.mark.parametrize("fixset", FIXSETS)
@pytest.mark.parametrize("phase", PHASES, ids=[p.value for p in PHASES])
def test_any_fields_are_handled_or_refused_never_crash(phase: se.Phase, fixset: str) -> None:
    cfg = session_config(FIXSETS[fixset])
    for state in (s for s in session_representatives() if s.phase is phase):
        for kind in SESSION_KIND_NAMES:
            for event in session_inputs(state, kind):
                try:
                    n, actions = se.step(cfg, state, event)
                except LocalProtocolError as exc:
                    assert exc.message and exc.hint
                else:
                    assert isinstance(n, se.SessionState)
                    assert all(isinstance(a, Action) for a in actions)


def test_every_table_entry_is_used_by_a_reachable_state() -> None:
    used = set()
    for fixset, fixes in FIXSETS.items():
        cfg = session_config(fixes)
        for state in session_reachable(fixset):
            for kind in SESSION_KIND_NAMES:
                for event in session_inputs(state, kind):
                    try:
                        se.step(cfg, state, event)
                    except LocalProtocolError:
                        continue
                    used.add((state.phase, type(event)))
    assert set(se.TRANSITIONS) == used


def test_a_closed_session_refuses_everything_by_name() -> None:
    cfg = session_config(Fixes())
    closed = se.SessionState(phase=se.Phase.CLOSED)
    with pytest.raises(LocalProtocolError) as info:
        se.step(cfg, closed, se.LiveEvent(seq=1))
    assert info.value.message == "session in phase 'closed' cannot take LiveEvent"
    assert info.value.hint == "accepted here: "  # nothing: the shell must drop it


@pytest.mark.parametrize("fixset", FIXSETS)
def test_no_replay_reads_more_than_limit_plus_one(fixset: str) -> None:
    """bounded-replay over every reachable open: with F1 the query asks for limit + 1 rows."""
    cfg = session_config(FIXSETS[fixset])
    for event in session_inputs(se.initial(), "Open"):
        _, actions = se.step(cfg, se.initial(), event)
        for a in actions:
            if isinstance(a, se.QueryReplay):
                assert a.limit == (REPLAY_LIMIT + 1 if fixset == "all-on" else None)
    stale = se.Open(last_event_id=EventId(0, 0), topic=se.TopicHead(0, 6))
    _, actions = se.step(cfg, se.initial(), stale)
    if fixset == "all-on":  # gap-from-head: a stale cursor costs no rows at all
        assert actions[1:] == [se.SendTruncated(head=EventId(0, 6), limit=REPLAY_LIMIT,
                                                reason=se.TruncateReason.GAP)]
    else:
        assert actions[1:] == [se.QueryReplay(after=0, upto=None, limit=None)]


def test_replay_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="replay_limit must be at least 1"):
        se.SessionConfig(replay_limit=0)


def _written(actions: list[Action], cfg: se.SessionConfig, now: float = 0.0) -> list[Action]:
    """The actions of a step that wrote frames, less its heartbeat re-arm (checked here)."""
    assert actions[-1] == StartTimer(timer=se.HEARTBEAT, at=now + cfg.heartbeat_interval)
    return actions[:-1]


def test_a_live_hole_larger_than_the_limit_is_truncated_without_reading() -> None:
    """topic-sequence + gap-from-head: a hole of 4 (limit 2) costs no rows."""
    cfg = session_config(Fixes())
    live = se.SessionState(phase=se.Phase.LIVE, cursor=1, head=1)
    n, actions = se.step(cfg, live, se.LiveEvent(seq=6))
    assert _written(actions, cfg) == [se.SendTruncated(head=EventId(0, 6), limit=REPLAY_LIMIT,
                                                       reason=se.TruncateReason.GAP)]
    assert (n.phase, n.cursor, n.buffer) == (se.Phase.LIVE, 6, ())
    small, actions = se.step(cfg, live, se.LiveEvent(seq=4))  # a hole of 2: catch it up
    assert actions == [se.QueryReplay(after=1, upto=3, limit=REPLAY_LIMIT + 1)]
    assert (small.phase, small.buffer) == (se.Phase.REPLAYING, (4,))


def test_rows_pruned_under_a_running_replay_are_truncated_not_skipped() -> None:
    """retention-floor: rows 2..3 were pruned while the query ran; the client must know."""
    cfg = session_config(Fixes())
    replaying = se.SessionState(phase=se.Phase.REPLAYING, cursor=1, head=5, upto=5)
    n, actions = se.step(cfg, replaying, se.ReplayRows(seqs=(4, 5), floor=3))
    assert _written(actions, cfg) == [se.SendTruncated(head=EventId(0, 5), limit=REPLAY_LIMIT,
                                                       reason=se.TruncateReason.EXPIRED)]
    assert (n.phase, n.cursor) == (se.Phase.LIVE, 5)
    seed_code = session_config(Fixes().without("retention-floor"))
    _, actions = se.step(seed_code, replaying, se.ReplayRows(seqs=(4, 5), floor=3))
    assert _written(actions, seed_code) == [se.Send(event_id=EventId(0, 4)),
                                            se.Send(event_id=EventId(0, 5))]


def test_a_failed_resync_head_read_ends_the_stream_so_the_client_replays_from_its_cursor() -> None:
    cfg = se.SessionConfig(replay_limit=5)
    s, _ = se.step(cfg, se.initial(), se.Open(last_event_id=None, topic=se.TopicHead(0, 3)))
    n, acts = se.step(cfg, s, se.ResyncFailed(reason="timeout"))
    assert n.phase is se.Phase.CLOSED
    assert any(isinstance(a, se.EndStream) for a in acts)
    off = se.SessionConfig(replay_limit=5, fixes=se.Fixes().without("resync-after-recovery"))
    assert se.step(off, s, se.ResyncFailed()) == (s, [])


def test_owed_catch_up_is_the_rule_the_flush_follows() -> None:
    cfg = se.SessionConfig(replay_limit=5)
    s, _ = se.step(cfg, se.initial(), se.Open(last_event_id=se.EventId(0, 1), topic=se.TopicHead(0, 3)))
    assert s.phase is se.Phase.REPLAYING and not se.owed_catch_up(cfg, s)
    s, _ = se.step(cfg, s, se.Resync(topic=se.TopicHead(0, 5)))
    assert se.owed_catch_up(cfg, s)
    s, acts = se.step(cfg, s, se.ReplayRows(seqs=(2, 3)))
    assert any(isinstance(a, se.QueryReplay) and a.after == 3 and a.upto == 5 for a in acts)
