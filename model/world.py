"""The composed world: clients, replicas, Redis, Postgres, publishers and faults.

What it is. A finite transition system built from the very machines the
service runs (``model.client``, ``model.session``, ``model.subscriber``), plus
small models of what they talk to. :func:`initial` gives the start state and
:func:`enabled` every action the environment or a machine can take next, each
with a label that reads as a sentence ("redis: subscriber of replica 0 dies
silently"). The checker walks it exhaustively, Hypothesis walks it at random,
and both judge every state with :func:`model.invariants.check`.

The actors and what the world assumes of them.

* **Clients** run ``model.client``. Each starts connecting, resuming from event
  ``0-0`` (it has loaded the empty state). A client holds its streams, what it
  has applied (a bit per event), a pending snapshot, whether its laptop sleeps,
  and a ghost counter of the attempts it really started since its last stable
  connection, against which ``bounded-counter`` is judged.
* **Streams** go ``connecting`` (sent, not yet accepted) -> ``open`` (a replica
  runs ``model.session`` for it; what the session sends waits on the wire in
  order) -> ``stalled`` (silently dead: the server side is gone, the client hears
  nothing). The load balancer may give a stream to any replica that is up.
  Server heartbeats are implicit: while a stream is open, the client's
  heartbeat timer does not run down, and the first tick after opening delivers
  the first heartbeat (which makes the connection stable).
* **Redis** keeps one subscription link per replica: ``up``, ``dead`` (silently:
  nothing arrives, nothing is reported) or ``down`` (visibly; the subscriber
  hears ``Reconnecting`` and later ``Ready``). Delivery is at most once and in
  order per link: what is published while a link is not up, or sits in it when
  it breaks, is lost.
* **Postgres** keeps one topic: the committed events (a bit per seq), the head
  and the retention floor. With ``topic-sequence`` on a publisher commits
  ``head + 1`` in one step; off, it first takes an id from a shared sequence
  and commits it later, so ids can commit out of order. A replay query returns
  the committed rows ``after < seq [<= upto]`` above the floor, at most
  ``limit``, unless the fault "the replay query fails" is chosen instead.
* **Publishers** commit, then publish to Redis, ``events`` times in all.
* **Time** passes in ticks. No clock is kept: each armed timer holds the ticks
  left, ``time passes`` moves every running timer on by one, and is not enabled
  while a timer is due, so due timers fire first. A sleeping laptop's timers
  stand still and are all due when it wakes.
* **Faults** (the vocabulary of ``model.faults``) happen at most ``faults``
  times in all: a stream drops or stalls, a laptop sleeps, a subscriber link dies
  silently or is disconnected, a replay query fails, retention prunes, a replica
  goes down. Waking up, links reconnecting, replicas coming back, browser
  online / visible triggers and the user's Retry are not faults.

The world passes ``now=0`` to every machine and reads a timer's ``at`` as the
ticks left, which is why no absolute time appears in any state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.backoff import BackoffPolicy, Kind
from model.core import Action, CancelTimer, EventId, Log, StartTimer
from model.faults import label as fault_label
from model.fixes import Fixes
from model.invariants import (
    BOUNDED_COUNTER,
    BOUNDED_REPLAY,
    DETECTION_BOUND,
    FAILED_ONLY_AFTER_MAX,
    NO_SILENT_STALE,
    SINGLE_STREAM,
    StaleFacts,
    covered,
)

__all__ = [
    "ClientSlot",
    "Db",
    "Replica",
    "State",
    "Stream",
    "World",
    "WorldConfig",
    "client_facts",
    "converged",
    "enabled",
    "flatten",
    "initial",
    "PROGRESS_KINDS",
    "state_violations",
    "successors",
    "transition_kind",
    "undetected",
    "violations",
]

# Stream phases
CONNECTING, OPEN, STALLED = 0, 1, 2
_PHASE = ("connecting", "open", "stalled")
# Link states
UP, DEAD, DOWN = 0, 1, 2
_LINK = ("up", "dead", "down")
# Wire message kinds
EVENT, TRUNCATED, FAILED = 0, 1, 2
# Flags for failed-only-after-max, recorded when they happen
FAILED_EARLY, LEFT_FAILED, STREAMED_BEFORE_SNAPSHOT = 1, 2, 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Sizes, bounds, timings (in ticks) and fixes of a world."""

    clients: int = 1
    replicas: int = 1
    publishers: int = 1
    events: int = 2
    faults: int = 1
    max_attempts: int = 3
    replay_limit: int = 2
    heartbeat_timeout: int = 3
    heartbeat_check_interval: int = 1
    sentinel_interval: int = 4
    sentinel_timeout: int = 2
    backoff_base: int = 1
    backoff_cap: int = 4
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        for name in ("clients", "replicas", "publishers", "max_attempts", "replay_limit",
                     "heartbeat_timeout", "heartbeat_check_interval", "sentinel_interval",
                     "sentinel_timeout", "backoff_cap"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("events", "faults", "backoff_base"):
            if getattr(self, name) < 0:
                raise ValueError(f"WorldConfig.{name} must be at least 0, got {getattr(self, name)}")
        if self.events > 60:
            raise ValueError("WorldConfig.events is at most 60 (events are bits of an int)")

    @property
    def client(self) -> cl.ClientConfig:
        """The client machine's config."""
        return cl.ClientConfig(
            heartbeat_timeout=self.heartbeat_timeout,
            heartbeat_check_interval=self.heartbeat_check_interval,
            max_attempts=self.max_attempts,
            policy=BackoffPolicy(kind=Kind.EXPONENTIAL, base=self.backoff_base,
                                 cap=max(self.backoff_cap, self.backoff_base), factor=2.0),
            fixes=self.fixes,
        )

    @property
    def session(self) -> se.SessionConfig:
        """The session machine's config."""
        return se.SessionConfig(replay_limit=self.replay_limit, heartbeat_interval=1,
                                fixes=self.fixes)

    @property
    def subscriber(self) -> sb.SubscriberConfig:
        """The subscriber machine's config."""
        return sb.SubscriberConfig(sentinel_interval=self.sentinel_interval,
                                   sentinel_timeout=self.sentinel_timeout, token_space=2,
                                   fixes=self.fixes)

    @property
    def detection_bound(self) -> int:
        """Ticks within which a silent subscriber death must be detected."""
        return self.sentinel_interval + self.sentinel_timeout

    def to_dict(self) -> dict[str, object]:
        """The config as plain JSON-able values, fixes as the list of those on."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["fixes"] = list(self.fixes.on())
        return out


class Stream(NamedTuple):
    """One stream of a client, from request to close."""

    replica: int  #: -1 until a replica accepts it
    phase: int  #: CONNECTING, OPEN or STALLED
    cursor: EventId | None  #: the Last-Event-ID it was opened with
    sess: se.SessionState | None  #: the replica's session while open
    wire: tuple[tuple[int, int], ...]  #: frames sent, not yet received: (kind, seq)
    query: se.QueryReplay | None  #: the replay query running for it
    heard: bool  #: a message reached the client on this stream


class ClientSlot(NamedTuple):
    """A client and everything the world knows about it."""

    m: cl.ClientState
    hb: int  #: heartbeat timer: ticks left, -1 when not armed
    bo: int  #: backoff timer
    streams: tuple[Stream, ...]
    applied: int  #: bit seq-1 set when event seq is applied
    rh: tuple[bool, int] | None  #: pending snapshot: (head first, head read or snapshot mask)
    asleep: bool
    ghost: int  #: attempts really started since the last stable connection
    recovering: bool  #: recover() ran and its snapshot is not done yet
    bad: int  #: failed-only-after-max flags seen so far


class Replica(NamedTuple):
    """A replica: its subscriber, its Redis link and its own state."""

    sub: sb.SubscriberState
    st: int  #: sentinel timer
    sto: int  #: sentinel-timeout timer
    link: int  #: UP, DEAD or DOWN
    queue: tuple[int, ...]  #: Redis messages on the way: seq > 0, or -token for a sentinel
    down: bool  #: refusing connections
    dead_for: int  #: ticks since its link died silently, undetected; -1 otherwise


class Db(NamedTuple):
    """The topic in Postgres."""

    committed: int  #: bit seq-1 set when seq is committed
    head: int
    floor: int  #: highest seq no longer kept
    next_id: int  #: ids handed out so far


class State(NamedTuple):
    """The whole world state (without its config)."""

    clients: tuple[ClientSlot, ...]
    replicas: tuple[Replica, ...]
    db: Db
    pubs: tuple[tuple[int, int], ...]  #: per publisher: (0 idle | 1 id taken | 2 committed, seq)
    published: int  #: publishes begun
    faults: int  #: faults spent
    overrun: int  #: most rows any replay read beyond limit + 1 (0: none)


class World:
    """A world state together with its config; equal and hashed by state."""

    __slots__ = ("config", "state")

    def __init__(self, config: WorldConfig, state: State) -> None:
        self.config = config
        self.state = state

    def __hash__(self) -> int:
        return hash(self.state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, World) and other.state == self.state

    def __repr__(self) -> str:
        return f"World({self.config!r}, ...)"


def initial(config: WorldConfig) -> World:
    """The start: every client connecting from 0-0, every subscriber healthy."""
    return World(config, initial_state(config))


def initial_state(config: WorldConfig) -> State:
    """The start state of ``config``."""
    start = EventId(0, 0)
    m, _ = cl.step(config.client, cl.initial(start), cl.Start())
    stream = Stream(-1, CONNECTING, start, None, (), None, False)
    slot = ClientSlot(m, -1, -1, (stream,), 0, None, False, 1, False, 0)
    sub, acts = sb.step(config.subscriber, sb.initial(), sb.Ready())
    replica = Replica(sub, -1, -1, UP, (), False, -1)
    for act in acts:
        if isinstance(act, StartTimer) and act.timer == sb.SENTINEL:
            replica = replica._replace(st=_ticks(act.at))
    return State(
        clients=(slot,) * config.clients,
        replicas=(replica,) * config.replicas,
        db=Db(0, 0, 0, 0),
        pubs=((0, 0),) * config.publishers,
        published=0,
        faults=0,
        overrun=0,
    )


def _ticks(at: float) -> int:
    return max(0, math.ceil(at))


def _bit(seq: int) -> int:
    return 1 << (seq - 1)


def _seqs(mask: int) -> Iterator[int]:
    seq = 1
    while mask:
        if mask & 1:
            yield seq
        mask >>= 1
        seq += 1


# ---------------------------------------------------------------- carrying out actions


class _Ctx:
    """Mutable scratch for one transition: lists replaced into a new State at the end."""

    __slots__ = ("ccfg", "cfg", "clients", "db", "replicas", "scfg", "subcfg")

    def __init__(self, cfg: WorldConfig, s: State) -> None:
        self.cfg = cfg
        self.ccfg, self.scfg, self.subcfg = _configs(cfg)
        self.clients = list(s.clients)
        self.replicas = list(s.replicas)
        self.db = s.db

    def state(self, s: State, *, faults: int | None = None, overrun: int | None = None) -> State:
        return State(tuple(self.clients), tuple(self.replicas), self.db, s.pubs, s.published,
                     s.faults if faults is None else faults,
                     s.overrun if overrun is None else overrun)


_CONFIG_CACHE: dict[int, tuple[WorldConfig, cl.ClientConfig, se.SessionConfig,
                               sb.SubscriberConfig]] = {}


def _configs(cfg: WorldConfig) -> tuple[cl.ClientConfig, se.SessionConfig, sb.SubscriberConfig]:
    hit = _CONFIG_CACHE.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = (cfg, cfg.client, cfg.session, cfg.subscriber)
        _CONFIG_CACHE[id(cfg)] = hit
    return hit[1], hit[2], hit[3]


def _feed_client(ctx: _Ctx, i: int, event: cl.ClientInput) -> None:
    """Step client i's machine with ``event`` and carry out its actions."""
    slot = ctx.clients[i]
    old = slot.m
    m, acts = cl.step(ctx.ccfg, old, event)
    bad = slot.bad
    recovering = slot.recovering
    ghost = slot.ghost
    if old.status is cl.Status.FAILED and m.status is not cl.Status.FAILED:
        if not isinstance(event, cl.Recover | cl.Online | cl.Visible):
            bad |= LEFT_FAILED
        recovering = True
        ghost = 0  # recover() starts a new count, as the user asked for
    if isinstance(event, cl.RehydrateDone):
        recovering = False
    slot = slot._replace(m=m, bad=bad, recovering=recovering, ghost=ghost)
    for act in acts:
        slot = _client_act(ctx, slot, act)
    ctx.clients[i] = slot


def _client_act(ctx: _Ctx, slot: ClientSlot, act: Action) -> ClientSlot:
    kind = act.__class__
    if kind is StartTimer:
        assert isinstance(act, StartTimer)
        if act.timer == cl.HEARTBEAT:
            return slot._replace(hb=_ticks(act.at))
        return slot._replace(bo=_ticks(act.at))
    if kind is CancelTimer:
        assert isinstance(act, CancelTimer)
        if act.timer == cl.HEARTBEAT:
            return slot._replace(hb=-1)
        return slot._replace(bo=-1)
    if kind is cl.OpenStream:
        assert isinstance(act, cl.OpenStream)
        bad = slot.bad | (STREAMED_BEFORE_SNAPSHOT if slot.recovering else 0)
        stream = Stream(-1, CONNECTING, act.last_event_id, None, (), None, False)
        return slot._replace(streams=(*slot.streams, stream), ghost=slot.ghost + 1, bad=bad)
    if kind is cl.CloseStream:
        return slot._replace(streams=slot.streams[:-1])
    if kind is cl.Deliver:
        assert isinstance(act, cl.Deliver)
        return slot._replace(applied=slot.applied | _bit(act.event_id.seq))
    if kind is cl.StartRehydrate:
        assert isinstance(act, cl.StartRehydrate)
        db = ctx.db
        pending = (True, db.head) if act.head_first else (False, db.committed)
        return slot._replace(rh=pending)
    if kind is cl.StatusChanged:
        assert isinstance(act, cl.StatusChanged)
        if act.status is cl.Status.FAILED and slot.ghost < ctx.cfg.max_attempts:
            return slot._replace(bad=slot.bad | FAILED_EARLY)
        return slot
    if kind is Log:
        return slot
    raise AssertionError(f"the world cannot carry out client action {act!r}")


def _feed_session(ctx: _Ctx, i: int, k: int, event: se.SessionInput) -> None:
    """Step the session of client i's stream k and carry out its actions."""
    slot = ctx.clients[i]
    stream = slot.streams[k]
    assert stream.sess is not None
    sess, acts = se.step(ctx.scfg, stream.sess, event)
    wire = stream.wire
    query = stream.query
    for act in acts:
        kind = act.__class__
        if kind is se.Send:
            assert isinstance(act, se.Send)
            wire = (*wire, (EVENT, act.event_id.seq))
        elif kind is se.QueryReplay:
            assert isinstance(act, se.QueryReplay)
            query = act
        elif kind is se.SendTruncated:
            assert isinstance(act, se.SendTruncated)
            wire = (*wire, (TRUNCATED, act.head.seq))
        elif kind is se.SendFailed:
            wire = (*wire, (FAILED, 0))
        elif kind in (StartTimer, CancelTimer, se.SendHeartbeat, Log):
            pass  # heartbeats are implicit in the world
        else:
            raise AssertionError(f"the world cannot carry out session action {act!r}")
    streams = list(slot.streams)
    streams[k] = stream._replace(sess=sess, wire=wire, query=query)
    ctx.clients[i] = slot._replace(streams=tuple(streams))


def _feed_subscriber(ctx: _Ctx, r: int, event: sb.SubscriberInput) -> None:
    """Step replica r's subscriber and carry out its actions."""
    rep = ctx.replicas[r]
    sub, acts = sb.step(ctx.subcfg, rep.sub, event)
    rep = rep._replace(sub=sub)
    resync = False
    for act in acts:
        kind = act.__class__
        if kind is StartTimer:
            assert isinstance(act, StartTimer)
            if act.timer == sb.SENTINEL:
                rep = rep._replace(st=_ticks(act.at))
            else:
                rep = rep._replace(sto=_ticks(act.at))
        elif kind is CancelTimer:
            assert isinstance(act, CancelTimer)
            if act.timer == sb.SENTINEL:
                rep = rep._replace(st=-1)
            else:
                rep = rep._replace(sto=-1)
        elif kind is sb.PublishSentinel:
            assert isinstance(act, sb.PublishSentinel)
            if rep.link == UP:
                rep = rep._replace(queue=(*rep.queue, -act.token))
        elif kind is sb.Resubscribe:
            rep = rep._replace(link=DOWN, queue=())
        elif kind is sb.ResyncStreams:
            resync = True
        elif kind is sb.HealthChanged:
            assert isinstance(act, sb.HealthChanged)
            if act.health is not sb.Health.HEALTHY:
                rep = rep._replace(dead_for=-1)
        elif kind is Log:
            pass
        else:
            raise AssertionError(f"the world cannot carry out subscriber action {act!r}")
    ctx.replicas[r] = rep
    if resync:
        topic = se.TopicHead(0, ctx.db.head, ctx.db.floor)
        for i, slot in enumerate(ctx.clients):
            for k, stream in enumerate(slot.streams):
                if stream.replica == r and stream.phase == OPEN and stream.sess is not None:
                    _feed_session(ctx, i, k, se.Resync(topic=topic))


def _mark_heard(ctx: _Ctx, i: int, k: int) -> None:
    slot = ctx.clients[i]
    stream = slot.streams[k]
    if not stream.heard:
        streams = list(slot.streams)
        streams[k] = stream._replace(heard=True)
        ctx.clients[i] = slot._replace(streams=tuple(streams), ghost=0)


def _close_stream(ctx: _Ctx, i: int, k: int) -> None:
    slot = ctx.clients[i]
    streams = list(slot.streams)
    del streams[k]
    ctx.clients[i] = slot._replace(streams=tuple(streams))


# ---------------------------------------------------------------- transitions


def successors(cfg: WorldConfig, s: State) -> list[tuple[str, State]]:
    """Every transition enabled in ``s``: (label, next state)."""
    out: list[tuple[str, State]] = []
    fx = cfg.fixes
    faults_left = s.faults < cfg.faults
    db = s.db

    # Publishers -------------------------------------------------------------
    for p, (phase, seq) in enumerate(s.pubs):
        if phase == 0 and s.published < cfg.events:
            pubs = list(s.pubs)
            if fx.topic_sequence:
                new = db.head + 1
                pubs[p] = (2, new)
                ndb = db._replace(committed=db.committed | _bit(new), head=new, next_id=new)
                out.append((f"publisher {p} commits event {new}",
                            s._replace(db=ndb, pubs=tuple(pubs), published=s.published + 1)))
            else:
                new = db.next_id + 1
                pubs[p] = (1, new)
                out.append((f"publisher {p} takes id {new} from the shared sequence",
                            s._replace(db=db._replace(next_id=new), pubs=tuple(pubs),
                                       published=s.published + 1)))
        elif phase == 1:
            pubs = list(s.pubs)
            pubs[p] = (2, seq)
            ndb = db._replace(committed=db.committed | _bit(seq), head=max(db.head, seq))
            out.append((f"publisher {p} commits event {seq}", s._replace(db=ndb, pubs=tuple(pubs))))
        elif phase == 2:
            pubs = list(s.pubs)
            pubs[p] = (0, 0)
            queued = tuple(rep._replace(queue=(*rep.queue, seq)) if rep.link == UP else rep
                           for rep in s.replicas)
            out.append((f"publisher {p} publishes event {seq} to redis",
                        s._replace(pubs=tuple(pubs), replicas=queued)))

    # Redis ------------------------------------------------------------------
    for r, rep in enumerate(s.replicas):
        if rep.queue:
            msg = rep.queue[0]
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(queue=rep.queue[1:])
            if msg > 0:
                for i, slot in enumerate(s.clients):
                    for k, stream in enumerate(slot.streams):
                        if stream.replica == r and stream.phase == OPEN and stream.sess is not None:
                            _feed_session(ctx, i, k, se.LiveEvent(seq=msg))
                out.append((f"redis: delivers event {msg} to replica {r}", ctx.state(s)))
            else:
                _feed_subscriber(ctx, r, sb.SentinelReceived(token=-msg))
                out.append((f"redis: delivers sentinel {-msg} to replica {r}", ctx.state(s)))
        if rep.link == DOWN:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(link=UP)
            _feed_subscriber(ctx, r, sb.Ready())
            out.append((f"redis: subscriber of replica {r} reconnects", ctx.state(s)))
        if rep.down:
            reps = list(s.replicas)
            reps[r] = rep._replace(down=False)
            out.append((f"replica {r} comes back up", s._replace(replicas=tuple(reps))))
        if faults_left and rep.link == UP:
            reps = list(s.replicas)
            reps[r] = rep._replace(link=DEAD, queue=(), dead_for=0)
            out.append((fault_label("redis.subscriber_dies", replica=r),
                        s._replace(replicas=tuple(reps), faults=s.faults + 1)))
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(link=DOWN, queue=())
            _feed_subscriber(ctx, r, sb.Reconnecting(reason="connection reset"))
            out.append((fault_label("redis.disconnect", replica=r),
                        ctx.state(s, faults=s.faults + 1)))
        if faults_left and not rep.down:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(down=True)
            for i, slot in enumerate(s.clients):
                for k in reversed(range(len(slot.streams))):
                    stream = slot.streams[k]
                    if stream.replica == r and stream.phase == OPEN:
                        _close_stream(ctx, i, k)
                        _feed_client(ctx, i, cl.StreamClosed(reason="replica down"))
            out.append((fault_label("replicas.down", replica=r), ctx.state(s, faults=s.faults + 1)))

    if faults_left and db.floor < db.head:
        out.append((fault_label("postgres.prune", seq=db.floor + 1),
                    s._replace(db=db._replace(floor=db.floor + 1), faults=s.faults + 1)))

    # Clients ----------------------------------------------------------------
    any_up = any(not rep.down for rep in s.replicas)
    for i, slot in enumerate(s.clients):
        m = slot.m
        if slot.asleep:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(asleep=False, hb=0 if slot.hb >= 0 else -1,
                                           bo=0 if slot.bo >= 0 else -1)
            out.append((f"client {i}: laptop wakes", ctx.state(s)))
            continue
        status = m.status
        # Streams on the network.
        for k, stream in enumerate(slot.streams):
            if stream.phase == CONNECTING:
                for r, rep in enumerate(s.replicas):
                    if rep.down:
                        continue
                    ctx = _Ctx(cfg, s)
                    streams = list(slot.streams)
                    streams[k] = stream._replace(replica=r, phase=OPEN, sess=se.initial())
                    ctx.clients[i] = slot._replace(streams=tuple(streams))
                    topic = se.TopicHead(0, db.head, db.floor)
                    _feed_session(ctx, i, k, se.Open(last_event_id=stream.cursor, topic=topic))
                    _feed_client(ctx, i, cl.StreamOpened())
                    out.append((f"replica {r} accepts client {i}'s stream", ctx.state(s)))
                if not any_up:
                    ctx = _Ctx(cfg, s)
                    _close_stream(ctx, i, k)
                    _feed_client(ctx, i, cl.StreamFailed(reason="connection refused"))
                    out.append((f"client {i}'s connection is refused", ctx.state(s)))
            elif stream.phase == OPEN:
                if stream.query is not None:
                    q = stream.query
                    rows = [seq for seq in _seqs(db.committed)
                            if seq > q.after and seq > db.floor and (q.upto is None or seq <= q.upto)]
                    if q.limit is not None:
                        rows = rows[: q.limit]
                    ctx = _Ctx(cfg, s)
                    streams = list(slot.streams)
                    streams[k] = stream._replace(query=None)
                    ctx.clients[i] = slot._replace(streams=tuple(streams))
                    _feed_session(ctx, i, k, se.ReplayRows(seqs=tuple(rows), floor=db.floor))
                    over = len(rows) - (cfg.replay_limit + 1)
                    shown = ",".join(map(str, rows)) or "none"
                    out.append((f"postgres: replay for client {i} returns rows [{shown}]",
                                ctx.state(s, overrun=max(s.overrun, over, 0))))
                    if faults_left:
                        ctx = _Ctx(cfg, s)
                        streams = list(slot.streams)
                        streams[k] = stream._replace(query=None)
                        ctx.clients[i] = slot._replace(streams=tuple(streams))
                        _feed_session(ctx, i, k, se.ReplayError(reason="statement timeout"))
                        out.append((fault_label("postgres.replay_fails", client=i),
                                    ctx.state(s, faults=s.faults + 1)))
                if stream.wire and k == len(slot.streams) - 1:
                    kind, seq = stream.wire[0]
                    ctx = _Ctx(cfg, s)
                    streams = list(slot.streams)
                    streams[k] = stream._replace(wire=stream.wire[1:])
                    ctx.clients[i] = slot._replace(streams=tuple(streams))
                    _mark_heard(ctx, i, k)
                    if kind == EVENT:
                        _feed_client(ctx, i, cl.EventReceived(event_id=EventId(0, seq)))
                        what = f"event {seq}"
                    elif kind == TRUNCATED:
                        _feed_client(ctx, i, cl.ReplayTruncated(head=EventId(0, seq)))
                        what = f"replay-truncated (head {seq})"
                    else:
                        _feed_client(ctx, i, cl.ReplayFailed())
                        what = "replay-failed"
                    out.append((f"client {i} receives {what}", ctx.state(s)))
                if faults_left:
                    ctx = _Ctx(cfg, s)
                    _close_stream(ctx, i, k)
                    _feed_client(ctx, i, cl.StreamClosed(reason="network"))
                    out.append((fault_label("network.drop", client=i),
                                ctx.state(s, faults=s.faults + 1)))
                    ctx = _Ctx(cfg, s)
                    streams = list(slot.streams)
                    streams[k] = stream._replace(phase=STALLED, sess=None, wire=(), query=None)
                    ctx.clients[i] = slot._replace(streams=tuple(streams))
                    out.append((fault_label("network.stall", client=i),
                                ctx.state(s, faults=s.faults + 1)))
        # Snapshot.
        if slot.rh is not None:
            head_first, value = slot.rh
            ctx = _Ctx(cfg, s)
            if head_first:
                applied, head = slot.applied | db.committed, value
            else:
                applied, head = slot.applied | value, db.head
            ctx.clients[i] = slot._replace(rh=None, applied=applied)
            _feed_client(ctx, i, cl.RehydrateDone(head=EventId(0, head)))
            out.append((f"client {i}: snapshot loaded (head {head})", ctx.state(s)))
        # Timers.
        if slot.hb == 0:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(hb=-1)
            _feed_client(ctx, i, cl.TimerFired(timer=cl.HEARTBEAT))
            out.append((f"client {i}: heartbeat check fires while {status.value}", ctx.state(s)))
        if slot.bo == 0:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(bo=-1)
            _feed_client(ctx, i, cl.TimerFired(timer=cl.BACKOFF))
            out.append((f"client {i}: backoff timer fires", ctx.state(s)))
        # Triggers.
        if status is cl.Status.WAITING or status is cl.Status.FAILED:
            for what, trigger in (("browser goes online", cl.Online()),
                                  ("page becomes visible", cl.Visible())):
                ctx = _Ctx(cfg, s)
                _feed_client(ctx, i, trigger)
                out.append((f"client {i}: {what}", ctx.state(s)))
        if status is cl.Status.FAILED:
            ctx = _Ctx(cfg, s)
            _feed_client(ctx, i, cl.Recover())
            out.append((f"client {i}: user presses Retry", ctx.state(s)))
        if faults_left:
            ctx = _Ctx(cfg, s)
            frozen = tuple(st._replace(phase=STALLED, sess=None, wire=(), query=None)
                           if st.phase == OPEN else st for st in slot.streams)
            ctx.clients[i] = slot._replace(asleep=True, streams=frozen)
            out.append((fault_label("clients.sleep", client=i), ctx.state(s, faults=s.faults + 1)))

    # Replica timers ----------------------------------------------------------
    for r, rep in enumerate(s.replicas):
        if rep.st == 0:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(st=-1)
            _feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL))
            out.append((f"replica {r}: sentinel timer fires", ctx.state(s)))
        if rep.sto == 0:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(sto=-1)
            _feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL_TIMEOUT))
            out.append((f"replica {r}: sentinel timeout fires", ctx.state(s)))

    tick = _tick(cfg, s)
    if tick is not None:
        out.append(("time passes", tick))
    return out


