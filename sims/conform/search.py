"""Is a recorded run a behaviour of ``model.world``? A search over world and trace together.

A search node is a world state, how far each machine instance's recorded inputs
have been matched, and which recorded session each world stream is. From a node,
every world transition is tried: the inputs it feeds to machines (its
:attr:`model.world.Transition.feeds`) must equal, per instance, the next recorded
inputs of that instance; a publish or a fault must equal the environment's next
line. Steps that
feed nothing observable (time passing, Redis delivery, a publisher's internals)
are free. An instance whose recording has ended takes anything. The run is a
behaviour when a node matches every line; every state on the way must satisfy
:func:`model.invariants.violations`.

Abstractions (documented in the README section): inputs are matched per instance,
not across instances; time is in ticks of ``tick`` seconds (default: untimed, every
timer one tick), so only the order the timers impose is checked; event ids are
compared by seq, not epoch; sentinel tokens are not compared.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from model.fixes import Fixes
from model.invariants import violations
from model.world import Fed, Kind, Machine, State, Transition, WorldConfig, enabled, initial
from service.trace import encode
from sims.conform.traces import Key, Line, Trace, input_key

__all__ = ["Failure", "Result", "Step", "conform", "world_config"]


class Step(NamedTuple):
    """One world transition of the found path, with what it fed."""

    label: str
    kind: Kind
    feeds: tuple[Fed, ...]


class Failure(NamedTuple):
    """The first trace line no world transition explains."""

    line: Line | None
    instance: str
    allowed: tuple[str, ...]  #: what the world could feed that instance instead
    violation: tuple[str, ...]  #: invariants broken on the furthest path, if that stopped it


class Result(NamedTuple):
    """The verdict of one conformance search."""

    ok: bool
    config: WorldConfig
    nodes: int
    path: tuple[Step, ...]
    failure: Failure | None
    complete: bool = True


# ---------------------------------------------------------------- config


def world_config(trace: Trace, *, tick: float | None = None,
                 overrides: Mapping[str, Any] | None = None) -> WorldConfig:
    """The world a trace ran in: its actors, publishes, faults, fixes, limits and timings."""
    server = [c for c in trace.configs if c.get("role") == "server"]
    client = [c for c in trace.configs if c.get("role") == "client"]
    fixes = Fixes.from_names(server[0]["fixes"]) if server and "fixes" in server[0] else Fixes()
    clients = sum(1 for i in trace.instances if i.machine == "client")
    replicas = sum(1 for i in trace.instances if i.machine == "subscriber")
    events = sum(1 for e in trace.env if e.key[0] == "publish")
    faults = sum(1 for e in trace.env if e.key[0] != "publish")

    def ticks(seconds: Any, default: int = 1) -> int:
        if tick is None or seconds is None:
            return default
        return max(1, round(float(seconds) / tick))

    opens = sorted((i.lines[0] for i in trace.instances
                    if i.machine == "session" and i.lines and i.lines[0].key[0] == "Open"),
                   key=lambda line: (line.file, line.lineno))
    # A client that started without a cursor (a fresh browser) opens its first stream
    # without one; a client started from a cursor is the world's client at the empty topic.
    start_cursor = 0 if opens and opens[0].key[1] is not None else None
    c0: Mapping[str, Any] = client[0] if client else {}
    s0: Mapping[str, Any] = server[0] if server else {}
    values: dict[str, Any] = dict(
        clients=max(1, clients), replicas=max(1, replicas), events=events, faults=faults,
        max_attempts=int(c0.get("max_attempts", 50)),
        replay_limit=int(s0.get("replay_limit", 1000)),
        heartbeat_timeout=ticks(c0.get("heartbeat_timeout")),
        heartbeat_check_interval=ticks(c0.get("heartbeat_check_interval")),
        sentinel_interval=ticks(s0.get("sentinel_interval_s")),
        sentinel_timeout=ticks(s0.get("sentinel_timeout_s")),
        backoff_base=ticks(c0.get("backoff_base")),
        backoff_cap=ticks(c0.get("backoff_cap")),
        probe_interval=ticks(s0.get("probe_s")),
        start_cursor=start_cursor,
        fixes=fixes,
    )
    values.update(overrides or {})
    return WorldConfig(**values)


# ---------------------------------------------------------------- the search


class _Node(NamedTuple):
    state: State
    pos: tuple[int, ...]
    align: tuple[tuple[int, ...], ...]  #: per client, per world stream: session instance
    used: int  #: bitmask of session instances assigned so far


def _key(machine: str, event: Any) -> Key:
    return input_key(machine, encode(event))


def conform(trace: Trace, cfg: WorldConfig, *, max_nodes: int = 300_000) -> Result:
    """Search for a world path whose fed inputs equal the trace, invariants holding."""
    insts = trace.instances
    n_env = len(insts)
    lines = [inst.lines for inst in insts] + [trace.env]
    clients = [k for k, i in enumerate(insts) if i.machine == "client"]
    subs = [k for k, i in enumerate(insts) if i.machine == "subscriber"]
    sessions = [k for k, i in enumerate(insts) if i.machine == "session"]
    names = [f"{i.machine} {i.ident}" for i in insts] + ["env"]
    order: dict[tuple[int, int], int] = {}
    every = sorted(((ln.file, ln.lineno), k, p) for k, ls in enumerate(lines)
                   for p, ln in enumerate(ls))
    for g, (_, k, p) in enumerate(every):
        order[(k, p)] = g
    total = len(every)

    s0 = initial(cfg)
    start = _Node(s0, (0,) * len(lines), tuple((-1,) * len(sl.streams) for sl in s0.clients), 0)
    parent: dict[_Node, tuple[_Node | None, Step | None]] = {start: (None, None)}
    queue: deque[_Node] = deque([start])
    best: tuple[int, _Node] = (-1, start)
    worst_violation: tuple[int, tuple[str, ...]] = (-1, ())

    def frontier(node: _Node) -> int:
        pending = [order[(k, p)] for k, p in enumerate(node.pos) if p < len(lines[k])]
        return min(pending) if pending else total

    def advance(node: _Node, t: Transition) -> _Node | None:
        nxt = t.state
        pos = list(node.pos)
        align = [list(a) for a in node.align]
        used = node.used

        def take(k: int, key: Key) -> bool:
            if k < 0:
                return True  # a stream no recorded session stands for (its client had ended)
            if pos[k] >= len(lines[k]):
                return True  # this instance's recording has ended: it takes anything
            if lines[k][pos[k]].key != key:
                return False
            pos[k] += 1
            return True

        kind = t.kind
        if kind is Kind.PUBLISH and nxt.published > node.state.published:
            if not take(n_env, ("publish",)):
                return None
        elif kind.fault:
            if not take(n_env, (kind.value,)):
                return None
        for feed in t.feeds:
            what = feed.machine
            if what is Machine.CLIENT:
                i = feed.actor
                if i >= len(clients) or not take(clients[i], _key("client", feed.input)):
                    return None
            elif what is Machine.SUBSCRIBER:
                r = feed.actor
                if r >= len(subs) or not take(subs[r], _key("subscriber", feed.input)):
                    return None
            elif what is Machine.SESSION:
                i, k = feed.actor, feed.stream
                key = _key("session", feed.input)
                if key[0] == "Open":
                    pick = -1
                    for bit, sk in enumerate(sessions):
                        if not used >> bit & 1 and lines[sk] and lines[sk][0].key == key:
                            pick = bit
                            break
                    if pick < 0:
                        ended = i < len(clients) and node.pos[clients[i]] >= len(lines[clients[i]])
                        if not ended:
                            return None
                        align[i][k] = -2
                        continue
                    used |= 1 << pick
                    align[i][k] = pick
                    pos[sessions[pick]] += 1
                    continue
                bit = align[i][k]
                if not take(sessions[bit] if bit >= 0 else -1, key):
                    return None
            elif what is Machine.STREAM_REMOVED:
                del align[feed.actor][feed.stream]
            elif what is Machine.STREAM_ADDED:
                align[feed.actor].append(-1)
        return _Node(nxt, tuple(pos), tuple(tuple(a) for a in align), used)

    found: _Node | None = None
    complete = True
    while queue:
        node = queue.popleft()
        f = frontier(node)
        if f > best[0]:
            best = (f, node)
        if f == total:
            found = node
            break
        if len(parent) > max_nodes:
            complete = False
            break
        for t in enabled(cfg, node.state):
            child = advance(node, t)
            if child is None or child in parent:
                continue
            bad = violations(cfg, t.state)
            if bad:
                g = frontier(child)
                if g > worst_violation[0]:
                    worst_violation = (g, tuple(bad))
                continue
            parent[child] = (node, Step(t.sentence, t.kind, t.feeds))
            queue.append(child)
    if found is not None:
        return Result(True, cfg, len(parent), _path(parent, found), None, True)
    f, node = best
    failure = _explain(cfg, node, lines, names, f, total, order, clients, subs)
    violation = worst_violation[1] if worst_violation[0] >= f else ()
    return Result(False, cfg, len(parent), _path(parent, node),
                  failure._replace(violation=violation), complete)


def _path(parent: Mapping[_Node, tuple[_Node | None, Step | None]], node: _Node) -> tuple[Step, ...]:
    steps: list[Step] = []
    cur: _Node | None = node
    while cur is not None:
        prev, step = parent[cur]
        if step is not None:
            steps.append(step)
        cur = prev
    return tuple(reversed(steps))


def _explain(cfg: WorldConfig, node: _Node, lines: list[tuple[Line, ...]], names: list[str],
             f: int, total: int, order: Mapping[tuple[int, int], int], clients: list[int],
             subs: list[int]) -> Failure:
    if f >= total:
        return Failure(None, "", (), ())
    k = next(k for k, p in enumerate(node.pos) if p < len(lines[k]) and order[(k, p)] == f)
    line = lines[k][node.pos[k]]
    allowed: set[str] = set()
    for t in enabled(cfg, node.state):
        for feed in t.feeds:
            if feed.machine is Machine.CLIENT and k in clients and clients.index(k) == feed.actor:
                allowed.add(repr(_key("client", feed.input)))
            elif (feed.machine is Machine.SUBSCRIBER and k in subs
                  and subs.index(k) == feed.actor):
                allowed.add(repr(_key("subscriber", feed.input)))
            elif feed.machine is Machine.SESSION and names[k].startswith("session"):
                allowed.add(repr(_key("session", feed.input)))
        if names[k] == "env":
            allowed.add(t.kind.value)
    return Failure(line, names[k], tuple(sorted(allowed)), ())
