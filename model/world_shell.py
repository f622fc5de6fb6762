"""Carrying out the machines' actions in the world: one step of one transition.

A transition of :mod:`model.world` copies the state's lists into a :class:`Ctx`,
feeds inputs to the machines (:func:`feed_client`, :func:`feed_session`,
:func:`feed_subscriber`), and carries out each action they produce through
``model.core.dispatch`` and the tables below; an action without an entry is a
loud error. Every input fed is recorded in ``Ctx.feeds`` (what ``sselab conform``
matches against real traces). The attempts witness (``model.witness``) and the
step-only breaches (:class:`model.world_state.Flag`) are kept here, as the
actions happen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.core import Action, CancelTimer, Log, StartTimer, dispatch, ignore
from model.delivery import cursor_moved_back, delivered_again, sent_out_of_order
from model.witness import AttemptsWitness, observe
from model.world_state import (
    NO_FLAGS,
    ClientSlot,
    Db,
    Fed,
    Flag,
    Frame,
    Link,
    Machine,
    PendingSnapshot,
    Replica,
    State,
    Stream,
    StreamPhase,
    WorldConfig,
)

__all__ = ["DETACHED", "ID_CAP", "Ctx", "FansOut", "Pieces", "bit", "close_stream",
           "feed_client", "feed_replica_sessions", "feed_session", "feed_subscriber", "keep",
           "machine_configs", "on_client", "on_replica", "set_stream", "ticks"]

#: identity entries a table keeps before it starts afresh (each holds its objects alive)
ID_CAP = 1 << 16


def keep(table: dict[Any, Any], key: Any, entry: Any) -> None:
    """Put ``entry`` at ``key`` in an identity table, starting it afresh past :data:`ID_CAP`."""
    if len(table) > ID_CAP:
        table.clear()
    table[key] = entry


def ticks(at: float) -> int:
    return max(0, math.ceil(at))


def bit(seq: int) -> int:
    return 1 << (seq - 1)


#: The clients of a state built to compute one replica's own moves without them: an
#: empty tuple of its own (told apart by identity), of a subclass made with ``type()``
#: because mypyc (``sims.check.compiled``) cannot compile a class that subclasses tuple.
DETACHED: tuple[ClientSlot, ...] = type("_Detached", (tuple,), {
    "__slots__": (), "__doc__": "No clients: a replica's move computed on its own."})()


class FansOut(Exception):
    """A replica's move reached its streams, so it depends on the clients after all."""


class Pieces:
    """What each client's part of a world-wide move gave, for one search (:func:`on_client`)."""

    __slots__ = ("by_id", "by_value", "replicas", "replicas_by_id")

    def __init__(self) -> None:
        self.by_value: dict[tuple[Any, ...], tuple[ClientSlot, tuple[Fed, ...]]] = {}
        #: the same by identity of the slot and the database (which it holds alive)
        self.by_id: dict[tuple[Any, ...], tuple[ClientSlot, Db, ClientSlot, tuple[Fed, ...]]] = {}
        #: each replica's part (on_replica); None where it fanned out to the streams
        self.replicas: dict[tuple[Any, ...], tuple[Replica, tuple[Fed, ...]] | None] = {}
        self.replicas_by_id: dict[tuple[Any, ...], tuple[Replica, Db, tuple[Replica, tuple[
            Fed, ...]] | None]] = {}

    def __len__(self) -> int:
        return len(self.by_value) + len(self.replicas)


class Ctx:
    """Mutable scratch for one transition: lists replaced into a new State at the end."""

    __slots__ = ("ccfg", "cfg", "clients", "db", "detached", "feeds", "pieces", "replicas",
                 "scfg", "subcfg")

    def __init__(self, cfg: WorldConfig, s: State, pieces: Pieces | None = None) -> None:
        self.cfg = cfg
        self.pieces = pieces
        self.detached = s.clients is DETACHED
        self.ccfg, self.scfg, self.subcfg = machine_configs(cfg)
        self.clients = list(s.clients)
        self.replicas = list(s.replicas)
        self.db = s.db
        self.feeds: list[Fed] = []

    def state(self, s: State, *, faults: int | None = None, overrun: int | None = None) -> State:
        return tuple.__new__(State, (tuple(self.clients), tuple(self.replicas), self.db, s.pubs,
                                     s.published, s.faults if faults is None else faults,
                                     s.overrun if overrun is None else overrun))


_CONFIG_CACHE: dict[int, tuple[WorldConfig, cl.ClientConfig, se.SessionConfig,
                               sb.SubscriberConfig]] = {}


def machine_configs(cfg: WorldConfig) -> tuple[cl.ClientConfig, se.SessionConfig,
                                                sb.SubscriberConfig]:
    """The client, session and subscriber configs of ``cfg``, built once per config."""
    hit = _CONFIG_CACHE.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = (cfg, cfg.client, cfg.session, cfg.subscriber)
        _CONFIG_CACHE[id(cfg)] = hit
    return hit[1], hit[2], hit[3]