def _tick(cfg: WorldConfig, s: State) -> State | None:
    """One tick for every running timer, or None when a timer is due or nothing runs."""
    moved = False
    for slot in s.clients:
        if slot.asleep:
            continue
        if slot.hb == 0 or slot.bo == 0:
            return None
        if slot.bo > 0:
            moved = True
        if slot.hb > 0 and not _heartbeats_flow(slot):
            moved = True
        if _heartbeats_flow(slot) and not slot.streams[-1].heard:
            moved = True
    for rep in s.replicas:
        if rep.st == 0 or rep.sto == 0:
            return None
        if rep.st > 0 or rep.sto > 0 or 0 <= rep.dead_for <= cfg.detection_bound:
            moved = True
    if not moved:
        return None
    ctx = _Ctx(cfg, s)
    for i, slot in enumerate(s.clients):
        if slot.asleep:
            continue
        flows = _heartbeats_flow(slot)
        ctx.clients[i] = slot._replace(
            hb=slot.hb - 1 if slot.hb > 0 and not flows else slot.hb,
            bo=slot.bo - 1 if slot.bo > 0 else slot.bo,
        )
        if flows and not slot.streams[-1].heard:
            _mark_heard(ctx, i, len(slot.streams) - 1)
            _feed_client(ctx, i, cl.HeartbeatReceived())
    bound = cfg.detection_bound
    for r, rep in enumerate(ctx.replicas):
        ctx.replicas[r] = rep._replace(
            st=rep.st - 1 if rep.st > 0 else rep.st,
            sto=rep.sto - 1 if rep.sto > 0 else rep.sto,
            dead_for=min(rep.dead_for + 1, bound + 1) if rep.dead_for >= 0 else -1,
        )
    return ctx.state(s)


