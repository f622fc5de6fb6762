"""The composed world: clients, replicas, Redis, Postgres, publishers and faults.

What it is. A finite transition system built from the very machines the
service runs (``model.client``, ``model.session``, ``model.subscriber``), plus
small models of what they talk to. :func:`initial` gives the start state and
:func:`enabled` every :class:`Transition` the environment or a machine can take
next. A transition is a value: its :class:`Kind` (a progress kind, or a fault of
``model.faults``'s vocabulary), the actor it happens to, the values its sentence
needs, what it fed the machines (:class:`Fed`) and the next state. Its sentence
("redis: subscriber of replica 0 dies silently") is rendered from
:data:`SENTENCES` (faults from ``model.faults``) and never parsed back. The
checker walks the world exhaustively, Hypothesis walks it at random, and both
judge every state with :func:`model.invariants.violations`.

How it is built. :func:`enabled` is a loop over small *enablers*, one per actor
and kind; each yields the transitions of its kind. :data:`ENABLERS` hold the
world-wide ones; :data:`REPLICA_ENABLERS` and :data:`CLIENT_ENABLERS` the moves
of one replica or one client, which read and change only that actor and the
database, so a search may remember them per actor (:class:`Memo`). The
vocabulary (state tuples, :class:`Transition`, sentences) is in
:mod:`model.world_state`, carrying out the machines' actions in
:mod:`model.world_shell`, the tick in :mod:`model.world_time` and what a search
may remember in :mod:`model.memo`; this module re-exports what callers need. Adding a
fault kind is one enabler plus one row in :data:`SENTENCES` (or a sentence in
``model.faults``) and one member of :class:`Kind`.

The actors and what the world assumes of them.

* **Clients** run ``model.client``. Each starts connecting *without a cursor*,
  as a fresh browser does: the page's own load counts as done when its first
  stream opens (everything committed up to the head read for that stream is
  applied), so only what happens after that can go missing.
  ``WorldConfig.start_cursor=0`` starts them resuming from ``0-0`` instead. A
  client holds its streams, what it has applied (a bit per event), a pending
  snapshot, whether its laptop sleeps, and the attempts really started since its last stable connection
  (``model.witness``), against which ``bounded-counter`` is judged.
* **Streams** go ``connecting`` (sent, not yet accepted) -> ``open`` (a replica
  runs ``model.session`` for it; what the session sends waits on the wire in
  order) -> ``stalled`` (silently dead: the server side is gone, the client hears
  nothing). The load balancer may give a stream to any replica that is up.
  Server heartbeats are implicit: while a stream is open, the client's
  heartbeat timer does not run down, and the first tick after opening delivers
  the first heartbeat once the frames written before it have arrived (which makes
  the connection stable). Each stream remembers the last event id sent on it, so
  a duplicate or a reordering on one stream is seen (``ordered-delivery``).
* **Redis** keeps one subscription link per replica: ``up``, ``dead`` (silently:
  nothing arrives, nothing is reported) or ``down`` (visibly; the subscriber
  hears ``Reconnecting`` and later ``Ready``). Delivery is at most once and in
  order per link: what is published while a link is not up, or sits in it when
  it breaks, is lost. Redis delivers before time passes: a message on a healthy
  link never misses a deadline for free (a late sentinel would be a false alarm
  that rescues clients a real bug left stuck). A resubscribe reports
  ``Reconnecting`` before ``Ready``, as redis-py does.
* **Postgres** keeps one topic: the committed events (a bit per seq), the head
  and the retention floor. With ``topic-sequence`` on a publisher commits
  ``head + 1`` in one step; off, it first takes an id from a shared sequence
  and commits it later, so ids can commit out of order. A replay query returns
  the committed rows ``after < seq [<= upto]`` above the floor, at most
  ``limit``, unless the fault "the replay query fails" is chosen instead.
* **Publishers** commit, then publish to Redis, ``events`` times in all; the
  publish may be lost after the commit (a fault).
* **Head probe** (``head-probe``): each replica reads the topic head every
  ``probe_interval`` ticks and feeds it to its open sessions.
* **Time** passes in ticks. No clock is kept: each armed timer holds the ticks
  left, ``time passes`` moves every running timer on by one, and is not enabled
  while a timer is due, so due timers fire first. A sleeping laptop's timers
  stand still and are all due when it wakes.
* **Faults** (the vocabulary of ``model.faults``) happen at most ``faults``
  times in all: a stream drops or stalls, a laptop sleeps, a subscriber link dies
  silently or is disconnected, a publish is lost after its commit, a replay
  query or a snapshot load fails, retention prunes, a replica goes down. Waking
  up, links reconnecting, replicas coming back, browser online / visible triggers
  and the user's Retry are not faults.

The world passes ``now=0`` to every machine and reads a timer's ``at`` as the
ticks left, which is why no absolute time appears in any state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.core import EventId
from model.memo import ActorEnabler, Memo
from model.world_shell import (
    Ctx,
    Pieces,
    bit,
    close_stream,
    feed_client,
    feed_replica_sessions,
    feed_session,
    feed_subscriber,
    on_client,
    on_replica,
    set_stream,
)
from model.world_state import (
    DELIVERY_FLAGS,
    FAILED_FLAGS,
    NO_FLAGS,
    PROGRESS_KINDS,
    SENTENCES,
    ClientSlot,
    Db,
    Fed,
    Flag,
    Frame,
    Kind,
    Link,
    Machine,
    PendingSnapshot,
    Pub,
    Replica,
    State,
    Stream,
    StreamPhase,
    Transition,
    WorldConfig,
    flatten,
    pubs_idle,
    render,
    seqs,
)
from model.world_state import Arg as Arg
from model.world_time import REAUTH_BOUND, time_passes

__all__ = ["ASLEEP_ENABLERS", "CLIENT_ENABLERS", "DELIVERY_FLAGS", "ENABLERS", "FAILED_FLAGS",
           "PROGRESS_KINDS", "REAUTH_BOUND", "REPLICA_ENABLERS", "SENTENCES", "ClientSlot",
           "Db", "enabled", "Fed", "Flag", "flatten", "Frame", "initial", "Kind", "Link",
           "Machine", "Memo", "PendingSnapshot", "Pub", "pubs_idle", "render", "Replica",
           "seqs", "State", "Stream", "StreamPhase", "Transition", "WorldConfig"]


def initial(config: WorldConfig) -> State:
    """The start: every client connecting (without a cursor by default), subscribers healthy."""
    start = None if config.start_cursor is None else EventId(0, config.start_cursor)
    slot = ClientSlot(cl.initial(start), -1, -1, (), 0, None, False, 0, False, start is not None,
                      NO_FLAGS)
    probe = config.probe_period if config.fixes.head_probe else -1
    replica = Replica(sb.initial(), -1, -1, Link.UP, (), False, -1, probe)
    s = State(clients=(slot,), replicas=(replica,), db=Db(0, 0, 0, 0),
              pubs=((Pub.IDLE, 0),) * config.publishers, published=0, faults=0, overrun=0)
    ctx = Ctx(config, s)
    feed_client(ctx, 0, cl.Start())
    feed_subscriber(ctx, 0, sb.Ready())
    s = ctx.state(s)
    return s._replace(clients=s.clients * config.clients, replicas=s.replicas * config.replicas)


# ---------------------------------------------------------------- enablers

#: A world-wide enabler: the config, the state, and what the search remembers of each
#: client's part of a world-wide move (None when nothing is remembered).
Enabler = Callable[[WorldConfig, State, Pieces | None], Iterator[Transition]]


def _t(kind: Kind, actor: int, state: State, *args: Arg, variant: str = "",
       ctx: Ctx | None = None) -> Transition:
    return tuple.__new__(Transition, (kind, actor, variant, args,
                                      tuple(ctx.feeds) if ctx else (), state))


def _publishers(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """Publishers take ids, commit and publish to Redis."""
    db = s.db
    for p, (phase, seq) in enumerate(s.pubs):
        pubs = list(s.pubs)
        if phase is Pub.IDLE and s.published < cfg.events:
            if cfg.fixes.topic_sequence:
                new = db.head + 1
                pubs[p] = (Pub.COMMITTED, new)
                ndb = db._replace(committed=db.committed | bit(new), head=new, next_id=new)
                yield _t(Kind.PUBLISH, p, s._replace(db=ndb, pubs=tuple(pubs),
                                                     published=s.published + 1),
                         new, variant="commit")
            else:
                new = db.next_id + 1
                pubs[p] = (Pub.ID_TAKEN, new)
                yield _t(Kind.PUBLISH, p, s._replace(db=db._replace(next_id=new), pubs=tuple(pubs),
                                                     published=s.published + 1),
                         new, variant="take-id")
        elif phase is Pub.ID_TAKEN:
            pubs[p] = (Pub.COMMITTED, seq)
            ndb = db._replace(committed=db.committed | bit(seq), head=max(db.head, seq))
            yield _t(Kind.PUBLISH, p, s._replace(db=ndb, pubs=tuple(pubs)), seq, variant="commit")
        elif phase is Pub.COMMITTED:
            pubs[p] = (Pub.IDLE, 0)
            queued = tuple(rep._replace(queue=(*rep.queue, seq)) if rep.link is Link.UP else rep
                           for rep in s.replicas)
            yield _t(Kind.PUBLISH, p, s._replace(pubs=tuple(pubs), replicas=queued), seq,
                     variant="publish")


def _publish_lost(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """Fault: a committed event's publish to Redis is lost (or the process dies before it)."""
    for p, (phase, _) in enumerate(s.pubs):
        if phase is Pub.COMMITTED:
            pubs = list(s.pubs)
            pubs[p] = (Pub.IDLE, 0)
            yield _t(Kind.REDIS_PUBLISH_LOST, p, s._replace(pubs=tuple(pubs), faults=s.faults + 1))


