"""Faults on a schedule, and in the background: the fault vocabulary, carried out.

What it owns. The scenario's schedule of :class:`model.faults.Fault` values (the
vocabulary every engine shares) and the background drops and laptop sleeps at
per-client rates. Each fault kind has one handler in a ``{kind: handler}`` table
keyed by the vocabulary's names (:data:`model.faults.FAULTS`); adding a kind to
the vocabulary means adding one handler here. A kind without a handler is an
error when a scenario schedules it, never a silent no-op.

A fault picks its targets (a sample of clients drawn from the one random
generator, or the clients with a stream on the replicas it hits), asks the
observer to follow them until the disturbance is over, and hands the fault to
the part of the world it hits: the network, a replica, its link, Redis or
Postgres.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Generator, Sequence
from typing import Any

from model.faults import Fault
from sims.des.client import Client
from sims.des.context import Context
from sims.des.database import Database
from sims.des.observer import Observer, Watch
from sims.des.pubsub import Redis
from sims.des.replica import Replica
from sims.des.wire import Network

__all__ = ["Injector"]

Handler = Callable[[int, Fault], None]


class Injector:
    """Applies each scheduled fault through its kind's handler; runs the background faults."""

    def __init__(self, ctx: Context, *, clients: Sequence[Client], replicas: Sequence[Replica],
                 net: Network, db: Database, redis: Redis, observer: Observer,
                 judge: Callable[[Client], None]) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.rng = ctx.rng
        self.clients = clients
        self.replicas = replicas
        self.net = net
        self.db = db
        self.redis = redis
        self.observer = observer
        self.judge = judge
        #: fault kind (a name in model.faults.FAULTS) -> its handler
        self.handlers: dict[str, Handler] = {
            "network.drop": self._network_drop,
            "network.stall": self._network_stall,
            "clients.sleep": self._clients_sleep,
            "redis.subscriber_dies": self._subscriber_dies,
            "redis.disconnect": self._disconnect,
            "redis.outage": self._redis_outage,
            "redis.publish_lost": self._publish_lost,
            "auth.revoke": self._revoke,
            "postgres.replay_fails": self._replay_fails,
            "postgres.errors": self._postgres_errors,
            "postgres.prune": self._prune,
            "postgres.snapshot_fails": self._snapshot_fails,
            "replicas.down": self._replicas_down,
            "replicas.restart": self._replicas_restart,
        }

    # ------------------------------------------------------------ the schedule

    def schedule(self) -> Generator[Any, Any, None]:
        """The scheduled faults' process: each applied at its time, in order."""
        env = self.env
        for incident, (fault, _text) in enumerate(self.observer.faults):
            if fault.at > env.now:
                yield env.timeout(fault.at - env.now)
            self.apply(incident, fault)

    def apply(self, incident: int, fault: Fault) -> None:
        """Carry out ``fault`` (the schedule's ``incident``-th) through its kind's handler."""
        handler = self.handlers.get(fault.kind)
        if handler is None:  # a fault the vocabulary gained and the DES has not
            raise NotImplementedError(f"the DES does not simulate {fault.kind!r} yet: add a handler "
                                      f"to sims.des.injector.Injector.handlers")
        handler(incident, fault)

    def _sample(self, fraction: float) -> list[Client]:
        k = round(fraction * len(self.clients))
        return [self.clients[i] for i in self.rng.sample(range(len(self.clients)), k)]

    def _replicas(self, fault: Fault) -> Sequence[Replica]:
        which = int(fault.get("replica"))
        return self.replicas if which < 0 else [self.replicas[which]]

    @staticmethod
    def _on_replicas(replicas: Sequence[Replica]) -> list[Client]:
        out: list[Client] = []
        for replica in replicas:
            out.extend(s.client for s in replica.sessions.values())
        return out

    def _watch(self, incident: int, targets: Sequence[Client]) -> None:
        """Follow ``targets`` until the incident's disturbance of them is over."""
        observer = self.observer
        judge = self.judge
        watches = []
        for c in targets:
            watches.append((c, observer.watch(incident, c.idx)))
            judge(c)
        end = observer.faults[incident][0].end
        ev = self.env.timeout(max(0.0, end - self.env.now))
        ev.callbacks.append(functools.partial(self._fault_end, watches))

    def _fault_end(self, watches: list[tuple[Client, Watch]], _ev: Any) -> None:
        """The fault is over: fix what each client must hold to be back in sync."""
        head = self.db.head
        for c, w in watches:
            if self.observer.fault_over(w, head[c.topic]):
                self.judge(c)

    # ------------------------------------------------------------ the handlers

    def _network_drop(self, incident: int, fault: Fault) -> None:
        targets = self._sample(float(fault.get("fraction")))
        self._watch(incident, targets)
        for c in targets:
            if c.conn is not None:
                self.net.sever(c.conn, "network drop", tell_client=True)

    def _network_stall(self, incident: int, fault: Fault) -> None:
        targets = self._sample(float(fault.get("fraction")))
        self._watch(incident, targets)
        duration = float(fault.get("duration") or 0.0)
        for c in targets:
            if c.conn is not None and not c.asleep:
                self.net.stall(c.conn, duration, incident)

    def _clients_sleep(self, incident: int, fault: Fault) -> None:
        targets = self._sample(float(fault.get("fraction")))
        duration = float(fault.get("duration"))
        self._watch(incident, targets)
        for c in targets:
            self.observer.put_to_sleep(c.idx, incident)
            c.sleep(duration)

    def _link_fault(self, incident: int, fault: Fault) -> Sequence[Replica]:
        """Follow the streams on the replicas whose link ``fault`` hits; open detections."""
        replicas = self._replicas(fault)
        self._watch(incident, self._on_replicas(replicas))
        now = self.env.now
        for replica in replicas:
            if replica.link.connected and not replica.link.dead:
                replica.detect.append(self.observer.detection(incident, fault.kind,
                                                              f"replica {replica.idx}", now))
        return replicas

    def _subscriber_dies(self, incident: int, fault: Fault) -> None:
        for replica in self._link_fault(incident, fault):
            replica.link.request(("die",))

    def _disconnect(self, incident: int, fault: Fault) -> None:
        until = self.env.now + float(fault.get("duration"))
        for replica in self._link_fault(incident, fault):
            replica.link.request(("drop", "redis: connection lost", until))

    def _redis_outage(self, incident: int, fault: Fault) -> None:
        redis = self.redis
        redis.up = False
        self._watch(incident, self.clients)
        now = self.env.now
        end = fault.end
        for replica in self.replicas:
            if replica.link.connected:
                replica.detect.append(self.observer.detection(incident, fault.kind,
                                                              f"replica {replica.idx}", now))
            replica.link.request(("drop", "redis: server down", end))
        ev = self.env.timeout(end - now)
        ev.callbacks.append(lambda _e: setattr(redis, "up", True))

    def _publish_lost(self, incident: int, fault: Fault) -> None:
        self.redis.lost_publishes += int(fault.get("count"))
        self._watch(incident, self.clients)

    def _revoke(self, incident: int, fault: Fault) -> None:
        targets = self._sample(float(fault.get("fraction")))
        self._watch(incident, targets)
        for c in targets:
            conn = c.conn
            session = conn.session if conn is not None else None
            if session is not None and not session.closed:
                session.replica.revoke(session, "token revoked (auth.revoke)")

    def _snapshot_fails(self, incident: int, fault: Fault) -> None:
        self.db.snapshot_fails.extend([incident] * int(fault.get("count")))
        self._watch(incident, self.clients)

    def _replay_fails(self, incident: int, fault: Fault) -> None:
        self.db.replay_fails.extend([incident] * int(fault.get("count")))
        self._watch(incident, self.clients)

    def _postgres_errors(self, incident: int, fault: Fault) -> None:
        self.db.errors.append((fault.end, float(fault.get("rate")), incident))
        self._watch(incident, self.clients)

    def _prune(self, incident: int, fault: Fault) -> None:
        self.db.prune(int(fault.get("keep")))
        self._watch(incident, self.clients)

    def _replicas_down(self, incident: int, fault: Fault) -> None:
        replicas = self._replicas(fault)
        self._watch(incident, self._on_replicas(replicas))
        for replica in replicas:
            replica.go_down(float(fault.get("duration")))

    def _replicas_restart(self, incident: int, fault: Fault) -> None:
        stagger = float(fault.get("stagger"))
        for j, replica in enumerate(self._replicas(fault)):
            if j == 0 or stagger <= 0:
                self._restart(replica, incident)
            else:
                ev = self.env.timeout(j * stagger)
                ev.callbacks.append(functools.partial(self._restart_at, replica, incident))

    def _restart_at(self, replica: Replica, incident: int, _ev: Any) -> None:
        self._restart(replica, incident)

    def _restart(self, replica: Replica, incident: int) -> None:
        self._watch(incident, self._on_replicas([replica]))
        replica.go_down(self.ctx.settings.replica_boot)

    # ------------------------------------------------------------ the background

    def background(self, per_hour: float, hit: Callable[[Client], None]) -> Generator[Any, Any, None]:
        """A process hitting a uniformly drawn client ``per_hour`` times per client-hour."""
        rate = per_hour / 3600.0 * len(self.clients)
        env = self.env
        rng = self.rng
        while True:
            yield env.timeout(rng.expovariate(rate))
            hit(self.clients[int(rng.random() * len(self.clients))])

    def background_drop(self, c: Client) -> None:
        """A background network drop of ``c``'s stream."""
        if c.conn is not None and not c.asleep:
            self.net.sever(c.conn, "network drop", tell_client=True)

    def background_sleep(self, c: Client) -> None:
        """A background laptop sleep of ``c``, of a log-normal duration."""
        s = self.ctx.settings
        duration = self.rng.lognormvariate(math.log(s.sleep_median), s.sleep_sigma)
        if not c.asleep:
            c.sleep(duration)
