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
and kind (:data:`ENABLERS`); each yields the transitions of its kind. Adding a
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

import dataclasses
import enum
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.backoff import BackoffPolicy
from model.backoff import Kind as BackoffKind
from model.core import Action, CancelTimer, EventId, Input, Log, StartTimer, dispatch, ignore
from model.faults import FAULTS
from model.fixes import Fixes
from model.witness import AttemptsWitness, observe

__all__ = [
    "ENABLERS",
    "PROGRESS_KINDS",
    "SENTENCES",
    "ClientSlot",
    "Db",
    "Fed",
    "DELIVERY_FLAGS",
    "FAILED_FLAGS",
    "Flag",
    "Frame",
    "Kind",
    "Link",
    "Machine",
    "PendingSnapshot",
    "Pub",
    "Replica",
    "State",
    "Stream",
    "StreamPhase",
    "Transition",
    "WorldConfig",
    "enabled",
    "flatten",
    "initial",
    "pubs_idle",
    "seqs",
]


class _Fast(enum.Enum):
    """Enum members are singletons: hash them by identity, in C (states hash often)."""

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class StreamPhase(_Fast):
    """Where a client's stream is on the network."""

    CONNECTING = "connecting"  #: sent, not yet accepted by a replica
    OPEN = "open"  #: a replica runs a session for it
    STALLED = "stalled"  #: silently dead: the server side is gone, the client hears nothing


class Link(_Fast):
    """A replica's Redis subscription link."""

    UP = "up"  #: messages flow
    DEAD = "dead"  #: silently dead: nothing arrives, nothing is reported
    DOWN = "down"  #: visibly down; the subscriber heard Reconnecting and will hear Ready


class Frame(_Fast):
    """What a session wrote on the wire, waiting to reach the client."""

    EVENT = "event"
    TRUNCATED = "replay-truncated"
    FAILED = "replay-failed"
    HEAD = "head"  #: the head announced to a stream opened without a cursor


class Pub(_Fast):
    """Where a publisher is with its current event."""

    IDLE = "idle"
    ID_TAKEN = "id taken"  #: took an id from the shared sequence, not committed yet
    COMMITTED = "committed"  #: committed, not yet published to Redis


class Flag(enum.IntFlag):
    """What an invariant forbids that only a step can show, recorded on the client then."""

    FAILED_EARLY = 1  #: reached failed before max_attempts real attempts
    LEFT_FAILED = 2  #: left failed without recover() or a trigger
    STREAMED_BEFORE_SNAPSHOT = 4  #: recover() opened a stream before its snapshot loaded
    STREAM_OUT_OF_ORDER = 8  #: an event id sent on a stream not above the last one sent on it
    CURSOR_BACKWARDS = 16  #: the client's cursor moved back within an epoch
    APPLIED_TWICE = 32  #: an event handed to the application again


#: The flags ``failed-only-after-max`` judges; the others are ``ordered-delivery``'s.
FAILED_FLAGS = Flag.FAILED_EARLY | Flag.LEFT_FAILED | Flag.STREAMED_BEFORE_SNAPSHOT
DELIVERY_FLAGS = Flag.STREAM_OUT_OF_ORDER | Flag.CURSOR_BACKWARDS | Flag.APPLIED_TWICE


class Machine(_Fast):
    """Which machine (or stream book) a transition fed."""

    CLIENT = "client"
    SESSION = "session"
    SUBSCRIBER = "subscriber"
    STREAM_ADDED = "add"  #: the client opened a stream (a new session slot)
    STREAM_REMOVED = "del"  #: a stream went away


class Kind(_Fast):
    """The kind of a world transition: progress, or a fault of ``model.faults``."""

    WAKE = "wake"
    TIMER = "timer"
    SNAPSHOT = "snapshot"
    RECEIVE = "receive"
    REPLAY = "replay"
    ACCEPT = "accept"
    REFUSE = "refuse"
    DELIVER = "deliver"
    RECONNECT = "reconnect"
    REPLICA_UP = "replica-up"
    PUBLISH = "publish"
    TRIGGER = "trigger"
    RETRY = "retry"
    TICK = "tick"
    PROBE = "probe"
    NETWORK_DROP = "network.drop"
    NETWORK_STALL = "network.stall"
    CLIENTS_SLEEP = "clients.sleep"
    REDIS_SUBSCRIBER_DIES = "redis.subscriber_dies"
    REDIS_DISCONNECT = "redis.disconnect"
    REDIS_PUBLISH_LOST = "redis.publish_lost"
    POSTGRES_REPLAY_FAILS = "postgres.replay_fails"
    POSTGRES_SNAPSHOT_FAILS = "postgres.snapshot_fails"
    POSTGRES_PRUNE = "postgres.prune"
    REPLICAS_DOWN = "replicas.down"

    @property
    def fault(self) -> bool:
        """Whether this kind is a fault (spends the fault budget)."""
        return self.value in FAULTS


#: Transition kinds that are not faults (a set: the heal phase has its own order,
#: ``sims.heal.HEAL_PRIORITY``).
PROGRESS_KINDS: frozenset[Kind] = frozenset(k for k in Kind if not k.fault)


class Fed(NamedTuple):
    """One thing a transition fed: a machine input, or a stream added or removed."""

    machine: Machine
    actor: int  #: client index (client, session, streams) or replica index (subscriber)
    stream: int  #: the stream's index for a session or a removed stream, else -1
    input: Input | None
    before: str  #: the machine's status, phase or health before the input ("" for streams)


Arg = int | str | tuple[int, ...]