def _redis_delivers(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """Redis hands the next message of a link to its replica."""
    for r, rep in enumerate(s.replicas):
        if not rep.queue:
            continue
        msg = rep.queue[0]
        ctx = Ctx(cfg, s, pieces)
        ctx.replicas[r] = rep._replace(queue=rep.queue[1:])
        if msg > 0:
            for i in range(len(s.clients)):
                on_client(ctx, _live_to_client, i, r, msg)
            yield _t(Kind.DELIVER, r, ctx.state(s), msg, variant="event", ctx=ctx)
        else:
            on_replica(ctx, _sentinel_back, r, -msg)
            yield _t(Kind.DELIVER, r, ctx.state(s), -msg, variant="sentinel", ctx=ctx)


def _sentinel_back(ctx: Ctx, r: int, token: int) -> None:
    """Replica r's subscriber receives its own sentinel back."""
    feed_subscriber(ctx, r, sb.SentinelReceived(token=token))


def _live_to_client(ctx: Ctx, i: int, r: int, msg: int) -> None:
    """Replica r fans a live event out to client i's streams on it."""
    for k, stream in enumerate(ctx.clients[i].streams):
        if stream.replica != r:
            continue
        if stream.phase is StreamPhase.OPEN and stream.session is not None:
            feed_session(ctx, i, k, se.LiveEvent(seq=msg))
        elif stream.phase is StreamPhase.REGISTERED and _registered_hears_live():
            set_stream(ctx, i, k, ctx.clients[i].streams[k]._replace(
                early=(*stream.early, msg)))


def _links_reconnect(cfg: WorldConfig, s: State, r: int) -> Iterator[Transition]:
    """A visibly down subscriber link comes back."""
    rep = s.replicas[r]
    if rep.link is Link.DOWN:
        ctx = Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(link=Link.UP)
        if rep.subscriber.health is sb.Health.UNHEALTHY:
            # it resubscribed after a missed sentinel: redis-py reports the new
            # connection's attempt (Reconnecting) before it is ready, as the service sees
            feed_subscriber(ctx, r, sb.Reconnecting(reason="resubscribing"))
        feed_subscriber(ctx, r, sb.Ready())
        yield _t(Kind.RECONNECT, r, ctx.state(s), ctx=ctx)


def _replicas_come_up(cfg: WorldConfig, s: State, r: int) -> Iterator[Transition]:
    """A replica that went down accepts connections again."""
    rep = s.replicas[r]
    if rep.down:
        reps = list(s.replicas)
        reps[r] = rep._replace(down=False)
        yield _t(Kind.REPLICA_UP, r, s._replace(replicas=tuple(reps)))


def _subscriber_dies(cfg: WorldConfig, s: State, r: int) -> Iterator[Transition]:
    """Fault: a subscriber link dies silently."""
    rep = s.replicas[r]
    if rep.link is Link.UP:
        reps = list(s.replicas)
        reps[r] = rep._replace(link=Link.DEAD, queue=(), dead_for=0)
        yield _t(Kind.REDIS_SUBSCRIBER_DIES, r,
                 s._replace(replicas=tuple(reps), faults=s.faults + 1))


def _subscriber_disconnects(cfg: WorldConfig, s: State, r: int) -> Iterator[Transition]:
    """Fault: a subscriber link drops visibly."""
    rep = s.replicas[r]
    if rep.link is Link.UP:
        ctx = Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(link=Link.DOWN, queue=())
        feed_subscriber(ctx, r, sb.Reconnecting(reason="connection reset"))
        yield _t(Kind.REDIS_DISCONNECT, r, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _replica_goes_down(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """Fault: a replica goes down, closing its open streams."""
    for r, rep in enumerate(s.replicas):
        if rep.down:
            continue
        ctx = Ctx(cfg, s, pieces)
        ctx.replicas[r] = rep._replace(down=True)
        for i in range(len(s.clients)):
            on_client(ctx, _down_to_client, i, r)
        yield _t(Kind.REPLICAS_DOWN, r, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _down_to_client(ctx: Ctx, i: int, r: int) -> None:
    """Replica r goes down: client i's streams on it close (or, never answered, fail)."""
    slot = ctx.clients[i]
    for k in reversed(range(len(slot.streams))):
        stream = slot.streams[k]
        if stream.replica == r and stream.phase is StreamPhase.OPEN:
            close_stream(ctx, i, k)
            feed_client(ctx, i, cl.StreamClosed(reason="replica down"))
        elif stream.replica == r and stream.phase is StreamPhase.REGISTERED:
            close_stream(ctx, i, k)  # it never answered: the attempt fails
            feed_client(ctx, i, cl.StreamFailed(reason="replica down"))


def _retention_prunes(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """Fault: retention removes the oldest kept event."""
    db = s.db
    if db.floor < db.head:
        yield _t(Kind.POSTGRES_PRUNE, -1,
                 s._replace(db=db._replace(floor=db.floor + 1), faults=s.faults + 1), db.floor + 1)


def _awake(s: State) -> Iterator[tuple[int, ClientSlot]]:
    for i, slot in enumerate(s.clients):
        if not slot.asleep:
            yield i, slot


def _laptops_wake(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """A sleeping laptop wakes: every armed timer is due at once."""
    slot = s.clients[i]
    ctx = Ctx(cfg, s)
    ctx.clients[i] = slot._replace(asleep=False,
                                   heartbeat_left=0 if slot.heartbeat_left >= 0 else -1,
                                   backoff_left=0 if slot.backoff_left >= 0 else -1)
    yield _t(Kind.WAKE, i, ctx.state(s), ctx=ctx)


def _accepts(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """A replica that is up takes a connecting stream and registers it for live fan-out
    (or, none up, it is refused). Its head is read, and its session opened, next."""
    any_up = any(not rep.down for rep in s.replicas)
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            if stream.phase is not StreamPhase.CONNECTING:
                continue
            for r, rep in enumerate(s.replicas):
                if rep.down:
                    continue
                ctx = Ctx(cfg, s, pieces)
                on_client(ctx, _registers, i, k, r, _head_at_register(s))
                yield _t(Kind.ACCEPT, i, ctx.state(s), r, ctx=ctx)
            if not any_up:
                ctx = Ctx(cfg, s, pieces)
                on_client(ctx, _refused, i, k)
                yield _t(Kind.REFUSE, i, ctx.state(s), ctx=ctx)


def _registers(ctx: Ctx, i: int, k: int, r: int, head_read: int) -> None:
    """Replica r takes client i's connecting stream k and registers it for live fan-out."""
    stream = ctx.clients[i].streams[k]
    set_stream(ctx, i, k, stream._replace(replica=r, phase=StreamPhase.REGISTERED, early=(),
                                           head_read=head_read))


def _refused(ctx: Ctx, i: int, k: int) -> None:
    """No replica is up: client i's connecting stream k is refused."""
    close_stream(ctx, i, k)
    feed_client(ctx, i, cl.StreamFailed(reason="connection refused"))


def _opens(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """The replica reads the topic head, opens the session, feeds it what arrived early.

    The service's order (``service/stream.py``): register for live fan-out first, read
    the head second, open third; an event committed in between is both at most the head
    and in the early buffer, and the session drops the duplicate.
    """
    db = s.db
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if stream.phase is not StreamPhase.REGISTERED:
            continue
        ctx = Ctx(cfg, s)
        if not slot.page_loaded:  # the page's load: the state as of this head
            ctx.clients[i] = slot._replace(page_loaded=True, applied=slot.applied | db.committed)
        topic = _open_head(stream, db)
        set_stream(ctx, i, k, stream._replace(phase=StreamPhase.OPEN, session=se.initial(),
                                               early=(), head_read=-1))
        feed_session(ctx, i, k, se.Open(last_event_id=stream.cursor, topic=topic))
        for seq in stream.early:
            feed_session(ctx, i, k, se.LiveEvent(seq=seq))
        feed_client(ctx, i, cl.StreamOpened())
        yield _t(Kind.OPEN, i, ctx.state(s), stream.replica, topic.head, ctx=ctx)


def _registered_hears_live() -> bool:
    """Whether a registered stream is already fanned out live (the service's order: yes)."""
    return True


def _head_at_register(s: State) -> int:
    """A head read before registering: none in the service's order (-1)."""
    return -1


def _open_head(stream: Stream, db: Db) -> se.TopicHead:
    """The topic row an opening session is given: read now, after registering."""
    return se.TopicHead(0, db.head, db.floor)


def _replays(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Postgres answers a running replay query with its rows."""
    db = s.db
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        q = stream.query
        if stream.phase is not StreamPhase.OPEN or q is None:
            continue
        rows = tuple(seq for seq in seqs(db.committed)
                     if seq > q.after and seq > db.floor and (q.upto is None or seq <= q.upto))
        if q.limit is not None:
            rows = rows[: q.limit]
        ctx = Ctx(cfg, s)
        set_stream(ctx, i, k, stream._replace(query=None))
        feed_session(ctx, i, k, se.ReplayRows(seqs=rows, floor=db.floor))
        over = len(rows) - (cfg.replay_limit + 1)
        yield _t(Kind.REPLAY, i, ctx.state(s, overrun=max(s.overrun, over, 0)), rows, ctx=ctx)


def _replay_fails(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: a running replay query fails."""
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if stream.phase is not StreamPhase.OPEN or stream.query is None:
            continue
        ctx = Ctx(cfg, s)
        set_stream(ctx, i, k, stream._replace(query=None))
        feed_session(ctx, i, k, se.ReplayError(reason="statement timeout"))
        yield _t(Kind.POSTGRES_REPLAY_FAILS, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


_RECEIVE: dict[Frame, tuple[str, Callable[[int], cl.ClientInput]]] = {
    Frame.EVENT: ("event", lambda seq: cl.EventReceived(event_id=EventId(0, seq))),
    Frame.TRUNCATED: ("truncated", lambda seq: cl.ReplayTruncated(head=EventId(0, seq))),
    Frame.FAILED: ("failed", lambda seq: cl.ReplayFailed()),
    Frame.HEAD: ("head", lambda seq: cl.HeadAnnounced(head=EventId(0, seq))),
}


def _receives(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """The client reads the next frame of its current stream."""
    slot = s.clients[i]
    if not slot.streams:
        return
    k = len(slot.streams) - 1
    stream = slot.streams[k]
    if stream.phase is not StreamPhase.OPEN or not stream.wire:
        return
    frame, seq = stream.wire[0]
    ctx = Ctx(cfg, s)
    set_stream(ctx, i, k, stream._replace(wire=stream.wire[1:]))
    variant, make = _RECEIVE[frame]
    feed_client(ctx, i, make(seq))
    yield _t(Kind.RECEIVE, i, ctx.state(s), *((seq,) if frame is not Frame.FAILED else ()),
             variant=variant, ctx=ctx)


def _streams_drop(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: an open stream closes; both ends see it."""
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if stream.phase is StreamPhase.OPEN:
            ctx = Ctx(cfg, s)
            close_stream(ctx, i, k)
            feed_client(ctx, i, cl.StreamClosed(reason="network"))
            yield _t(Kind.NETWORK_DROP, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _streams_stall(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: an open stream goes silent without closing."""
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if stream.phase is StreamPhase.OPEN:
            ctx = Ctx(cfg, s)
            set_stream(ctx, i, k, _stalled(stream))
            yield _t(Kind.NETWORK_STALL, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _stalled(stream: Stream) -> Stream:
    return stream._replace(phase=StreamPhase.STALLED, session=None, wire=(), query=None)


def _snapshots_load(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """A pending snapshot finishes loading."""
    db = s.db
    slot = s.clients[i]
    if slot.snapshot is None:
        return
    head_first, value = slot.snapshot
    if head_first:
        applied, head = slot.applied | db.committed, value
    else:
        applied, head = slot.applied | value, db.head
    ctx = Ctx(cfg, s)
    ctx.clients[i] = slot._replace(snapshot=None, applied=applied)
    feed_client(ctx, i, cl.RehydrateDone(head=EventId(0, head)))
    yield _t(Kind.SNAPSHOT, i, ctx.state(s), head, ctx=ctx)


def _snapshot_fails(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: a pending snapshot load fails."""
    slot = s.clients[i]
    if slot.snapshot is None:
        return
    ctx = Ctx(cfg, s)
    ctx.clients[i] = slot._replace(snapshot=None)
    feed_client(ctx, i, cl.RehydrateFailed(reason="statement timeout"))
    yield _t(Kind.POSTGRES_SNAPSHOT_FAILS, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _client_timers(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """A due heartbeat or backoff timer fires."""
    slot = s.clients[i]
    if slot.heartbeat_left == 0:
        ctx = Ctx(cfg, s)
        ctx.clients[i] = slot._replace(heartbeat_left=-1)
        feed_client(ctx, i, cl.TimerFired(timer=cl.HEARTBEAT))
        yield _t(Kind.TIMER, i, ctx.state(s), slot.machine.status.value, variant="heartbeat",
                 ctx=ctx)
    if slot.backoff_left == 0:
        ctx = Ctx(cfg, s)
        ctx.clients[i] = slot._replace(backoff_left=-1)
        feed_client(ctx, i, cl.TimerFired(timer=cl.BACKOFF))
        yield _t(Kind.TIMER, i, ctx.state(s), variant="backoff", ctx=ctx)


def _triggers(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """The browser goes online or the page becomes visible (waiting or failed clients)."""
    slot = s.clients[i]
    if slot.machine.status is cl.Status.WAITING or slot.machine.status is cl.Status.FAILED:
        for variant, trigger in (("online", cl.Online()), ("visible", cl.Visible())):
            ctx = Ctx(cfg, s)
            feed_client(ctx, i, trigger)
            yield _t(Kind.TRIGGER, i, ctx.state(s), variant=variant, ctx=ctx)


def _retries(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """The user presses Retry on a failed client (recover())."""
    slot = s.clients[i]
    if slot.machine.status is cl.Status.FAILED:
        ctx = Ctx(cfg, s)
        feed_client(ctx, i, cl.Recover())
        yield _t(Kind.RETRY, i, ctx.state(s), ctx=ctx)


def _laptops_sleep(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: a laptop lid closes; open streams go silent, timers stand still."""
    slot = s.clients[i]
    ctx = Ctx(cfg, s)
    frozen = tuple(_stalled(st) if st.phase is StreamPhase.OPEN else st for st in slot.streams)
    ctx.clients[i] = slot._replace(asleep=True, streams=frozen)
    yield _t(Kind.CLIENTS_SLEEP, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _sentinel_timers(cfg: WorldConfig, s: State, r: int) -> Iterator[Transition]:
    """A replica's due sentinel or sentinel-timeout timer fires."""
    rep = s.replicas[r]
    if rep.sentinel_left == 0:
        ctx = Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(sentinel_left=-1)
        feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL))
        yield _t(Kind.TIMER, r, ctx.state(s), variant="sentinel", ctx=ctx)
    if rep.sentinel_timeout_left == 0:
        ctx = Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(sentinel_timeout_left=-1)
        feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL_TIMEOUT))
        yield _t(Kind.TIMER, r, ctx.state(s), variant="sentinel-timeout", ctx=ctx)


def _tokens_revoked(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """Fault: a streaming client's token is revoked (or expires)."""
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if stream.phase is StreamPhase.OPEN and not stream.revoked:
            ctx = Ctx(cfg, s)
            set_stream(ctx, i, k, stream._replace(revoked=True))
            yield _t(Kind.AUTH_REVOKE, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _reauth_checks(cfg: WorldConfig, s: State, i: int) -> Iterator[Transition]:
    """The replica's re-check finds a revoked token and tells the stream's session.

    The service checks on every replay and every ``SSELAB_REAUTH_INTERVAL_S``; the world
    has the check happen before time passes, so ``revoked-stream-ends`` judges what the
    session does with it.
    """
    slot = s.clients[i]
    for k, stream in enumerate(slot.streams):
        if (stream.phase is StreamPhase.OPEN and stream.revoked and stream.revoked_for < 0
                and stream.session is not None):
            ctx = Ctx(cfg, s)
            set_stream(ctx, i, k, stream._replace(revoked_for=0))
            feed_session(ctx, i, k, se.Revoked(reason="revoked"))
            yield _t(Kind.REAUTH, i, ctx.state(s), stream.replica, ctx=ctx)


def _probes(cfg: WorldConfig, s: State, pieces: Pieces | None) -> Iterator[Transition]:
    """A replica's head probe is due: read the head, feed it to the replica's open sessions."""
    for r, rep in enumerate(s.replicas):
        if rep.probe_left != 0:
            continue
        ctx = Ctx(cfg, s, pieces)
        ctx.replicas[r] = rep._replace(probe_left=cfg.probe_period)
        feed_replica_sessions(ctx, r, se.HeadProbed(topic=se.TopicHead(0, s.db.head, s.db.floor)))
        yield _t(Kind.PROBE, r, ctx.state(s), s.db.head, ctx=ctx)


#: (kind, enabler) of the world-wide transitions, in the order they are listed; fault
#: enablers run only while the fault budget lasts. One enabler per actor and kind.
ENABLERS: tuple[tuple[Kind, Enabler], ...] = (
    (Kind.PUBLISH, _publishers),
    (Kind.REDIS_PUBLISH_LOST, _publish_lost),
    (Kind.DELIVER, _redis_delivers),
    (Kind.REPLICAS_DOWN, _replica_goes_down),
    (Kind.POSTGRES_PRUNE, _retention_prunes),
    (Kind.ACCEPT, _accepts),
    (Kind.PROBE, _probes),
    (Kind.TICK, time_passes),
)

#: (kind, enabler) of one replica's own moves, listed next, replica by replica. Each reads
#: only the config, that replica and the database, and changes only that replica (and
#: the fault count), unless its subscriber asks for a resync of the replica's streams
#: (``model.world_shell.feed_replica_sessions``): such a move is never remembered.
REPLICA_ENABLERS: tuple[tuple[Kind, ActorEnabler], ...] = (
    (Kind.RECONNECT, _links_reconnect),
    (Kind.REPLICA_UP, _replicas_come_up),
    (Kind.REDIS_SUBSCRIBER_DIES, _subscriber_dies),
    (Kind.REDIS_DISCONNECT, _subscriber_disconnects),
    (Kind.TIMER, _sentinel_timers),
)

#: (kind, enabler) of one client's own moves, listed last, client by client. Each reads
#: only the config, that client's slot and the database, and changes only that slot (and
#: the fault count and replay overrun): so :func:`enabled` may reuse a client's moves
#: across states that share its slot and the database (:class:`Memo`). A sleeping
#: laptop only wakes (:data:`ASLEEP_ENABLERS`); these run for clients that are awake.
ASLEEP_ENABLERS: tuple[tuple[Kind, ActorEnabler], ...] = ((Kind.WAKE, _laptops_wake),)
CLIENT_ENABLERS: tuple[tuple[Kind, ActorEnabler], ...] = (
    (Kind.OPEN, _opens),
    (Kind.REPLAY, _replays),
    (Kind.POSTGRES_REPLAY_FAILS, _replay_fails),
    (Kind.RECEIVE, _receives),
    (Kind.NETWORK_DROP, _streams_drop),
    (Kind.NETWORK_STALL, _streams_stall),
    (Kind.SNAPSHOT, _snapshots_load),
    (Kind.POSTGRES_SNAPSHOT_FAILS, _snapshot_fails),
    (Kind.TIMER, _client_timers),
    (Kind.TRIGGER, _triggers),
    (Kind.RETRY, _retries),
    (Kind.CLIENTS_SLEEP, _laptops_sleep),
    (Kind.AUTH_REVOKE, _tokens_revoked),
    (Kind.REAUTH, _reauth_checks),
)

#: world-wide, per-replica, per awake client, per sleeping client
_Chosen = tuple[tuple[Enabler, ...], tuple[ActorEnabler, ...], tuple[ActorEnabler, ...],
                tuple[ActorEnabler, ...]]
_CHOSEN: dict[tuple[int, bool], tuple[WorldConfig, _Chosen]] = {}


def _chosen(cfg: WorldConfig, budget: bool) -> _Chosen:
    """The enablers that run: faults only while the budget lasts, and not those left out."""
    hit = _CHOSEN.get((id(cfg), budget))
    if hit is None or hit[0] is not cfg:
        def keep(kind: Kind) -> bool:
            return budget and kind.value not in cfg.without_faults if kind.fault else True
        hit = (cfg, (tuple(e for k, e in ENABLERS if keep(k)),
                     tuple(e for k, e in REPLICA_ENABLERS if keep(k)),
                     tuple(e for k, e in CLIENT_ENABLERS if keep(k)),
                     tuple(e for k, e in ASLEEP_ENABLERS if keep(k))))
        _CHOSEN[(id(cfg), budget)] = hit
    return hit[1]


def enabled(cfg: WorldConfig, s: State, memo: Memo | None = None, skip: int = 0) -> list[Transition]:
    """Every transition enabled in ``s``: world-wide ones, then each replica's, each client's.

    ``memo`` (kept by the caller for one search of one world) remembers each client's
    and each replica's own moves; the result is the same with or without it. ``skip``
    (with a memo) leaves out the own moves of the actors whose bits it sets: replica
    ``r`` is bit ``r``, client ``i`` bit ``replicas + i`` (``Memo.spans``).
    """
    budget = s.faults < cfg.faults
    world_wide, replica_own, awake_own, asleep_own = _chosen(cfg, budget)
    out: list[Transition] = []
    pieces = memo.pieces if memo is not None else None
    for enabler in world_wide:
        out.extend(enabler(cfg, s, pieces))
    if memo is not None:
        memo.extend(out, cfg, s, budget, replica_own, awake_own, asleep_own, skip)
        return out
    if skip:
        raise ValueError("enabled(skip=...) needs a memo: only remembered moves are left out")
    for r in range(len(s.replicas)):
        for replica_enabler in replica_own:
            out.extend(replica_enabler(cfg, s, r))
    for i, slot in enumerate(s.clients):
        for client_enabler in asleep_own if slot.asleep else awake_own:
            out.extend(client_enabler(cfg, s, i))
    return out
