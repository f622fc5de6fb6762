"""A fleet of SSE clients, replicas, Redis and Postgres, in SimPy, driving the machines.

What the scenario covers. ``CLIENTS`` browser tabs each hold one event stream
through a load balancer to one of ``REPLICAS`` API replicas. Publishers commit
events to Postgres (a per-topic sequence) and publish them on Redis; each
replica's subscriber link fans them out to the streams of that topic. Clients
reconnect with backoff, replay what they missed from Postgres through the
replica's connection pool, re-hydrate from snapshots when told to, and give up
(``failed``) after the maximum of attempts until the user presses Retry. Faults
-- Redis outages, silent subscriber deaths, query errors, laptop sleep, drops,
stalls, deploys -- arrive on a schedule in the shared vocabulary of
:mod:`model.faults`, plus background drops and sleeps at per-client rates.

Who decides. Nobody here. Every choice about reconnecting, replaying, health
and recovery is made by a machine: :mod:`model.client` per client,
:mod:`model.session` per stream, :mod:`model.subscriber` per replica. The shell
only performs their actions (open a stream, run a query, arm a timer, publish a
sentinel), reports back what happened, and measures. Staleness is judged by
:func:`model.invariants.covered` on :class:`~model.invariants.StaleFacts`
gathered from the simulated world.

This module wires the parts together; each part holds one job:

=====================  =====================================================
module                 its job
=====================  =====================================================
:mod:`.context`        the clock, the one random generator, settings, configs
:mod:`.client`         the tabs and the client machine's shell
:mod:`.wire`           streams on the wire, the load balancer, timeouts
:mod:`.replica`        replicas, their sessions, subscriber and Redis link
:mod:`.database`       Postgres: topic logs, pools, queries, error windows
:mod:`.pubsub`         publishers, Redis fan-out and sentinels
:mod:`.injector`       the fault vocabulary carried out, ``{kind: handler}``
:mod:`.facts`          a client's StaleFacts, gathered from the world
:mod:`.observer`       judging those facts, following incidents, records
=====================  =====================================================

Parts talk to the narrowest collaborator that does the job (a tab to the
network, the observer and one ``judge`` callable), never back to the fleet.

Theory of operation (the SimPy way).

* Each client is one SimPy process that owns the client machine's timers: it
  sleeps until the earliest armed deadline (or indefinitely) and is woken by an
  interrupt when a deadline moves earlier. Frames from the network are fed to the
  machine by the delivery event's callback; a fault aimed at a client (laptop
  sleep) is an interrupt carrying the fault.
* Replicas and their Redis links are processes too; a replica restart or a link
  drop is an interrupt. Postgres is a ``simpy.Resource`` per replica (the pool)
  with query time = ``QUERY_BASE_S + QUERY_ROW_S * rows``, errors and timeouts.
* All chance comes from one ``random.Random(seed)``: start times, Poisson
  publishes (one stream at the summed rate, topic drawn uniformly: the same
  process as one Poisson publisher per topic), samples of clients hit by a
  fault, sleep durations, query errors and the machines' jitter draws ``u``.
  SimPy orders simultaneous events by insertion, and nothing iterates a set of
  objects, so the same seed gives the same run, bit for bit.

Deliberate divergences, for speed, each exact for the machines' inputs (the
heartbeat coalescing and the closes seen at once are told in
:mod:`sims.des.replica`):

* **The load balancer routes by readiness**: to the replica with the fewest
  streams among those up whose ``/health/ready`` (``model.subscriber.view``) says
  ready; when none is, the attempt gets a 503. With ``subscriber-health`` off the
  view is always ready, as the seed's health endpoint was.
* **Publishers write on their own connections**: commits do not queue in the
  replicas' pools, and always succeed; ``postgres.errors`` hits the SSE reads.
* **The HTTP client times out.** An attempt with no answer after
  ``CONNECT_TIMEOUT_S`` is reported as ``StreamFailed("connect timeout")``, as
  ``StreamFailed`` documents; without it an attempt on a half-open connection
  would hang for ever (the heartbeat monitor, with heartbeat-guard on, ignores a
  client that is connecting).
* **A sleeping laptop's stream is dead**: the server drops its side when the lid
  closes; answers that arrive during the sleep are lost, and an attempt or a
  snapshot in flight fails when the laptop wakes.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from model import client as cm
from sims.des.client import Client, Clients
from sims.des.context import Context
from sims.des.database import Database
from sims.des.facts import Facts
from sims.des.injector import Injector
from sims.des.metrics import Recorder
from sims.des.observer import FINE, WATCH_HORIZON_S, Observer, Watch
from sims.des.pubsub import Redis
from sims.des.replica import Link, Replica, Session, Sessions
from sims.des.scenarios import Scenario
from sims.des.wire import Conn, Network

__all__ = ["WATCH_HORIZON_S", "Client", "Conn", "Fleet", "Link", "Replica", "Session", "Watch"]

_C_CONNECTED = cm.Status.CONNECTED
_R_NONE = cm.Rehydration.NONE


class Fleet:
    """The whole simulated world for one scenario; :meth:`run` it, then read ``rec``."""

    def __init__(self, scenario: Scenario, rec: Recorder | None = None) -> None:
        s = scenario.settings
        self.scenario = scenario
        self.settings = s
        self.rec = rec if rec is not None else Recorder()
        ctx = self.ctx = Context(s, self.rec)
        self.env = ctx.env
        self.rng = ctx.rng
        observer = self.observer = Observer(lambda: ctx.env.now, self.rec, tuple(scenario.faults),
                                            s.clients)
        db = self.db = Database(ctx, observer)
        judge = Facts(ctx, db, observer).judge
        redis = self.redis = Redis(ctx, db, observer)
        net = self.net = Network(ctx, db, observer)
        sessions = Sessions(ctx, net, db, observer)
        redis.judge = net.judge = sessions.judge = judge
        redis.sessions = net.sessions = db.sessions = sessions
        self.replicas = [Replica(ctx, i, net=net, db=db, redis=redis, shell=sessions,
                                 interest=redis.interest, judge=judge)
                         for i in range(s.replicas)]
        net.replicas = self.replicas
        for replica in self.replicas:  # subscribed before the first client connects
            replica.link.try_connect()
        tabs = Clients(ctx, db, observer)
        tabs.net = net
        tabs.judge = judge
        rng = self.rng
        topics = s.topic_count
        self.clients = [Client(tabs, i, i % topics, rng.uniform(0.0, s.startup))
                        for i in range(s.clients)]
        for c in self.clients:
            redis.topic_clients[c.topic].append(c)
        faults = self.faults = Injector(ctx, clients=self.clients, replicas=self.replicas, net=net,
                                        db=db, redis=redis, observer=observer, judge=judge)
        env = self.env
        env.process(redis.publishers())
        env.process(faults.schedule())
        if s.drop_rate_per_h > 0:
            env.process(faults.background(s.drop_rate_per_h, faults.background_drop))
        if s.sleep_rate_per_h > 0:
            env.process(faults.background(s.sleep_rate_per_h, faults.background_sleep))

    @property
    def client_steps(self) -> int:
        """Inputs the client machines took."""
        return self.ctx.client_steps

    @property
    def session_steps(self) -> int:
        """Inputs the session machines took."""
        return self.ctx.session_steps

    @property
    def subscriber_steps(self) -> int:
        """Inputs the subscriber machines took."""
        return self.ctx.subscriber_steps

    def run(self, progress: Callable[[float], None] | None = None, chunks: int = 100) -> int:
        """Run to the end of the scenario; return the number of SimPy events processed.

        The cyclic garbage collector is paused while the events run (and restored
        after): its full passes walk the whole fleet, so with it on the cost per
        event grows with the fleet. The run makes no lasting reference cycles --
        a session lets go of its stream when it ends, a cancelled query of its
        request -- so reference counting frees what the run drops.
        """
        env = self.env
        step = env.step
        peek = env.peek
        until = self.settings.duration
        events = 0
        t = 0.0
        collecting = gc.isenabled()
        gc.disable()
        try:
            for i in range(1, chunks + 1):
                t = until * i / chunks
                while peek() < t:
                    step()
                    events += 1
                if progress is not None:
                    progress(t)
        finally:
            if collecting:
                gc.enable()
        self._finish(until)
        return events

    def _finish(self, end: float) -> None:
        self.observer.finish(end)
        verdict = self.observer.verdict
        rec = self.rec
        for c in self.clients:
            st = c.state
            in_sync = st.status is _C_CONNECTED and st.rehydration is _R_NONE and verdict[c.idx] == FINE
            rec.counters.append((c.idx, c.topic, c.max_attempts, c.connects, c.mismatch,
                                 st.status.value, in_sync))
