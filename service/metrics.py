"""Prometheus metrics of one server process, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from model.subscriber import Health

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The service's counters and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.open_streams = Gauge("sselab_open_streams", "Streams open on this process", registry=r)
        self.replays = Counter("sselab_replays", "Replay queries by outcome (rows, failed)",
                               ["outcome"], registry=r)
        self.replay_rows = Counter("sselab_replay_rows", "Rows read by replay queries", registry=r)
        self.truncated = Counter("sselab_replay_truncated", "replay-truncated events sent",
                                 ["reason"], registry=r)
        self.replay_failed = Counter("sselab_replay_failed", "replay-failed events sent",
                                     registry=r)
        self.sentinel_round_trips = Counter("sselab_sentinel_round_trips",
                                            "Sentinels that came back", registry=r)
        self.sentinels_sent = Counter("sselab_sentinels_sent", "Sentinels published", registry=r)
        self.subscriber_state = Gauge("sselab_subscriber_state",
                                      "1 for the subscriber's current health state", ["state"],
                                      registry=r)
        self.subscriber_reconnects = Counter("sselab_subscriber_reconnects",
                                             "Times the subscriber link was dialled again",
                                             registry=r)
        self.resyncs = Counter("sselab_stream_resyncs", "Streams told to catch up", registry=r)
        self.head_probes = Counter("sselab_head_probes",
                                   "Head probe rounds run (one head read per topic each)",
                                   registry=r)
        self.probe_catch_ups = Counter("sselab_probe_catch_ups",
                                       "Catch-ups a head probe started (a publish was lost "
                                       "after its commit)", registry=r)
        self.published = Counter("sselab_events_published", "Events committed", registry=r)
        self.publish_bus_errors = Counter("sselab_publish_bus_errors",
                                          "Committed events whose Redis publish failed", registry=r)
        self.sent = Counter("sselab_events_sent", "Events written to streams", registry=r)
        self.heartbeats = Counter("sselab_heartbeats_sent", "Heartbeats written", registry=r)
        self.stream_rejections = Counter("sselab_stream_rejections", "Streams refused",
                                         ["status"], registry=r)
        self.streams_ended = Counter("sselab_streams_ended",
                                     "Streams the server ended, by reason (expired, revoked, "
                                     "slow-consumer, shutdown, resync-failed, ...)", ["reason"],
                                     registry=r)
        self.slow_consumers = Counter("sselab_slow_consumers",
                                      "Streams closed because the client did not keep up "
                                      "(buffer full, or a send timed out)", ["reason"], registry=r)
        self.refused = Counter("sselab_requests_refused",
                               "Requests refused by a cap or an unavailable resource",
                               ["reason", "status"], registry=r)
        self.bus_rejected = Counter("sselab_bus_rejected",
                                    "Bus messages refused (json, schema, range, signature, size, "
                                    "sentinel)", ["reason"], registry=r)
        self.listener_errors = Counter("sselab_bus_listener_errors",
                                       "Live events a local stream failed to take", registry=r)
        self.idempotent_replays = Counter("sselab_idempotent_replays",
                                          "Publishes answered from their Idempotency-Key",
                                          registry=r)
        self.database_up = Gauge("sselab_database_up",
                                 "1 when the last cached Postgres check passed", registry=r)
        self.fanout_latency = Histogram(
            "sselab_fanout_seconds", "Publish commit to stream write, seconds",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r)
        self.set_health(Health.STARTING)

    def set_health(self, health: Health | str) -> None:
        """Mark ``health`` as the subscriber's one current state."""
        current = health.value if isinstance(health, Health) else health
        for state in [h.value for h in Health] + ["unmonitored"]:
            self.subscriber_state.labels(state=state).set(1.0 if state == current else 0.0)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