#: A part of a world-wide move that reads only the config, client i's slot, the database
#: and its arguments, and changes only that slot (and what it feeds): ``piece(ctx, i, *args)``.
ClientPiece = Callable[..., None]


def on_client(ctx: Ctx, piece: ClientPiece, i: int, *args: Any) -> None:
    """Carry out ``piece(ctx, i, *args)`` on client i, remembered in ``ctx.pieces`` when kept.

    The outcome is remembered by (piece, i, slot, database, args), so every state that
    shares them gets the same new slot object (and the same feeds).
    """
    pieces = ctx.pieces
    if pieces is None:
        piece(ctx, i, *args)
        return
    slot, db = ctx.clients[i], ctx.db
    fast = (piece, i, id(slot), id(db), args)
    by_id = pieces.by_id
    hit = by_id.get(fast)
    if hit is not None and hit[0] is slot and hit[1] is db:
        ctx.clients[i] = hit[2]
        if hit[3]:
            ctx.feeds.extend(hit[3])
        return
    key = (piece, i, slot, db, args)
    known = pieces.by_value.get(key)
    if known is None:
        mark = len(ctx.feeds)
        piece(ctx, i, *args)
        known = pieces.by_value[key] = (ctx.clients[i], tuple(ctx.feeds[mark:]))
    else:
        ctx.clients[i] = known[0]
        ctx.feeds.extend(known[1])
    keep(by_id, fast, (slot, db, known[0], known[1]))


#: A part of a move that reads only the config, replica r, the database and its arguments,
#: and changes only that replica, unless it fans out to the replica's streams
#: (:func:`feed_replica_sessions`): ``piece(ctx, r, *args)``.
ReplicaPiece = Callable[..., None]


def on_replica(ctx: Ctx, piece: ReplicaPiece, r: int, *args: Any) -> None:
    """Carry out ``piece(ctx, r, *args)`` on replica r, remembered in ``ctx.pieces`` when kept.

    It is first tried without the clients: one that fans out to the replica's streams is
    then carried out in full, and never remembered.
    """
    pieces = ctx.pieces
    if pieces is None or ctx.detached:
        piece(ctx, r, *args)
        return
    rep, db = ctx.replicas[r], ctx.db
    fast = (piece, r, id(rep), id(db), args)
    hit = pieces.replicas_by_id.get(fast)
    if hit is not None and hit[0] is rep and hit[1] is db:
        known = hit[2]
    else:
        key = (piece, r, rep, db, args)
        if key in pieces.replicas:
            known = pieces.replicas[key]
        else:
            mark = len(ctx.feeds)
            ctx.detached = True
            try:
                piece(ctx, r, *args)
                known = (ctx.replicas[r], tuple(ctx.feeds[mark:]))
            except FansOut:
                known = None
            finally:
                ctx.detached = False
                ctx.replicas[r] = rep
                del ctx.feeds[mark:]
            pieces.replicas[key] = known
        keep(pieces.replicas_by_id, fast, (rep, db, known))
    if known is None:
        piece(ctx, r, *args)
        return
    ctx.replicas[r] = known[0]
    if known[1]:
        ctx.feeds.extend(known[1])


def set_stream(ctx: Ctx, i: int, k: int, stream: Stream) -> None:
    slot = ctx.clients[i]
    streams = list(slot.streams)
    streams[k] = stream
    ctx.clients[i] = slot._replace(streams=tuple(streams))


def feed_client(ctx: Ctx, i: int, event: cl.ClientInput) -> None:
    """Step client i's machine with ``event`` and carry out its actions."""
    slot = ctx.clients[i]
    old = slot.machine
    ctx.feeds.append(Fed(Machine.CLIENT, i, -1, event, old.status.value))
    m, acts = cl.step(ctx.ccfg, old, event)
    flags = slot.flags
    recovering = slot.recovering
    if old.status is cl.Status.FAILED and m.status is not cl.Status.FAILED:
        if not isinstance(event, cl.Recover | cl.Online | cl.Visible):
            flags |= Flag.LEFT_FAILED
        recovering = True
    if isinstance(event, cl.RehydrateDone):
        recovering = False
    was, now = old.last_event_id, m.last_event_id
    if was is not now and cursor_moved_back(was, now):
        flags |= Flag.CURSOR_BACKWARDS
    top = was.seq if was is not None else -1
    for act in acts:
        if act.__class__ is cl.Deliver:
            assert isinstance(act, cl.Deliver)
            if delivered_again(top, act.event_id.seq):
                flags |= Flag.APPLIED_TWICE
            top = act.event_id.seq
    heard = bool(slot.streams) and slot.streams[-1].heard
    witness = observe(AttemptsWitness(slot.attempts_started, heard), event, old, m, acts)
    slot = slot._replace(machine=m, flags=flags, recovering=recovering,
                         attempts_started=witness.started)
    if witness.heard and not heard and slot.streams:
        slot = slot._replace(streams=(*slot.streams[:-1], slot.streams[-1]._replace(heard=True)))
    ctx.clients[i] = slot
    dispatch(_CLIENT_ACTIONS, acts, ctx, i, shell="the world (client)")


