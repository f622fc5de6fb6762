"""Time in the world: one ``tick`` moves every running timer of every actor on by one.

No clock is kept: each armed timer holds the ticks left. ``time passes`` is not
enabled while a timer is due, a revoked token awaits its re-check, or Redis holds
a message (they happen first), nor when nothing runs. A tick also ages silent
streams (how long the client has heard nothing) and open streams whose revoked
token was re-checked, and delivers a stream's first heartbeat once the frames
written before it have arrived. Part of :mod:`model.world`, which lists it.
"""

from __future__ import annotations

from collections.abc import Iterator

from model import client as cl
from model.world_shell import Ctx, Pieces, feed_client, on_client, on_replica
from model.world_state import ClientSlot, Kind, State, Stream, StreamPhase, Transition, WorldConfig

__all__ = ["REAUTH_BOUND", "time_passes"]


def time_passes(cfg: WorldConfig, s: State, pieces: Pieces | None = None) -> Iterator[Transition]:
    """One tick for every running timer, unless a timer is due or nothing runs."""
    moved = False
    for slot in s.clients:
        if slot.asleep:
            continue
        if slot.heartbeat_left == 0 or slot.backoff_left == 0:
            return
        if any(st.revoked and st.revoked_for < 0 and st.phase is StreamPhase.OPEN
               for st in slot.streams):
            return  # a revoked token is re-checked before time moves on
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
    ctx = Ctx(cfg, s, pieces)
    cap = cfg.heartbeat_timeout + cfg.heartbeat_check_interval + 1
    for i, slot in enumerate(s.clients):
        if not slot.asleep:
            on_client(ctx, _tick_client, i, cap)
    for r in range(len(ctx.replicas)):
        on_replica(ctx, _tick_replica, r, cfg.detection_bound)
    yield Transition(Kind.TICK, -1, "", (), tuple(ctx.feeds), ctx.state(s))


def _tick_replica(ctx: Ctx, r: int, bound: int) -> None:
    """One tick for replica r: its sentinel and probe timers run down, a dead link ages."""
    rep = ctx.replicas[r]
    ctx.replicas[r] = rep._replace(
        sentinel_left=rep.sentinel_left - 1 if rep.sentinel_left > 0 else rep.sentinel_left,
        sentinel_timeout_left=(rep.sentinel_timeout_left - 1 if rep.sentinel_timeout_left > 0
                               else rep.sentinel_timeout_left),
        dead_for=min(rep.dead_for + 1, bound + 1) if rep.dead_for >= 0 else -1,
        probe_left=rep.probe_left - 1 if rep.probe_left > 0 else rep.probe_left,
    )


def _tick_client(ctx: Ctx, i: int, cap: int) -> None:
    """One tick for awake client i: its timers run down, silent streams age, a first heartbeat."""
    slot = ctx.clients[i]
    flows = _heartbeats_flow(slot)
    if any((st.phase is StreamPhase.STALLED and st.stalled_for < cap)
           or (st.phase is StreamPhase.OPEN and 0 <= st.revoked_for <= REAUTH_BOUND)
           for st in slot.streams):
        slot = slot._replace(streams=tuple(_aged(st, cap) for st in slot.streams))
    ctx.clients[i] = slot._replace(
        heartbeat_left=slot.heartbeat_left - 1 if slot.heartbeat_left > 0 and not flows
        else slot.heartbeat_left,
        backoff_left=slot.backoff_left - 1 if slot.backoff_left > 0 else slot.backoff_left,
    )
    if flows and _first_heartbeat_due(slot):
        feed_client(ctx, i, cl.HeartbeatReceived())  # the first heartbeat on the stream


#: Ticks within which a stream whose revoked token was re-checked must have ended.
REAUTH_BOUND = 1


def _aged(stream: Stream, cap: int) -> Stream:
    """A stream one tick older: how long it has been silent, or revoked and still open."""
    if stream.phase is StreamPhase.STALLED and stream.stalled_for < cap:
        return stream._replace(stalled_for=stream.stalled_for + 1)
    if stream.phase is StreamPhase.OPEN and 0 <= stream.revoked_for <= REAUTH_BOUND:
        return stream._replace(revoked_for=stream.revoked_for + 1)
    return stream


def _first_heartbeat_due(slot: ClientSlot) -> bool:
    """The stream's first heartbeat would arrive now: nothing heard, no frame ahead of it."""
    stream = slot.streams[-1]
    return not stream.heard and not stream.wire


def _heartbeats_flow(slot: ClientSlot) -> bool:
    """Server heartbeats reach the client: its newest stream is open."""
    return (not slot.asleep and bool(slot.streams) and slot.streams[-1].phase is StreamPhase.OPEN
            and slot.machine.status is cl.Status.CONNECTED)