def _heartbeats_flow(slot: ClientSlot) -> bool:
    """Server heartbeats reach the client: its newest stream is open."""
    return (not slot.asleep and bool(slot.streams) and slot.streams[-1].phase == OPEN
            and slot.m.status is cl.Status.CONNECTED)


def enabled(world: World) -> Iterable[tuple[str, World]]:
    """Every transition enabled in ``world``, each with a label that reads as a sentence."""
    cfg = world.config
    for text, state in successors(cfg, world.state):
        yield text, World(cfg, state)


# ---------------------------------------------------------------- judging states


def client_facts(cfg: WorldConfig, s: State, i: int) -> StaleFacts:
    """What the world knows about client i for ``no-silent-stale``."""
    slot = s.clients[i]
    db = s.db
    missing = db.committed & ~slot.applied
    if not missing:
        return StaleFacts(cl.is_live(slot.m), 0, 0, False, False, False)
    flight = 0
    for phase, seq in s.pubs:
        if phase == 2:
            flight |= _bit(seq)
    signal = False
    stream_detector = False
    subscriber_detector = False
    fx = cfg.fixes
    for stream in slot.streams:
        if stream.phase == STALLED or slot.asleep:
            stream_detector = stream_detector or slot.hb >= 0
        if stream.phase != OPEN:
            continue
        for kind, seq in stream.wire:
            if kind == EVENT:
                flight |= _bit(seq)
            else:
                signal = True
        sess = stream.sess
        if sess is not None:
            for seq in sess.buffer:
                flight |= _bit(seq)
            if sess.head > sess.cursor and fx.resync_after_recovery:
                # a catch-up to the head it learnt of is owed after the running query
                for seq in _seqs(missing):
                    if sess.cursor < seq <= sess.head:
                        flight |= _bit(seq)
            if stream.query is not None:
                q = stream.query
                top = q.upto if q.upto is not None else db.head
                for seq in _seqs(missing):
                    if q.after < seq <= top:
                        flight |= _bit(seq)
        rep = s.replicas[stream.replica]
        for msg in rep.queue:
            if msg > 0:
                flight |= _bit(msg)
        if fx.subscriber_health:
            health = rep.sub.health
            if rep.link == DEAD and health is sb.Health.HEALTHY and rep.st >= 0:
                subscriber_detector = True
            if health is not sb.Health.HEALTHY and rep.sub.was_down and fx.resync_after_recovery:
                subscriber_detector = True
    n_missing = bin(missing).count("1")
    n_flight = bin(missing & flight).count("1")
    return StaleFacts(cl.is_live(slot.m), n_missing, n_flight, signal, stream_detector,
                      subscriber_detector)


