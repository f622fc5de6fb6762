"""The world's vocabulary: its states, its transitions as values, and how they read.

Everything :mod:`model.world` and :mod:`model.invariants` share about a world
state, with no behaviour: the enums of its parts, :class:`WorldConfig`, the state
tuples, :class:`Transition` and :class:`Fed` (what a transition fed the machines),
the sentence table :data:`SENTENCES` and :func:`flatten`, a readable view of a
state. Import these names from :mod:`model.world`, which re-exports them; the
essay there says what the world assumes.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from typing import NamedTuple

from model import client as cl
from model import session as se
from model import subscriber as sb
from model.backoff import BackoffPolicy
from model.backoff import Kind as BackoffKind
from model.core import EventId, Input
from model.faults import FAULTS
from model.fixes import Fixes

__all__ = [
    "DELIVERY_FLAGS",
    "FAILED_FLAGS",
    "NO_FLAGS",
    "PROGRESS_KINDS",
    "SENTENCES",
    "Arg",
    "ClientSlot",
    "Db",
    "Fed",
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
    "flatten",
    "pubs_idle",
    "render",
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
    REGISTERED = "registered"  #: a replica took it and subscribed it to live fan-out; the
    #: head is not read yet, live events wait in ``Stream.early``
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
    OPEN = "open"
    REFUSE = "refuse"
    DELIVER = "deliver"
    RECONNECT = "reconnect"
    REPLICA_UP = "replica-up"
    PUBLISH = "publish"
    TRIGGER = "trigger"
    RETRY = "retry"
    TICK = "tick"
    PROBE = "probe"
    REAUTH = "reauth"
    NETWORK_DROP = "network.drop"
    NETWORK_STALL = "network.stall"
    CLIENTS_SLEEP = "clients.sleep"
    REDIS_SUBSCRIBER_DIES = "redis.subscriber_dies"
    REDIS_DISCONNECT = "redis.disconnect"
    REDIS_PUBLISH_LOST = "redis.publish_lost"
    AUTH_REVOKE = "auth.revoke"
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
    (Kind.OPEN, ""): "replica {0} reads the head ({1}) and opens client {actor}'s stream",
    (Kind.REFUSE, ""): "client {actor}'s connection is refused",
    (Kind.REPLAY, ""): "postgres: replay for client {actor} returns rows [{0}]",
    (Kind.RECEIVE, "event"): "client {actor} receives event {0}",
    (Kind.RECEIVE, "truncated"): "client {actor} receives replay-truncated (head {0})",
    (Kind.RECEIVE, "failed"): "client {actor} receives replay-failed",
    (Kind.RECEIVE, "head"): "client {actor} receives the head announcement ({0})",
    (Kind.PROBE, ""): "replica {actor} probes the topic head ({0})",
    (Kind.REAUTH, ""): "replica {0} re-checks client {actor}'s token: revoked",
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
    #: fault kinds (``model.faults`` names) that cannot happen in this world
    without_faults: tuple[str, ...] = ()
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
        unknown = [f for f in self.without_faults if f not in {k.value for k in Kind if k.fault}]
        if unknown:
            raise ValueError(f"WorldConfig.without_faults: {unknown} are not world faults; "
                             "accepted: " + ", ".join(k.value for k in Kind if k.fault))
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
    stalled_for: int = 0  #: ticks since it went silent (stalled), capped past the stall bound
    revoked: bool = False  #: its token was revoked (or expired) while it streamed
    revoked_for: int = -1  #: ticks since a re-check told its session (-1: not told yet)
    early: tuple[int, ...] = ()  #: live seqs fanned out to it before its session opened
    head_read: int = -1  #: a head read before registering (only a head-first order does)


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