class Transition(NamedTuple):
    """One enabled step of the world: what happens, to whom, what it fed, where it leads."""

    kind: Kind
    actor: int  #: the client, replica or publisher it happens to (-1: the whole world)
    variant: str  #: which sentence of the kind ("" when it has one)
    args: tuple[Arg, ...]  #: values its sentence shows (event seq, rows, status, ...)
    feeds: tuple[Fed, ...]
    state: State

    @property
    def key(self) -> tuple[Kind, int, str, tuple[Arg, ...]]:
        """What identifies the transition among those enabled in one state (not the state)."""
        return (self.kind, self.actor, self.variant, self.args)

    @property
    def sentence(self) -> str:
        """The transition as a sentence, rendered from :data:`SENTENCES`."""
        return render(self.kind, self.actor, self.variant, self.args)

    def __str__(self) -> str:
        return self.sentence


#: (kind, variant) -> sentence; ``{actor}`` and ``{0}``, ``{1}`` are filled in. Fault
#: kinds take their sentence from ``model.faults`` (``{client}``/``{replica}``/``{seq}``).
SENTENCES: dict[tuple[Kind, str], str] = {
    (Kind.PUBLISH, "take-id"): "publisher {actor} takes id {0} from the shared sequence",
    (Kind.PUBLISH, "commit"): "publisher {actor} commits event {0}",
    (Kind.PUBLISH, "publish"): "publisher {actor} publishes event {0} to redis",
    (Kind.DELIVER, "event"): "redis: delivers event {0} to replica {actor}",
    (Kind.DELIVER, "sentinel"): "redis: delivers sentinel {0} to replica {actor}",
    (Kind.RECONNECT, ""): "redis: subscriber of replica {actor} reconnects",
    (Kind.REPLICA_UP, ""): "replica {actor} comes back up",
    (Kind.WAKE, ""): "client {actor}: laptop wakes",
    (Kind.ACCEPT, ""): "replica {0} accepts client {actor}'s stream",
    (Kind.REFUSE, ""): "client {actor}'s connection is refused",
    (Kind.REPLAY, ""): "postgres: replay for client {actor} returns rows [{0}]",
    (Kind.RECEIVE, "event"): "client {actor} receives event {0}",
    (Kind.RECEIVE, "truncated"): "client {actor} receives replay-truncated (head {0})",
    (Kind.RECEIVE, "failed"): "client {actor} receives replay-failed",
    (Kind.RECEIVE, "head"): "client {actor} receives the head announcement ({0})",
    (Kind.PROBE, ""): "replica {actor} probes the topic head ({0})",
    (Kind.SNAPSHOT, ""): "client {actor}: snapshot loaded (head {0})",
    (Kind.TIMER, "heartbeat"): "client {actor}: heartbeat check fires while {0}",
    (Kind.TIMER, "backoff"): "client {actor}: backoff timer fires",
    (Kind.TIMER, "sentinel"): "replica {actor}: sentinel timer fires",
    (Kind.TIMER, "sentinel-timeout"): "replica {actor}: sentinel timeout fires",
    (Kind.TRIGGER, "online"): "client {actor}: browser goes online",
    (Kind.TRIGGER, "visible"): "client {actor}: page becomes visible",
    (Kind.RETRY, ""): "client {actor}: user presses Retry",
    (Kind.TICK, ""): "time passes",
}


def _shown(arg: Arg) -> str:
    if isinstance(arg, tuple):
        return ",".join(map(str, arg)) or "none"
    return str(arg)