def violations(world: World) -> list[str]:
    """Names of the safety invariants ``world`` violates."""
    return state_violations(world.config, world.state)


def state_violations(cfg: WorldConfig, s: State) -> list[str]:
    """Names of the safety invariants state ``s`` of ``cfg`` violates."""
    out: list[str] = []
    counter = failed = stale = single = False
    for i, slot in enumerate(s.clients):
        m = slot.m
        if m.attempts != slot.ghost or m.attempts > cfg.max_attempts:
            counter = True
        if slot.bad or (m.status is cl.Status.FAILED and m.last_event_id is not None):
            failed = True
        if len(slot.streams) > 1:
            single = True
        if not stale and cl.is_live(m) and not covered(client_facts(cfg, s, i)):
            stale = True
    if counter:
        out.append(BOUNDED_COUNTER)
    if failed:
        out.append(FAILED_ONLY_AFTER_MAX)
    if s.overrun > 0:
        out.append(BOUNDED_REPLAY)
    if stale:
        out.append(NO_SILENT_STALE)
    if any(rep.dead_for > cfg.detection_bound for rep in s.replicas):
        out.append(DETECTION_BOUND)
    if single:
        out.append(SINGLE_STREAM)
    return out


def converged(cfg: WorldConfig, s: State, i: int) -> bool:
    """Whether client i is live and has applied every committed event."""
    slot = s.clients[i]
    return cl.is_live(slot.m) and not (s.db.committed & ~slot.applied)