def _client_start_timer(ctx: Ctx, i: int, act: StartTimer) -> None:
    slot = ctx.clients[i]
    if act.timer == cl.HEARTBEAT:
        ctx.clients[i] = slot._replace(heartbeat_left=ticks(act.at))
    else:
        ctx.clients[i] = slot._replace(backoff_left=ticks(act.at))


def _client_cancel_timer(ctx: Ctx, i: int, act: CancelTimer) -> None:
    slot = ctx.clients[i]
    if act.timer == cl.HEARTBEAT:
        ctx.clients[i] = slot._replace(heartbeat_left=-1)
    else:
        ctx.clients[i] = slot._replace(backoff_left=-1)


def _client_open_stream(ctx: Ctx, i: int, act: cl.OpenStream) -> None:
    slot = ctx.clients[i]
    flags = slot.flags | (Flag.STREAMED_BEFORE_SNAPSHOT if slot.recovering else NO_FLAGS)
    stream = Stream(-1, StreamPhase.CONNECTING, act.last_event_id, None, (), None, False, 0)
    ctx.feeds.append(Fed(Machine.STREAM_ADDED, i, len(slot.streams), None, ""))
    ctx.clients[i] = slot._replace(streams=(*slot.streams, stream), flags=flags)


def _client_close_stream(ctx: Ctx, i: int, act: cl.CloseStream) -> None:
    slot = ctx.clients[i]
    ctx.feeds.append(Fed(Machine.STREAM_REMOVED, i, len(slot.streams) - 1, None, ""))
    ctx.clients[i] = slot._replace(streams=slot.streams[:-1])


def _client_deliver(ctx: Ctx, i: int, act: cl.Deliver) -> None:
    slot = ctx.clients[i]
    ctx.clients[i] = slot._replace(applied=slot.applied | bit(act.event_id.seq))


def _client_rehydrate(ctx: Ctx, i: int, act: cl.StartRehydrate) -> None:
    db = ctx.db
    pending = (PendingSnapshot(True, db.head) if act.head_first
               else PendingSnapshot(False, db.committed))
    ctx.clients[i] = ctx.clients[i]._replace(snapshot=pending)


def _client_status(ctx: Ctx, i: int, act: cl.StatusChanged) -> None:
    slot = ctx.clients[i]
    if act.status is cl.Status.FAILED and slot.attempts_started < ctx.cfg.max_attempts:
        ctx.clients[i] = slot._replace(flags=slot.flags | Flag.FAILED_EARLY)


#: How the world carries out each client action (``model.core.dispatch``).
_CLIENT_ACTIONS: dict[type[Action], Callable[..., object]] = {
    StartTimer: _client_start_timer,
    CancelTimer: _client_cancel_timer,
    cl.OpenStream: _client_open_stream,
    cl.CloseStream: _client_close_stream,
    cl.Deliver: _client_deliver,
    cl.StartRehydrate: _client_rehydrate,
    cl.StatusChanged: _client_status,
    Log: ignore,
}


def feed_session(ctx: Ctx, i: int, k: int, event: se.SessionInput) -> None:
    """Step the session of client i's stream k and carry out its actions."""
    stream = ctx.clients[i].streams[k]
    assert stream.session is not None
    ctx.feeds.append(Fed(Machine.SESSION, i, k, event, stream.session.phase.value))
    session, acts = se.step(ctx.scfg, stream.session, event)
    set_stream(ctx, i, k, stream._replace(session=session))
    dispatch(_SESSION_ACTIONS, acts, ctx, i, k, shell="the world (session)")


def _wire(ctx: Ctx, i: int, k: int, frame: Frame, seq: int) -> None:
    stream = ctx.clients[i].streams[k]
    stream = stream._replace(wire=(*stream.wire, (frame, seq)))
    if frame is Frame.EVENT or frame is Frame.HEAD:
        if frame is Frame.EVENT and sent_out_of_order(stream.last_sent, seq):
            slot = ctx.clients[i]
            ctx.clients[i] = slot._replace(flags=slot.flags | Flag.STREAM_OUT_OF_ORDER)
        stream = stream._replace(last_sent=max(seq, stream.last_sent))
    set_stream(ctx, i, k, stream)


