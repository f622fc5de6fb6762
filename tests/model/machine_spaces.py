"""Small, finite input alphabets and state spaces for the three machines.

For "every state against every input" each machine gets:

* an alphabet: for every input type a few concrete inputs (``INPUT_KINDS``),
  timers split by name, so a test can be parametrised by input kind;
* its **reachable** states: a breadth-first search from the initial state(s)
  over the alphabet, keeping what the machine accepts, within small bounds
  (counter <= 6, sequence numbers <= 9);
* **representative** states: the cross product of the state enum and the
  flags (reachable or not), for the totality check.

All on fake time: ``now`` is 0 throughout, so states stay few and exact.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.core import EventId, LocalProtocolError
from model.fixes import Fixes

FIXSETS: dict[str, Fixes] = {"all-on": Fixes.all(), "all-off": Fixes.none()}

MAX_ATTEMPTS = 3
REPLAY_LIMIT = 2
MAX_SEQ = 9

S = TypeVar("S", bound=Hashable)


def explore(initial: Iterable[S], inputs: Callable[[S], Sequence[Any]],
            step: Callable[[S, Any], tuple[S, list[Any]]], keep: Callable[[S], bool]) -> set[S]:
    """Every state reachable from ``initial`` by accepted inputs, within ``keep``."""
    seen = set(initial)
    todo = deque(seen)
    while todo:
        state = todo.popleft()
        for event in inputs(state):
            try:
                nxt, _ = step(state, event)
            except LocalProtocolError:
                continue
            if keep(nxt) and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# ---------------------------------------------------------------- client

CLIENT_IDS = (EventId(0, 1), EventId(0, 2), EventId(1, 1))

CLIENT_INPUT_KINDS: dict[str, tuple[cl.ClientInput, ...]] = {
    "Start": (cl.Start(),),
    "Stop": (cl.Stop(),),
    "StreamOpened": (cl.StreamOpened(),),
    "StreamFailed": (cl.StreamFailed(u=0.5),),
    "StreamClosed": (cl.StreamClosed(u=0.5),),
    "EventReceived": tuple(cl.EventReceived(event_id=e) for e in CLIENT_IDS),
    "HeartbeatReceived": (cl.HeartbeatReceived(),),
    "HeadAnnounced": (cl.HeadAnnounced(head=EventId(0, 2)),),
    "ReplayTruncated": (cl.ReplayTruncated(head=EventId(0, 2)),),
    "ReplayFailed": (cl.ReplayFailed(),),
    "TimerFired(heartbeat)": (cl.TimerFired(timer=cl.HEARTBEAT),),
    "TimerFired(backoff)": (cl.TimerFired(timer=cl.BACKOFF, u=0.5),),
    "TimerFired(unknown)": (cl.TimerFired(timer="no-such-timer"),),
    "Online": (cl.Online(),),
    "Visible": (cl.Visible(),),
    "Recover": (cl.Recover(),),
    "RehydrateDone": (cl.RehydrateDone(head=EventId(0, 2)),),
    "RehydrateFailed": (cl.RehydrateFailed(u=0.5),),
}
CLIENT_INPUTS = tuple(itertools.chain.from_iterable(CLIENT_INPUT_KINDS.values()))


def client_config(fixes: Fixes) -> cl.ClientConfig:
    """The client configuration the table tests use (max attempts 3)."""
    return cl.ClientConfig(max_attempts=MAX_ATTEMPTS, fixes=fixes)


@functools.cache
def client_reachable(fixset: str) -> frozenset[cl.ClientState]:
    """Client states reachable from a fresh client, with or without a cursor."""
    cfg = client_config(FIXSETS[fixset])
    return frozenset(explore(
        [cl.initial(), cl.initial(CLIENT_IDS[0])], lambda s: CLIENT_INPUTS,
        lambda s, e: cl.step(cfg, s, e), lambda s: s.attempts <= 6))


def client_representatives() -> list[cl.ClientState]:
    """Every status with every combination of flags, reachable or not."""
    return [cl.ClientState(status=st, attempts=att, last_event_id=lei, rehydration=rh,
                           stream=stream, stable=stable, monitor=monitor, last_delay=delay)
            for st, att, lei, rh, stream, stable, monitor, delay in itertools.product(
                cl.Status, (0, 1, MAX_ATTEMPTS), (None, CLIENT_IDS[0]), cl.Rehydration,
                (False, True), (False, True), (False, True), (0.0, 2.0))]


# ---------------------------------------------------------------- session

SESSION_OPENS = tuple(
    se.Open(last_event_id=last, topic=topic)
    for last in (None, EventId(0, 0), EventId(0, 1), EventId(0, 3), EventId(1, 1), EventId(0, 9))
    for topic in (se.TopicHead(0, 0), se.TopicHead(0, 3), se.TopicHead(0, 3, 2),
                  se.TopicHead(0, 6)))


def session_rows(state: se.SessionState) -> tuple[se.ReplayRows, ...]:
    """Answers a topic log could give the running query: every length, pruned or not."""
    upto = state.upto if state.upto is not None else MAX_SEQ
    rows = [s for s in range(state.cursor + 1, min(upto, MAX_SEQ) + 1)]
    out = [se.ReplayRows(seqs=tuple(rows[:n])) for n in range(min(len(rows), REPLAY_LIMIT + 1) + 1)]
    out.append(se.ReplayRows(seqs=tuple(rows[:1]), floor=state.cursor + 1))
    return tuple(out)


SESSION_STATIC_KINDS: dict[str, tuple[se.SessionInput, ...]] = {
    "Open": SESSION_OPENS,
    "ReplayError": (se.ReplayError(),),
    "LiveEvent": (*(se.LiveEvent(seq=s) for s in range(1, 8)), se.LiveEvent(seq=3, epoch=0),
                  se.LiveEvent(seq=3, epoch=1)),
    "Resync": (se.Resync(topic=se.TopicHead(0, 3)), se.Resync(topic=se.TopicHead(0, 7))),
    "ResyncFailed": (se.ResyncFailed(),),
    "Revoked": (se.Revoked(),),
    "HeadProbed": (se.HeadProbed(topic=se.TopicHead(0, 3)), se.HeadProbed(topic=se.TopicHead(0, 7))),
    "TimerFired(heartbeat)": (se.TimerFired(timer=se.HEARTBEAT),),
    "TimerFired(unknown)": (se.TimerFired(timer="no-such-timer"),),
    "Close": (se.Close(),),
}
SESSION_KIND_NAMES = ("Open", "ReplayRows", "ReplayError", "LiveEvent", "Resync", "ResyncFailed",
                      "HeadProbed", "Revoked",
                      "TimerFired(heartbeat)", "TimerFired(unknown)", "Close")


def session_inputs(state: se.SessionState, kind: str) -> tuple[se.SessionInput, ...]:
    """The concrete inputs of one kind for ``state`` (rows depend on the running query)."""
    if kind == "ReplayRows":
        return (*session_rows(state), se.ReplayRows(seqs=(state.cursor,)))  # not after cursor
    return SESSION_STATIC_KINDS[kind]


def session_config(fixes: Fixes) -> se.SessionConfig:
    """The session configuration the table tests use (replay limit 2)."""
    return se.SessionConfig(replay_limit=REPLAY_LIMIT, fixes=fixes)


@functools.cache
def session_reachable(fixset: str) -> frozenset[se.SessionState]:
    """Session states reachable from a new session, sequence numbers up to 9."""
    cfg = session_config(FIXSETS[fixset])

    def inputs(s: se.SessionState) -> list[se.SessionInput]:
        return [e for kind in SESSION_KIND_NAMES for e in session_inputs(s, kind)]
    return frozenset(explore([se.initial()], inputs, lambda s, e: se.step(cfg, s, e),
                             lambda s: s.head <= MAX_SEQ and s.cursor <= MAX_SEQ))


def session_representatives() -> list[se.SessionState]:
    """Every phase with cursors, heads, buffers and query bounds, reachable or not."""
    return [se.SessionState(phase=ph, epoch=0, cursor=cur, head=head, buffer=buf, upto=upto)
            for ph, cur, head, buf, upto in itertools.product(
                se.Phase, (0, 2), (0, 2, 5), ((), (4,), (3, 5)), (None, 2, 4))]


# ---------------------------------------------------------------- subscriber

SUBSCRIBER_INPUT_KINDS: dict[str, tuple[sb.SubscriberInput, ...]] = {
    "Ready": (sb.Ready(),),
    "Reconnecting": (sb.Reconnecting(),),
    "Closed": (sb.Closed(),),
    "Ended": (sb.Ended(),),
    "SentinelReceived": (sb.SentinelReceived(token=0), sb.SentinelReceived(token=1)),
    "TimerFired(sentinel)": (sb.TimerFired(timer=sb.SENTINEL),),
    "TimerFired(sentinel-timeout)": (sb.TimerFired(timer=sb.SENTINEL_TIMEOUT),),
    "TimerFired(unknown)": (sb.TimerFired(timer="no-such-timer"),),
}
SUBSCRIBER_INPUTS = tuple(itertools.chain.from_iterable(SUBSCRIBER_INPUT_KINDS.values()))


def subscriber_config(fixes: Fixes) -> sb.SubscriberConfig:
    """The subscriber configuration the table tests use (two tokens, so the space is finite)."""
    return sb.SubscriberConfig(token_space=2, fixes=fixes)


@functools.cache
def subscriber_reachable(fixset: str) -> frozenset[sb.SubscriberState]:
    """Subscriber states reachable from a connecting subscriber."""
    cfg = subscriber_config(FIXSETS[fixset])
    return frozenset(explore([sb.initial()], lambda s: SUBSCRIBER_INPUTS,
                             lambda s, e: sb.step(cfg, s, e), lambda s: True))


def subscriber_representatives() -> list[sb.SubscriberState]:
    """Every health with outstanding sentinels, tokens and the was-down flag."""
    return [sb.SubscriberState(health=h, reason="r", outstanding=out, token=tok,
                               last_ok_at=ok, was_down=down)
            for h, out, tok, ok, down in itertools.product(
                sb.Health, (None, 0, 1), (0, 1), (None, 0.0), (False, True))]