def undetected(cfg: WorldConfig, s: State, r: int) -> bool:
    """Whether replica r's subscriber link is dead while it still reports healthy."""
    rep = s.replicas[r]
    return rep.link == DEAD and (not cfg.fixes.subscriber_health
                                 or rep.sub.health is sb.Health.HEALTHY)


def flatten(cfg: WorldConfig, s: State) -> dict[str, str]:
    """A flat, readable view of a state, for printing what a step changed."""
    out: dict[str, str] = {}
    for i, slot in enumerate(s.clients):
        m = slot.m
        p = f"client {i}"
        out[f"{p}.status"] = m.status.value
        out[f"{p}.attempts"] = str(m.attempts)
        out[f"{p}.attempts_really_started"] = str(slot.ghost)
        out[f"{p}.last_event_id"] = str(m.last_event_id) if m.last_event_id else "none"
        out[f"{p}.rehydration"] = m.rehydration.value
        out[f"{p}.applied"] = "{" + ",".join(map(str, _seqs(slot.applied))) + "}"
        out[f"{p}.heartbeat_timer"] = "off" if slot.hb < 0 else str(slot.hb)
        out[f"{p}.backoff_timer"] = "off" if slot.bo < 0 else str(slot.bo)
        out[f"{p}.asleep"] = str(slot.asleep).lower()
        for k, st in enumerate(slot.streams):
            q = f"{p}.stream{k}"
            out[q] = (f"{_PHASE[st.phase]}" + (f" on replica {st.replica}" if st.replica >= 0 else "")
                      + f" from {st.cursor}")
            if st.sess is not None:
                out[f"{q}.session"] = f"{st.sess.phase.value} cursor {st.sess.cursor}"
            if st.wire:
                out[f"{q}.wire"] = ",".join(
                    (f"event {v}" if kd == EVENT else "replay-truncated" if kd == TRUNCATED
                     else "replay-failed") for kd, v in st.wire)
            if st.query is not None:
                out[f"{q}.query"] = (f"after {st.query.after} upto {st.query.upto} "
                                     f"limit {st.query.limit}")
    for r, rep in enumerate(s.replicas):
        p = f"replica {r}"
        out[f"{p}.subscriber"] = rep.sub.health.value
        out[f"{p}.link"] = _LINK[rep.link]
        out[f"{p}.redis_queue"] = ",".join(
            (f"event {x}" if x > 0 else f"sentinel {-x}") for x in rep.queue) or "empty"
        out[f"{p}.sentinel_timer"] = "off" if rep.st < 0 else str(rep.st)
        out[f"{p}.sentinel_timeout"] = "off" if rep.sto < 0 else str(rep.sto)
        out[f"{p}.down"] = str(rep.down).lower()
    out["postgres.committed"] = "{" + ",".join(map(str, _seqs(s.db.committed))) + "}"
    out["postgres.head"] = str(s.db.head)
    out["postgres.floor"] = str(s.db.floor)
    out["faults_spent"] = str(s.faults)
    return out