def _session_query(ctx: Ctx, i: int, k: int, act: se.QueryReplay) -> None:
    set_stream(ctx, i, k, ctx.clients[i].streams[k]._replace(query=act))


def _session_end(ctx: Ctx, i: int, k: int, act: se.EndStream) -> None:
    """The replica ends the stream: both ends see it close."""
    close_stream(ctx, i, k)
    feed_client(ctx, i, cl.StreamClosed(reason=act.reason))


#: How the world carries out each session action; heartbeats are implicit in the world.
_SESSION_ACTIONS: dict[type[Action], Callable[..., object]] = {
    se.Send: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.EVENT, act.event_id.seq),
    se.SendTruncated: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.TRUNCATED, act.head.seq),
    se.SendFailed: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.FAILED, 0),
    se.AnnounceHead: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.HEAD, act.head.seq),
    se.QueryReplay: _session_query,
    se.EndStream: _session_end,
    StartTimer: ignore,
    CancelTimer: ignore,
    se.SendHeartbeat: ignore,
    Log: ignore,
}


def feed_subscriber(ctx: Ctx, r: int, event: sb.SubscriberInput) -> None:
    """Step replica r's subscriber and carry out its actions."""
    rep = ctx.replicas[r]
    ctx.feeds.append(Fed(Machine.SUBSCRIBER, r, -1, event, rep.subscriber.health.value))
    sub, acts = sb.step(ctx.subcfg, rep.subscriber, event)
    ctx.replicas[r] = rep._replace(subscriber=sub)
    dispatch(_SUBSCRIBER_ACTIONS, acts, ctx, r, shell="the world (subscriber)")


def _sub_start_timer(ctx: Ctx, r: int, act: StartTimer) -> None:
    rep = ctx.replicas[r]
    if act.timer == sb.SENTINEL:
        ctx.replicas[r] = rep._replace(sentinel_left=ticks(act.at))
    else:
        ctx.replicas[r] = rep._replace(sentinel_timeout_left=ticks(act.at))


def _sub_cancel_timer(ctx: Ctx, r: int, act: CancelTimer) -> None:
    rep = ctx.replicas[r]
    if act.timer == sb.SENTINEL:
        ctx.replicas[r] = rep._replace(sentinel_left=-1)
    else:
        ctx.replicas[r] = rep._replace(sentinel_timeout_left=-1)


def _sub_publish_sentinel(ctx: Ctx, r: int, act: sb.PublishSentinel) -> None:
    rep = ctx.replicas[r]
    if rep.link is Link.UP:
        ctx.replicas[r] = rep._replace(queue=(*rep.queue, -act.token))


def _sub_resubscribe(ctx: Ctx, r: int, act: sb.Resubscribe) -> None:
    ctx.replicas[r] = ctx.replicas[r]._replace(link=Link.DOWN, queue=())


def _sub_health(ctx: Ctx, r: int, act: sb.HealthChanged) -> None:
    if act.health is not sb.Health.HEALTHY:
        ctx.replicas[r] = ctx.replicas[r]._replace(dead_for=-1)


def feed_replica_sessions(ctx: Ctx, r: int, event: se.SessionInput) -> None:
    """Feed ``event`` to the session of every open stream on replica ``r``."""
    if ctx.detached:
        raise FansOut
    for i in range(len(ctx.clients)):
        on_client(ctx, _feed_sessions_on, i, r, event)


def _feed_sessions_on(ctx: Ctx, i: int, r: int, event: se.SessionInput) -> None:
    """Feed ``event`` to the session of each of client i's open streams on replica ``r``."""
    for k, stream in enumerate(ctx.clients[i].streams):
        if stream.replica == r and stream.phase is StreamPhase.OPEN and stream.session is not None:
            feed_session(ctx, i, k, event)


def _sub_resync(ctx: Ctx, r: int, act: sb.ResyncStreams) -> None:
    feed_replica_sessions(ctx, r, se.Resync(topic=se.TopicHead(0, ctx.db.head, ctx.db.floor)))


#: How the world carries out each subscriber action.
_SUBSCRIBER_ACTIONS: dict[type[Action], Callable[..., object]] = {
    StartTimer: _sub_start_timer,
    CancelTimer: _sub_cancel_timer,
    sb.PublishSentinel: _sub_publish_sentinel,
    sb.Resubscribe: _sub_resubscribe,
    sb.ResyncStreams: _sub_resync,
    sb.HealthChanged: _sub_health,
    Log: ignore,
}


def close_stream(ctx: Ctx, i: int, k: int) -> None:
    slot = ctx.clients[i]
    ctx.feeds.append(Fed(Machine.STREAM_REMOVED, i, k, None, ""))
    streams = list(slot.streams)
    del streams[k]
    ctx.clients[i] = slot._replace(streams=tuple(streams))
