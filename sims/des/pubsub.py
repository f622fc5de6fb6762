"""Redis pub/sub and the publishers: commits fanned out to the replicas, sentinels.

What it owns. Whether the Redis server is up, the publishers (one Poisson
stream at the summed rate of every topic, the topic drawn uniformly: the same
process as one Poisson publisher per topic), the fan-out of each committed event
to the replicas subscribed to its topic (one ``REDIS_LATENCY_S`` away, in order;
lost on a dropped or silently dead link), and the sentinel round trips a
subscriber machine asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from model import session as sm
from model import subscriber as subm
from sims.des.context import Context
from sims.des.database import Database
from sims.des.observer import FINE, Observer

if TYPE_CHECKING:
    from sims.des.client import Client
    from sims.des.replica import Replica, Sessions

__all__ = ["Redis"]

_P_NEW = sm.Phase.NEW


class Redis:
    """The Redis server, its pub/sub fan-out, and the publishers that commit and publish."""

    def __init__(self, ctx: Context, db: Database, observer: Observer) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.rec = ctx.rec
        self.db = db
        self.verdict = observer.verdict
        self.up = True
        self.lost_publishes = 0  #: publishes still to be lost after their commit
        topics = ctx.settings.topic_count
        #: per topic, the replicas subscribed to it (with a stream of that topic), in order
        self.interest: list[list[Replica]] = [[] for _ in range(topics)]
        self.topic_clients: list[list[Client]] = [[] for _ in range(topics)]  #: set when wired
        self.sessions: Sessions  #: set when the fleet is wired
        self.judge: Callable[[Client], None]  #: set when the fleet is wired

    def publishers(self) -> Generator[Any, Any, None]:
        """The publishers' process: Poisson commits, each on a uniformly drawn topic."""
        s = self.ctx.settings
        topics = s.topic_count
        rate = s.publish_rate * topics
        if rate <= 0:
            return
        env = self.env
        rng = self.ctx.rng
        while True:
            yield env.timeout(rng.expovariate(rate))
            self.publish(int(rng.random() * topics))

    def publish(self, topic: int) -> None:
        """Commit an event to ``topic`` and publish it on Redis."""
        seq = self.db.commit(topic)
        rec = self.rec
        rec.publishes += 1
        sent: int = 0  # bit mask of replicas the message is on its way to
        if self.lost_publishes:  # redis.publish_lost: committed, never published
            self.lost_publishes -= 1
            rec.lost_messages += 1
        elif self.up:
            latency = self.ctx.redis_latency
            for replica in self.interest[topic]:
                link = replica.link
                if not link.connected:
                    continue
                if link.dead:
                    rec.lost_messages += 1
                    continue
                replica.inflight.append((topic, seq))
                self.env.timeout(latency, replica).callbacks.append(self._deliver)
                sent |= 1 << replica.idx
        verdict = self.verdict
        judge = self.judge
        for c in self.topic_clients[topic]:
            conn = c.conn
            if verdict[c.idx] == FINE and conn is not None:
                session = conn.session
                if session is not None and not session.closed and sent >> session.replica.idx & 1:
                    continue  # one more missing, one more on its way: nothing changes
            judge(c)

    def _deliver(self, ev: Any) -> None:
        replica: Replica = ev.value
        topic, seq = replica.inflight.popleft()
        subs = replica.by_topic.get(topic)
        link = replica.link
        if not link.connected or link.dead:
            self.rec.lost_messages += 1
            if subs:
                for session in list(subs.values()):
                    self.judge(session.client)
            return
        if not subs:
            return
        now = self.env.now
        feed = self.sessions.feed
        for session in list(subs.values()) if len(subs) > 1 else subs.values():
            if session.closed:
                continue
            if session.state.phase is _P_NEW:
                session.pending.append(seq)
            else:
                feed(session, sm.LiveEvent(now=now, seq=seq))

    def sentinel(self, replica: Replica, token: int) -> None:
        """PublishSentinel: a round trip through Redis to the replica's own channel."""
        link = replica.link
        if not self.up or not link.connected or link.dead:
            return  # lost; the sentinel timeout will tell
        gen = replica.gen
        env = self.env
        ev = env.timeout(2 * self.ctx.redis_latency)

        def back(_e: Any) -> None:
            if gen == replica.gen and link.connected and not link.dead:
                replica.subscriber(subm.SentinelReceived(now=env.now, token=token))

        ev.callbacks.append(back)