#: Transition kinds that are not faults (the order is not a schedule: a heal phase
#: uses ``sims.heal.HEAL_PRIORITY``, which this order would make loop).
PROGRESS_KINDS: tuple[str, ...] = (
    "wake", "timer", "snapshot", "receive", "replay", "accept", "refuse", "deliver",
    "reconnect", "replica-up", "publish", "trigger", "retry", "tick",
)

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("publisher ", "publish"),
    ("redis: delivers ", "deliver"),
    ("time passes", "tick"),
)

_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("laptop wakes", "wake"),
    ("s stream", "accept"),
    ("connection is refused", "refuse"),
    ("reconnects", "reconnect"),
    ("comes back up", "replica-up"),
    ("browser goes online", "trigger"),
    ("page becomes visible", "trigger"),
    ("user presses Retry", "retry"),
)


@functools.lru_cache(maxsize=4096)
def transition_kind(text: str) -> str:
    """The kind of a transition from its label: a fault name from model.faults, or a progress kind."""
    from model.faults import FAULTS

    for name, kind in FAULTS.items():
        head, _, _ = kind.sentence.partition("{")
        tail = kind.sentence.rpartition("}")[2]
        if text.startswith(head) and text.endswith(tail) and (head or tail):
            return name
    for prefix, kind_name in _PREFIXES:
        if text.startswith(prefix):
            return kind_name
    if " fires" in text:
        return "timer"
    if " receives " in text:
        return "receive"
    if ": snapshot loaded" in text:
        return "snapshot"
    if text.startswith("postgres: replay for client"):
        return "replay"
    for suffix, kind_name in _SUFFIXES:
        if text.endswith(suffix):
            return kind_name
    raise ValueError(f"unknown transition label {text!r}")