def render(kind: Kind, actor: int, variant: str, args: tuple[Arg, ...]) -> str:
    """The sentence of a transition (see :data:`SENTENCES`)."""
    if kind.fault:
        seq = args[0] if args else ""
        return FAULTS[kind.value].sentence.format(client=actor, replica=actor, seq=seq)
    return SENTENCES[(kind, variant)].format(*map(_shown, args), actor=actor)


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
    probe_interval: int = 0  #: ticks between head probes; 0: the sentinel interval
    start_cursor: int | None = None  #: the clients' first cursor (None: a fresh browser)
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        for name in ("clients", "replicas", "publishers", "max_attempts", "replay_limit",
                     "heartbeat_timeout", "heartbeat_check_interval", "sentinel_interval",
                     "sentinel_timeout", "backoff_cap"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("events", "faults", "backoff_base", "probe_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"WorldConfig.{name} must be at least 0, got {getattr(self, name)}")
        if self.events > 60:
            raise ValueError("WorldConfig.events is at most 60 (events are bits of an int)")
        if self.start_cursor is not None and self.start_cursor != 0:
            raise ValueError("WorldConfig.start_cursor is None (no cursor) or 0 (the empty topic)")

    @property
    def probe_period(self) -> int:
        """Ticks between head probes."""
        return self.probe_interval or self.sentinel_interval

    @property
    def client(self) -> cl.ClientConfig:
        """The client machine's config."""
        return cl.ClientConfig(
            heartbeat_timeout=self.heartbeat_timeout,
            heartbeat_check_interval=self.heartbeat_check_interval,
            max_attempts=self.max_attempts,
            policy=BackoffPolicy(kind=BackoffKind.EXPONENTIAL, base=self.backoff_base,
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
    phase: StreamPhase
    cursor: EventId | None  #: the Last-Event-ID it was opened with
    session: se.SessionState | None  #: the replica's session while open
    wire: tuple[tuple[Frame, int], ...]  #: frames sent, not yet received: (frame, seq)
    query: se.QueryReplay | None  #: the replay query running for it
    heard: bool  #: a message reached the client on this stream
    last_sent: int  #: the last event seq (or announced head) the session wrote on it


class PendingSnapshot(NamedTuple):
    """A snapshot load under way: what it read first."""

    head_first: bool  #: the head was read before the snapshot (head-before-snapshot)
    value: int  #: the head read (head_first) or the committed mask read (snapshot first)


class ClientSlot(NamedTuple):
    """A client and everything the world knows about it."""

    machine: cl.ClientState
    heartbeat_left: int  #: heartbeat timer: ticks left, -1 when not armed
    backoff_left: int  #: backoff timer: ticks left, -1 when not armed
    streams: tuple[Stream, ...]
    applied: int  #: bit seq-1 set when event seq is applied
    snapshot: PendingSnapshot | None
    asleep: bool
    attempts_started: int  #: attempts really started since the last stable connection
    recovering: bool  #: recover() ran and its snapshot is not done yet
    page_loaded: bool  #: the page's initial load is done (its first stream opened)
    flags: Flag  #: breaches only a step can show (see Flag), seen so far


class Replica(NamedTuple):
    """A replica: its subscriber, its Redis link and its own state."""

    subscriber: sb.SubscriberState
    sentinel_left: int  #: sentinel timer: ticks left, -1 when not armed
    sentinel_timeout_left: int  #: sentinel-timeout timer: ticks left, -1 when not armed
    link: Link
    queue: tuple[int, ...]  #: Redis messages on the way: seq > 0, or -token for a sentinel
    down: bool  #: refusing connections
    dead_for: int  #: ticks since its link died silently, undetected; -1 otherwise
    probe_left: int  #: head-probe timer: ticks left, -1 when not armed (head-probe off)


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
    pubs: tuple[tuple[Pub, int], ...]  #: per publisher: (where it is, its event's seq)
    published: int  #: publishes begun
    faults: int  #: faults spent
    overrun: int  #: most rows any replay read beyond limit + 1 (0: none)


NO_FLAGS = Flag(0)


def initial(config: WorldConfig) -> State:
    """The start: every client connecting (without a cursor by default), subscribers healthy."""
    start = None if config.start_cursor is None else EventId(0, config.start_cursor)
    slot = ClientSlot(cl.initial(start), -1, -1, (), 0, None, False, 0, False, start is not None,
                      NO_FLAGS)
    probe = config.probe_period if config.fixes.head_probe else -1
    replica = Replica(sb.initial(), -1, -1, Link.UP, (), False, -1, probe)
    s = State(clients=(slot,), replicas=(replica,), db=Db(0, 0, 0, 0),
              pubs=((Pub.IDLE, 0),) * config.publishers, published=0, faults=0, overrun=0)
    ctx = _Ctx(config, s)
    _feed_client(ctx, 0, cl.Start())
    _feed_subscriber(ctx, 0, sb.Ready())
    s = ctx.state(s)
    return s._replace(clients=s.clients * config.clients, replicas=s.replicas * config.replicas)


def pubs_idle(s: State) -> bool:
    """Whether no publisher holds an event it has not published yet."""
    return all(phase is Pub.IDLE for phase, _ in s.pubs)


def seqs(mask: int) -> Iterator[int]:
    """The seqs whose bits are set in ``mask``, ascending."""
    seq = 1
    while mask:
        if mask & 1:
            yield seq
        mask >>= 1
        seq += 1


def _ticks(at: float) -> int:
    return max(0, math.ceil(at))


def _bit(seq: int) -> int:
    return 1 << (seq - 1)


# ---------------------------------------------------------------- carrying out actions


class _Ctx:
    """Mutable scratch for one transition: lists replaced into a new State at the end."""

    __slots__ = ("ccfg", "cfg", "clients", "db", "feeds", "replicas", "scfg", "subcfg")

    def __init__(self, cfg: WorldConfig, s: State) -> None:
        self.cfg = cfg
        self.ccfg, self.scfg, self.subcfg = _configs(cfg)
        self.clients = list(s.clients)
        self.replicas = list(s.replicas)
        self.db = s.db
        self.feeds: list[Fed] = []

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


def _set_stream(ctx: _Ctx, i: int, k: int, stream: Stream) -> None:
    slot = ctx.clients[i]
    streams = list(slot.streams)
    streams[k] = stream
    ctx.clients[i] = slot._replace(streams=tuple(streams))


def _feed_client(ctx: _Ctx, i: int, event: cl.ClientInput) -> None:
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
    if was is not None and now is not None and now.epoch == was.epoch and now.seq < was.seq:
        flags |= Flag.CURSOR_BACKWARDS
    top = was.seq if was is not None else -1
    for act in acts:
        if act.__class__ is cl.Deliver:
            assert isinstance(act, cl.Deliver)
            if act.event_id.seq <= top:
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


def _client_start_timer(ctx: _Ctx, i: int, act: StartTimer) -> None:
    slot = ctx.clients[i]
    if act.timer == cl.HEARTBEAT:
        ctx.clients[i] = slot._replace(heartbeat_left=_ticks(act.at))
    else:
        ctx.clients[i] = slot._replace(backoff_left=_ticks(act.at))


def _client_cancel_timer(ctx: _Ctx, i: int, act: CancelTimer) -> None:
    slot = ctx.clients[i]
    if act.timer == cl.HEARTBEAT:
        ctx.clients[i] = slot._replace(heartbeat_left=-1)
    else:
        ctx.clients[i] = slot._replace(backoff_left=-1)


def _client_open_stream(ctx: _Ctx, i: int, act: cl.OpenStream) -> None:
    slot = ctx.clients[i]
    flags = slot.flags | (Flag.STREAMED_BEFORE_SNAPSHOT if slot.recovering else NO_FLAGS)
    stream = Stream(-1, StreamPhase.CONNECTING, act.last_event_id, None, (), None, False, 0)
    ctx.feeds.append(Fed(Machine.STREAM_ADDED, i, len(slot.streams), None, ""))
    ctx.clients[i] = slot._replace(streams=(*slot.streams, stream), flags=flags)


def _client_close_stream(ctx: _Ctx, i: int, act: cl.CloseStream) -> None:
    slot = ctx.clients[i]
    ctx.feeds.append(Fed(Machine.STREAM_REMOVED, i, len(slot.streams) - 1, None, ""))
    ctx.clients[i] = slot._replace(streams=slot.streams[:-1])


def _client_deliver(ctx: _Ctx, i: int, act: cl.Deliver) -> None:
    slot = ctx.clients[i]
    ctx.clients[i] = slot._replace(applied=slot.applied | _bit(act.event_id.seq))


def _client_rehydrate(ctx: _Ctx, i: int, act: cl.StartRehydrate) -> None:
    db = ctx.db
    pending = (PendingSnapshot(True, db.head) if act.head_first
               else PendingSnapshot(False, db.committed))
    ctx.clients[i] = ctx.clients[i]._replace(snapshot=pending)


def _client_status(ctx: _Ctx, i: int, act: cl.StatusChanged) -> None:
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


def _feed_session(ctx: _Ctx, i: int, k: int, event: se.SessionInput) -> None:
    """Step the session of client i's stream k and carry out its actions."""
    stream = ctx.clients[i].streams[k]
    assert stream.session is not None
    ctx.feeds.append(Fed(Machine.SESSION, i, k, event, stream.session.phase.value))
    session, acts = se.step(ctx.scfg, stream.session, event)
    _set_stream(ctx, i, k, stream._replace(session=session))
    dispatch(_SESSION_ACTIONS, acts, ctx, i, k, shell="the world (session)")


def _wire(ctx: _Ctx, i: int, k: int, frame: Frame, seq: int) -> None:
    stream = ctx.clients[i].streams[k]
    stream = stream._replace(wire=(*stream.wire, (frame, seq)))
    if frame is Frame.EVENT or frame is Frame.HEAD:
        if frame is Frame.EVENT and seq <= stream.last_sent:
            slot = ctx.clients[i]
            ctx.clients[i] = slot._replace(flags=slot.flags | Flag.STREAM_OUT_OF_ORDER)
        stream = stream._replace(last_sent=max(seq, stream.last_sent))
    _set_stream(ctx, i, k, stream)


def _session_query(ctx: _Ctx, i: int, k: int, act: se.QueryReplay) -> None:
    _set_stream(ctx, i, k, ctx.clients[i].streams[k]._replace(query=act))


#: How the world carries out each session action; heartbeats are implicit in the world.
_SESSION_ACTIONS: dict[type[Action], Callable[..., object]] = {
    se.Send: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.EVENT, act.event_id.seq),
    se.SendTruncated: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.TRUNCATED, act.head.seq),
    se.SendFailed: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.FAILED, 0),
    se.AnnounceHead: lambda ctx, i, k, act: _wire(ctx, i, k, Frame.HEAD, act.head.seq),
    se.QueryReplay: _session_query,
    StartTimer: ignore,
    CancelTimer: ignore,
    se.SendHeartbeat: ignore,
    Log: ignore,
}


def _feed_subscriber(ctx: _Ctx, r: int, event: sb.SubscriberInput) -> None:
    """Step replica r's subscriber and carry out its actions."""
    rep = ctx.replicas[r]
    ctx.feeds.append(Fed(Machine.SUBSCRIBER, r, -1, event, rep.subscriber.health.value))
    sub, acts = sb.step(ctx.subcfg, rep.subscriber, event)
    ctx.replicas[r] = rep._replace(subscriber=sub)
    dispatch(_SUBSCRIBER_ACTIONS, acts, ctx, r, shell="the world (subscriber)")


def _sub_start_timer(ctx: _Ctx, r: int, act: StartTimer) -> None:
    rep = ctx.replicas[r]
    if act.timer == sb.SENTINEL:
        ctx.replicas[r] = rep._replace(sentinel_left=_ticks(act.at))
    else:
        ctx.replicas[r] = rep._replace(sentinel_timeout_left=_ticks(act.at))


def _sub_cancel_timer(ctx: _Ctx, r: int, act: CancelTimer) -> None:
    rep = ctx.replicas[r]
    if act.timer == sb.SENTINEL:
        ctx.replicas[r] = rep._replace(sentinel_left=-1)
    else:
        ctx.replicas[r] = rep._replace(sentinel_timeout_left=-1)


def _sub_publish_sentinel(ctx: _Ctx, r: int, act: sb.PublishSentinel) -> None:
    rep = ctx.replicas[r]
    if rep.link is Link.UP:
        ctx.replicas[r] = rep._replace(queue=(*rep.queue, -act.token))


def _sub_resubscribe(ctx: _Ctx, r: int, act: sb.Resubscribe) -> None:
    ctx.replicas[r] = ctx.replicas[r]._replace(link=Link.DOWN, queue=())


def _sub_health(ctx: _Ctx, r: int, act: sb.HealthChanged) -> None:
    if act.health is not sb.Health.HEALTHY:
        ctx.replicas[r] = ctx.replicas[r]._replace(dead_for=-1)


def _sub_resync(ctx: _Ctx, r: int, act: sb.ResyncStreams) -> None:
    topic = se.TopicHead(0, ctx.db.head, ctx.db.floor)
    for i, slot in enumerate(ctx.clients):
        for k, stream in enumerate(slot.streams):
            if stream.replica == r and stream.phase is StreamPhase.OPEN and stream.session is not None:
                _feed_session(ctx, i, k, se.Resync(topic=topic))


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


def _close_stream(ctx: _Ctx, i: int, k: int) -> None:
    slot = ctx.clients[i]
    ctx.feeds.append(Fed(Machine.STREAM_REMOVED, i, k, None, ""))
    streams = list(slot.streams)
    del streams[k]
    ctx.clients[i] = slot._replace(streams=tuple(streams))


# ---------------------------------------------------------------- enablers

Enabler = Callable[[WorldConfig, State], Iterator[Transition]]


def _t(kind: Kind, actor: int, state: State, *args: Arg, variant: str = "",
       ctx: _Ctx | None = None) -> Transition:
    return Transition(kind, actor, variant, args, tuple(ctx.feeds) if ctx else (), state)


def _publishers(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Publishers take ids, commit and publish to Redis."""
    db = s.db
    for p, (phase, seq) in enumerate(s.pubs):
        pubs = list(s.pubs)
        if phase is Pub.IDLE and s.published < cfg.events:
            if cfg.fixes.topic_sequence:
                new = db.head + 1
                pubs[p] = (Pub.COMMITTED, new)
                ndb = db._replace(committed=db.committed | _bit(new), head=new, next_id=new)
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
            ndb = db._replace(committed=db.committed | _bit(seq), head=max(db.head, seq))
            yield _t(Kind.PUBLISH, p, s._replace(db=ndb, pubs=tuple(pubs)), seq, variant="commit")
        elif phase is Pub.COMMITTED:
            pubs[p] = (Pub.IDLE, 0)
            queued = tuple(rep._replace(queue=(*rep.queue, seq)) if rep.link is Link.UP else rep
                           for rep in s.replicas)
            yield _t(Kind.PUBLISH, p, s._replace(pubs=tuple(pubs), replicas=queued), seq,
                     variant="publish")


def _publish_lost(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a committed event's publish to Redis is lost (or the process dies before it)."""
    for p, (phase, _) in enumerate(s.pubs):
        if phase is Pub.COMMITTED:
            pubs = list(s.pubs)
            pubs[p] = (Pub.IDLE, 0)
            yield _t(Kind.REDIS_PUBLISH_LOST, p, s._replace(pubs=tuple(pubs), faults=s.faults + 1))


def _redis_delivers(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Redis hands the next message of a link to its replica."""
    for r, rep in enumerate(s.replicas):
        if not rep.queue:
            continue
        msg = rep.queue[0]
        ctx = _Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(queue=rep.queue[1:])
        if msg > 0:
            for i, slot in enumerate(s.clients):
                for k, stream in enumerate(slot.streams):
                    if (stream.replica == r and stream.phase is StreamPhase.OPEN
                            and stream.session is not None):
                        _feed_session(ctx, i, k, se.LiveEvent(seq=msg))
            yield _t(Kind.DELIVER, r, ctx.state(s), msg, variant="event", ctx=ctx)
        else:
            _feed_subscriber(ctx, r, sb.SentinelReceived(token=-msg))
            yield _t(Kind.DELIVER, r, ctx.state(s), -msg, variant="sentinel", ctx=ctx)


def _links_reconnect(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A visibly down subscriber link comes back."""
    for r, rep in enumerate(s.replicas):
        if rep.link is Link.DOWN:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(link=Link.UP)
            if rep.subscriber.health is sb.Health.UNHEALTHY:
                # it resubscribed after a missed sentinel: redis-py reports the new
                # connection's attempt (Reconnecting) before it is ready, as the service sees
                _feed_subscriber(ctx, r, sb.Reconnecting(reason="resubscribing"))
            _feed_subscriber(ctx, r, sb.Ready())
            yield _t(Kind.RECONNECT, r, ctx.state(s), ctx=ctx)


def _replicas_come_up(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A replica that went down accepts connections again."""
    for r, rep in enumerate(s.replicas):
        if rep.down:
            reps = list(s.replicas)
            reps[r] = rep._replace(down=False)
            yield _t(Kind.REPLICA_UP, r, s._replace(replicas=tuple(reps)))


def _subscriber_dies(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a subscriber link dies silently."""
    for r, rep in enumerate(s.replicas):
        if rep.link is Link.UP:
            reps = list(s.replicas)
            reps[r] = rep._replace(link=Link.DEAD, queue=(), dead_for=0)
            yield _t(Kind.REDIS_SUBSCRIBER_DIES, r,
                     s._replace(replicas=tuple(reps), faults=s.faults + 1))


def _subscriber_disconnects(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a subscriber link drops visibly."""
    for r, rep in enumerate(s.replicas):
        if rep.link is Link.UP:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(link=Link.DOWN, queue=())
            _feed_subscriber(ctx, r, sb.Reconnecting(reason="connection reset"))
            yield _t(Kind.REDIS_DISCONNECT, r, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _replica_goes_down(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a replica goes down, closing its open streams."""
    for r, rep in enumerate(s.replicas):
        if rep.down:
            continue
        ctx = _Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(down=True)
        for i, slot in enumerate(s.clients):
            for k in reversed(range(len(slot.streams))):
                stream = slot.streams[k]
                if stream.replica == r and stream.phase is StreamPhase.OPEN:
                    _close_stream(ctx, i, k)
                    _feed_client(ctx, i, cl.StreamClosed(reason="replica down"))
        yield _t(Kind.REPLICAS_DOWN, r, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _retention_prunes(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: retention removes the oldest kept event."""
    db = s.db
    if db.floor < db.head:
        yield _t(Kind.POSTGRES_PRUNE, -1,
                 s._replace(db=db._replace(floor=db.floor + 1), faults=s.faults + 1), db.floor + 1)


def _awake(s: State) -> Iterator[tuple[int, ClientSlot]]:
    for i, slot in enumerate(s.clients):
        if not slot.asleep:
            yield i, slot


def _laptops_wake(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A sleeping laptop wakes: every armed timer is due at once."""
    for i, slot in enumerate(s.clients):
        if slot.asleep:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(asleep=False,
                                           heartbeat_left=0 if slot.heartbeat_left >= 0 else -1,
                                           backoff_left=0 if slot.backoff_left >= 0 else -1)
            yield _t(Kind.WAKE, i, ctx.state(s), ctx=ctx)


def _accepts(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A replica that is up accepts a connecting stream (or, none up, it is refused)."""
    db = s.db
    any_up = any(not rep.down for rep in s.replicas)
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            if stream.phase is not StreamPhase.CONNECTING:
                continue
            for r, rep in enumerate(s.replicas):
                if rep.down:
                    continue
                ctx = _Ctx(cfg, s)
                if not slot.page_loaded:  # the page's load: the state as of this head
                    ctx.clients[i] = slot._replace(page_loaded=True,
                                                   applied=slot.applied | db.committed)
                _set_stream(ctx, i, k, stream._replace(replica=r, phase=StreamPhase.OPEN,
                                                       session=se.initial()))
                topic = se.TopicHead(0, db.head, db.floor)
                _feed_session(ctx, i, k, se.Open(last_event_id=stream.cursor, topic=topic))
                _feed_client(ctx, i, cl.StreamOpened())
                yield _t(Kind.ACCEPT, i, ctx.state(s), r, ctx=ctx)
            if not any_up:
                ctx = _Ctx(cfg, s)
                _close_stream(ctx, i, k)
                _feed_client(ctx, i, cl.StreamFailed(reason="connection refused"))
                yield _t(Kind.REFUSE, i, ctx.state(s), ctx=ctx)


def _replays(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Postgres answers a running replay query with its rows."""
    db = s.db
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            q = stream.query
            if stream.phase is not StreamPhase.OPEN or q is None:
                continue
            rows = tuple(seq for seq in seqs(db.committed)
                         if seq > q.after and seq > db.floor and (q.upto is None or seq <= q.upto))
            if q.limit is not None:
                rows = rows[: q.limit]
            ctx = _Ctx(cfg, s)
            _set_stream(ctx, i, k, stream._replace(query=None))
            _feed_session(ctx, i, k, se.ReplayRows(seqs=rows, floor=db.floor))
            over = len(rows) - (cfg.replay_limit + 1)
            yield _t(Kind.REPLAY, i, ctx.state(s, overrun=max(s.overrun, over, 0)), rows, ctx=ctx)


def _replay_fails(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a running replay query fails."""
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            if stream.phase is not StreamPhase.OPEN or stream.query is None:
                continue
            ctx = _Ctx(cfg, s)
            _set_stream(ctx, i, k, stream._replace(query=None))
            _feed_session(ctx, i, k, se.ReplayError(reason="statement timeout"))
            yield _t(Kind.POSTGRES_REPLAY_FAILS, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


_RECEIVE: dict[Frame, tuple[str, Callable[[int], cl.ClientInput]]] = {
    Frame.EVENT: ("event", lambda seq: cl.EventReceived(event_id=EventId(0, seq))),
    Frame.TRUNCATED: ("truncated", lambda seq: cl.ReplayTruncated(head=EventId(0, seq))),
    Frame.FAILED: ("failed", lambda seq: cl.ReplayFailed()),
    Frame.HEAD: ("head", lambda seq: cl.HeadAnnounced(head=EventId(0, seq))),
}


def _receives(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """The client reads the next frame of its current stream."""
    for i, slot in _awake(s):
        if not slot.streams:
            continue
        k = len(slot.streams) - 1
        stream = slot.streams[k]
        if stream.phase is not StreamPhase.OPEN or not stream.wire:
            continue
        frame, seq = stream.wire[0]
        ctx = _Ctx(cfg, s)
        _set_stream(ctx, i, k, stream._replace(wire=stream.wire[1:]))
        variant, make = _RECEIVE[frame]
        _feed_client(ctx, i, make(seq))
        yield _t(Kind.RECEIVE, i, ctx.state(s), *((seq,) if frame is not Frame.FAILED else ()),
                 variant=variant, ctx=ctx)


def _streams_drop(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: an open stream closes; both ends see it."""
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            if stream.phase is StreamPhase.OPEN:
                ctx = _Ctx(cfg, s)
                _close_stream(ctx, i, k)
                _feed_client(ctx, i, cl.StreamClosed(reason="network"))
                yield _t(Kind.NETWORK_DROP, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _streams_stall(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: an open stream goes silent without closing."""
    for i, slot in _awake(s):
        for k, stream in enumerate(slot.streams):
            if stream.phase is StreamPhase.OPEN:
                ctx = _Ctx(cfg, s)
                _set_stream(ctx, i, k, _stalled(stream))
                yield _t(Kind.NETWORK_STALL, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _stalled(stream: Stream) -> Stream:
    return stream._replace(phase=StreamPhase.STALLED, session=None, wire=(), query=None)


def _snapshots_load(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A pending snapshot finishes loading."""
    db = s.db
    for i, slot in _awake(s):
        if slot.snapshot is None:
            continue
        head_first, value = slot.snapshot
        if head_first:
            applied, head = slot.applied | db.committed, value
        else:
            applied, head = slot.applied | value, db.head
        ctx = _Ctx(cfg, s)
        ctx.clients[i] = slot._replace(snapshot=None, applied=applied)
        _feed_client(ctx, i, cl.RehydrateDone(head=EventId(0, head)))
        yield _t(Kind.SNAPSHOT, i, ctx.state(s), head, ctx=ctx)


def _snapshot_fails(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a pending snapshot load fails."""
    for i, slot in _awake(s):
        if slot.snapshot is None:
            continue
        ctx = _Ctx(cfg, s)
        ctx.clients[i] = slot._replace(snapshot=None)
        _feed_client(ctx, i, cl.RehydrateFailed(reason="statement timeout"))
        yield _t(Kind.POSTGRES_SNAPSHOT_FAILS, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _client_timers(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A due heartbeat or backoff timer fires."""
    for i, slot in _awake(s):
        if slot.heartbeat_left == 0:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(heartbeat_left=-1)
            _feed_client(ctx, i, cl.TimerFired(timer=cl.HEARTBEAT))
            yield _t(Kind.TIMER, i, ctx.state(s), slot.machine.status.value, variant="heartbeat",
                     ctx=ctx)
        if slot.backoff_left == 0:
            ctx = _Ctx(cfg, s)
            ctx.clients[i] = slot._replace(backoff_left=-1)
            _feed_client(ctx, i, cl.TimerFired(timer=cl.BACKOFF))
            yield _t(Kind.TIMER, i, ctx.state(s), variant="backoff", ctx=ctx)


def _triggers(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """The browser goes online or the page becomes visible (waiting or failed clients)."""
    for i, slot in _awake(s):
        if slot.machine.status is cl.Status.WAITING or slot.machine.status is cl.Status.FAILED:
            for variant, trigger in (("online", cl.Online()), ("visible", cl.Visible())):
                ctx = _Ctx(cfg, s)
                _feed_client(ctx, i, trigger)
                yield _t(Kind.TRIGGER, i, ctx.state(s), variant=variant, ctx=ctx)


def _retries(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """The user presses Retry on a failed client (recover())."""
    for i, slot in _awake(s):
        if slot.machine.status is cl.Status.FAILED:
            ctx = _Ctx(cfg, s)
            _feed_client(ctx, i, cl.Recover())
            yield _t(Kind.RETRY, i, ctx.state(s), ctx=ctx)


def _laptops_sleep(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """Fault: a laptop lid closes; open streams go silent, timers stand still."""
    for i, slot in _awake(s):
        ctx = _Ctx(cfg, s)
        frozen = tuple(_stalled(st) if st.phase is StreamPhase.OPEN else st for st in slot.streams)
        ctx.clients[i] = slot._replace(asleep=True, streams=frozen)
        yield _t(Kind.CLIENTS_SLEEP, i, ctx.state(s, faults=s.faults + 1), ctx=ctx)


def _sentinel_timers(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A replica's due sentinel or sentinel-timeout timer fires."""
    for r, rep in enumerate(s.replicas):
        if rep.sentinel_left == 0:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(sentinel_left=-1)
            _feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL))
            yield _t(Kind.TIMER, r, ctx.state(s), variant="sentinel", ctx=ctx)
        if rep.sentinel_timeout_left == 0:
            ctx = _Ctx(cfg, s)
            ctx.replicas[r] = rep._replace(sentinel_timeout_left=-1)
            _feed_subscriber(ctx, r, sb.TimerFired(timer=sb.SENTINEL_TIMEOUT))
            yield _t(Kind.TIMER, r, ctx.state(s), variant="sentinel-timeout", ctx=ctx)


def _probes(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """A replica's head probe is due: read the head, feed it to the replica's open sessions."""
    for r, rep in enumerate(s.replicas):
        if rep.probe_left != 0:
            continue
        ctx = _Ctx(cfg, s)
        ctx.replicas[r] = rep._replace(probe_left=cfg.probe_period)
        topic = se.TopicHead(0, s.db.head, s.db.floor)
        for i, slot in enumerate(s.clients):
            for k, stream in enumerate(slot.streams):
                if (stream.replica == r and stream.phase is StreamPhase.OPEN
                        and stream.session is not None):
                    _feed_session(ctx, i, k, se.HeadProbed(topic=topic))
        yield _t(Kind.PROBE, r, ctx.state(s), s.db.head, ctx=ctx)


def _time_passes(cfg: WorldConfig, s: State) -> Iterator[Transition]:
    """One tick for every running timer, unless a timer is due or nothing runs."""
    moved = False
    for slot in s.clients:
        if slot.asleep:
            continue
        if slot.heartbeat_left == 0 or slot.backoff_left == 0:
            return
        flows = _heartbeats_flow(slot)
        if slot.backoff_left > 0 or (slot.heartbeat_left > 0 and not flows) or (
                flows and _first_heartbeat_due(slot)):
            moved = True
    for rep in s.replicas:
        if (rep.sentinel_left == 0 or rep.sentinel_timeout_left == 0 or rep.probe_left == 0
                or rep.queue):
            return  # due timers fire, and Redis delivers, before time moves on
        if (rep.sentinel_left > 0 or rep.sentinel_timeout_left > 0 or rep.probe_left > 0
                or 0 <= rep.dead_for <= cfg.detection_bound):
            moved = True
    if not moved:
        return
    ctx = _Ctx(cfg, s)
    for i, slot in enumerate(s.clients):
        if slot.asleep:
            continue
        flows = _heartbeats_flow(slot)
        ctx.clients[i] = slot._replace(
            heartbeat_left=slot.heartbeat_left - 1 if slot.heartbeat_left > 0 and not flows
            else slot.heartbeat_left,
            backoff_left=slot.backoff_left - 1 if slot.backoff_left > 0 else slot.backoff_left,
        )
        if flows and _first_heartbeat_due(slot):
            _feed_client(ctx, i, cl.HeartbeatReceived())  # the first heartbeat on the stream
    bound = cfg.detection_bound
    for r, rep in enumerate(ctx.replicas):
        ctx.replicas[r] = rep._replace(
            sentinel_left=rep.sentinel_left - 1 if rep.sentinel_left > 0 else rep.sentinel_left,
            sentinel_timeout_left=(rep.sentinel_timeout_left - 1 if rep.sentinel_timeout_left > 0
                                   else rep.sentinel_timeout_left),
            dead_for=min(rep.dead_for + 1, bound + 1) if rep.dead_for >= 0 else -1,
            probe_left=rep.probe_left - 1 if rep.probe_left > 0 else rep.probe_left,
        )
    yield _t(Kind.TICK, -1, ctx.state(s), ctx=ctx)


def _first_heartbeat_due(slot: ClientSlot) -> bool:
    """The stream's first heartbeat would arrive now: nothing heard, no frame ahead of it."""
    stream = slot.streams[-1]
    return not stream.heard and not stream.wire


def _heartbeats_flow(slot: ClientSlot) -> bool:
    """Server heartbeats reach the client: its newest stream is open."""
    return (not slot.asleep and bool(slot.streams) and slot.streams[-1].phase is StreamPhase.OPEN
            and slot.machine.status is cl.Status.CONNECTED)


#: (kind, enabler) in the order their transitions are listed; fault enablers run only
#: while the fault budget lasts. One enabler per actor and kind.
ENABLERS: tuple[tuple[Kind, Enabler], ...] = (
    (Kind.PUBLISH, _publishers),
    (Kind.REDIS_PUBLISH_LOST, _publish_lost),
    (Kind.DELIVER, _redis_delivers),
    (Kind.RECONNECT, _links_reconnect),
    (Kind.REPLICA_UP, _replicas_come_up),
    (Kind.REDIS_SUBSCRIBER_DIES, _subscriber_dies),
    (Kind.REDIS_DISCONNECT, _subscriber_disconnects),
    (Kind.REPLICAS_DOWN, _replica_goes_down),
    (Kind.POSTGRES_PRUNE, _retention_prunes),
    (Kind.WAKE, _laptops_wake),
    (Kind.ACCEPT, _accepts),
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
    (Kind.TIMER, _sentinel_timers),
    (Kind.PROBE, _probes),
    (Kind.TICK, _time_passes),
)

_PROGRESS_ENABLERS = tuple(e for k, e in ENABLERS if not k.fault)


def enabled(cfg: WorldConfig, s: State) -> list[Transition]:
    """Every transition enabled in ``s``."""
    out: list[Transition] = []
    enablers = (e for _, e in ENABLERS) if s.faults < cfg.faults else _PROGRESS_ENABLERS
    for enabler in enablers:
        out.extend(enabler(cfg, s))
    return out


# ---------------------------------------------------------------- reading states


def flatten(cfg: WorldConfig, s: State) -> dict[str, str]:
    """A flat, readable view of a state, for printing what a step changed."""
    out: dict[str, str] = {}
    for i, slot in enumerate(s.clients):
        m = slot.machine
        p = f"client {i}"
        out[f"{p}.status"] = m.status.value
        out[f"{p}.attempts"] = str(m.attempts)
        out[f"{p}.attempts_really_started"] = str(slot.attempts_started)
        out[f"{p}.last_event_id"] = str(m.last_event_id) if m.last_event_id else "none"
        out[f"{p}.rehydration"] = m.rehydration.value
        out[f"{p}.applied"] = "{" + ",".join(map(str, seqs(slot.applied))) + "}"
        out[f"{p}.heartbeat_timer"] = "off" if slot.heartbeat_left < 0 else str(slot.heartbeat_left)
        out[f"{p}.backoff_timer"] = "off" if slot.backoff_left < 0 else str(slot.backoff_left)
        out[f"{p}.asleep"] = str(slot.asleep).lower()
        if slot.flags:
            out[f"{p}.breaches"] = str(slot.flags)
        for k, st in enumerate(slot.streams):
            q = f"{p}.stream{k}"
            out[q] = (st.phase.value + (f" on replica {st.replica}" if st.replica >= 0 else "")
                      + f" from {st.cursor}")
            if st.session is not None:
                out[f"{q}.session"] = f"{st.session.phase.value} cursor {st.session.cursor}"
            if st.wire:
                out[f"{q}.wire"] = ",".join(
                    f"{kd.value} {v}" if kd is Frame.EVENT or kd is Frame.HEAD else kd.value
                    for kd, v in st.wire)
            if st.query is not None:
                out[f"{q}.query"] = (f"after {st.query.after} upto {st.query.upto} "
                                     f"limit {st.query.limit}")
    for r, rep in enumerate(s.replicas):
        p = f"replica {r}"
        out[f"{p}.subscriber"] = rep.subscriber.health.value
        out[f"{p}.link"] = rep.link.value
        out[f"{p}.redis_queue"] = ",".join(
            (f"event {x}" if x > 0 else f"sentinel {-x}") for x in rep.queue) or "empty"
        out[f"{p}.sentinel_timer"] = "off" if rep.sentinel_left < 0 else str(rep.sentinel_left)
        out[f"{p}.sentinel_timeout"] = ("off" if rep.sentinel_timeout_left < 0
                                        else str(rep.sentinel_timeout_left))
        out[f"{p}.down"] = str(rep.down).lower()
        out[f"{p}.probe_timer"] = "off" if rep.probe_left < 0 else str(rep.probe_left)
    out["postgres.committed"] = "{" + ",".join(map(str, seqs(s.db.committed))) + "}"
    out["postgres.head"] = str(s.db.head)
    out["postgres.floor"] = str(s.db.floor)
    out["faults_spent"] = str(s.faults)
    return out
