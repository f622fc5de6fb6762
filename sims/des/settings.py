"""The knobs of a simulated fleet, each a CAPITALISED default with its unit.

Times are seconds of simulated time, rates are per second unless the name says
otherwise. :class:`Settings` bundles one value of every knob plus the seed and
the fixes; a scenario file sets them by their lower-case names (``clients =
500``), and :func:`settings_from_mapping` checks every value, naming the file and
the key and saying what is accepted.

The machine timings (heartbeat, backoff, replay limit, sentinel) are the
seed's, taken from the ``model`` configs, so the simulation runs the very
numbers the service runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

from model.backoff import SEED_POLICY, BackoffPolicy, delay, parse_policy
from model.client import ClientConfig
from model.fixes import Fixes, UnknownFixError
from model.session import SessionConfig
from model.subscriber import SubscriberConfig

__all__ = [
    "SETTINGS",
    "ScenarioError",
    "SettingInfo",
    "Settings",
    "settings_from_mapping",
]

# ---------------------------------------------------------------- the fleet
CLIENTS = 1000  #: browser tabs, one event stream each
REPLICAS = 4  #: API replicas behind the load balancer
DURATION_S = 3600.0  #: simulated time, seconds
SEED = 1  #: seed of the one random generator
TOPICS = 0  #: topics (0: one per client, the user's own stream)
PUBLISH_RATE_HZ = 1.0 / 60.0  #: events per second per topic (Poisson)
STARTUP_S = 60.0  #: clients start uniformly over the first STARTUP_S seconds

# ---------------------------------------------------------------- the network
NETWORK_LATENCY_S = 0.05  #: one way, client <-> load balancer <-> replica, seconds
CONNECT_TIMEOUT_S = 10.0  #: the HTTP client gives an unanswered attempt up after this, seconds
DROP_RATE_PER_H = 0.0  #: background network drops per client per hour
SLEEP_RATE_PER_H = 0.0  #: background laptop sleeps per client per hour
SLEEP_MEDIAN_S = 600.0  #: median of a background sleep (log-normal), seconds
SLEEP_SIGMA = 1.0  #: shape of the log-normal sleep duration
USER_RETRY_S = 120.0  #: mean time before a user presses Retry on 'failed', seconds

# ---------------------------------------------------------------- Redis
REDIS_LATENCY_S = 0.002  #: publish -> subscriber delivery, seconds
REDIS_RECONNECT_S = 1.0  #: a link's retry interval after it lost the server, seconds

# ---------------------------------------------------------------- Postgres
POOL_SIZE = 10  #: connections in each replica's pool
QUERY_BASE_S = 0.002  #: fixed cost of a query, seconds
QUERY_ROW_S = 0.00002  #: cost per row read, seconds
QUERY_TIMEOUT_S = 5.0  #: pool wait plus statement time before a query fails, seconds
SNAPSHOT_ROWS = 200  #: rows a re-hydration snapshot reads
RETENTION_ROWS = 100_000  #: events kept per topic; older ones are pruned

# ---------------------------------------------------------------- replicas
REPLICA_BOOT_S = 15.0  #: a restarting replica is down this long, seconds

# ---------------------------------------------------------------- the machines (the seed's)
HEARTBEAT_INTERVAL_S = 5.0  #: server heartbeat period, seconds
HEARTBEAT_TIMEOUT_S = 10.0  #: client gives a silent stream up after this, seconds
HEARTBEAT_CHECK_S = 1.0  #: heartbeat check period with heartbeat-guard off, seconds
MAX_ATTEMPTS = 50  #: reconnect attempts before 'failed'
REPLAY_LIMIT = 1000  #: rows a replay may send before it is truncated
SENTINEL_INTERVAL_S = 30.0  #: sentinel publish period, seconds
SENTINEL_TIMEOUT_S = 5.0  #: a sentinel must come back within this, seconds
PROBE_INTERVAL_S = 5.0  #: head probe period (``SSELAB_PROBE_S`` in the service), seconds


class ScenarioError(ValueError):
    """A scenario or setting that cannot be used; the message names where and why."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """One value of every knob of a run, plus its seed and fixes."""

    clients: int = CLIENTS
    replicas: int = REPLICAS
    duration: float = DURATION_S
    seed: int = SEED
    topics: int = TOPICS
    publish_rate: float = PUBLISH_RATE_HZ
    startup: float = STARTUP_S
    network_latency: float = NETWORK_LATENCY_S
    connect_timeout: float = CONNECT_TIMEOUT_S
    drop_rate_per_h: float = DROP_RATE_PER_H
    sleep_rate_per_h: float = SLEEP_RATE_PER_H
    sleep_median: float = SLEEP_MEDIAN_S
    sleep_sigma: float = SLEEP_SIGMA
    user_retry: float = USER_RETRY_S
    redis_latency: float = REDIS_LATENCY_S
    redis_reconnect: float = REDIS_RECONNECT_S
    pool_size: int = POOL_SIZE
    query_base: float = QUERY_BASE_S
    query_row: float = QUERY_ROW_S
    query_timeout: float = QUERY_TIMEOUT_S
    snapshot_rows: int = SNAPSHOT_ROWS
    retention_rows: int = RETENTION_ROWS
    replica_boot: float = REPLICA_BOOT_S
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S
    heartbeat_check: float = HEARTBEAT_CHECK_S
    max_attempts: int = MAX_ATTEMPTS
    policy: BackoffPolicy = SEED_POLICY
    backoff_cap: float | None = None  #: None: the policy's own cap
    replay_limit: int = REPLAY_LIMIT
    sentinel_interval: float = SENTINEL_INTERVAL_S
    sentinel_timeout: float = SENTINEL_TIMEOUT_S
    probe_interval: float = PROBE_INTERVAL_S
    fixes: Fixes = Fixes()

    def __post_init__(self) -> None:
        for name, info in SETTINGS.items():
            value = getattr(self, name)
            if value is None and info.optional:
                continue
            problem = info.problem(value)
            if problem:
                raise ScenarioError(f"setting {name}: {problem}")
        if self.startup >= self.duration and self.duration > 0:
            raise ScenarioError(
                f"setting startup: {self.startup:g} s must be shorter than the run ({self.duration:g} s)")
        if self.backoff_cap is not None and self.backoff_cap < self.policy.base:
            raise ScenarioError(f"setting backoff_cap: {self.backoff_cap:g} s is below the policy's "
                                f"base delay {self.policy.base:g} s")

    @property
    def topic_count(self) -> int:
        """Number of topics: ``topics``, or one per client when it is 0."""
        return self.topics or self.clients

    @property
    def backoff(self) -> BackoffPolicy:
        """The backoff policy with ``backoff_cap`` applied."""
        if self.backoff_cap is None:
            return self.policy
        return dataclasses.replace(self.policy, cap=self.backoff_cap)

    def client_config(self) -> ClientConfig:
        """The client machine's config for these settings."""
        return ClientConfig(heartbeat_timeout=self.heartbeat_timeout,
                            heartbeat_check_interval=self.heartbeat_check,
                            max_attempts=self.max_attempts, policy=self.backoff, fixes=self.fixes)

    def session_config(self) -> SessionConfig:
        """The session machine's config for these settings."""
        return SessionConfig(replay_limit=self.replay_limit,
                             heartbeat_interval=self.heartbeat_interval, fixes=self.fixes)

    def subscriber_config(self) -> SubscriberConfig:
        """The subscriber machine's config for these settings."""
        return SubscriberConfig(sentinel_interval=self.sentinel_interval,
                                sentinel_timeout=self.sentinel_timeout, fixes=self.fixes)

    @property
    def detection_bound(self) -> float:
        """How long a silent death may go unnoticed: the sentinel's interval plus timeout."""
        return self.subscriber_config().detection_bound

    @property
    def reconnect_allowance(self) -> float:
        """The time one reconnect and its catch-up may take, seconds.

        The longest first backoff delay, a connect round trip, a head read and a
        replay (each at most the query timeout), and the frames' trip back.
        """
        first_wait = max(delay(self.backoff, 1, u) for u in (0.0, 0.999999))
        return (first_wait + 4 * self.network_latency + 2 * self.query_timeout
                + 2 * self.redis_latency + self.redis_reconnect)


class SettingInfo(NamedTuple):
    """A setting's type, its lowest value, and what it means (with its unit)."""

    kind: type
    minimum: float
    doc: str
    strict: bool = False  #: the minimum itself is not allowed
    optional: bool = False  #: None is allowed

    def problem(self, value: Any) -> str:
        """Why ``value`` is not acceptable, or '' when it is."""
        if self.kind is BackoffPolicy or self.kind is Fixes:
            return "" if isinstance(value, self.kind) else f"expected a {self.kind.__name__}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected {self.describe()}, got {value!r}"
        if self.kind is int and not float(value).is_integer():
            return f"expected {self.describe()}, got {value!r}"
        if value != value or value in (float("inf"), float("-inf")):
            return f"expected {self.describe()}, got {value!r}"
        if value < self.minimum or (self.strict and value == self.minimum):
            return f"expected {self.describe()}, got {value!r}"
        return ""

    def describe(self) -> str:
        """What the setting accepts, in words."""
        noun = "a whole number" if self.kind is int else "a number"
        op = ">" if self.strict else ">="
        return f"{noun} {op} {self.minimum:g}"


#: Every setting a scenario file may give, by name.
SETTINGS: dict[str, SettingInfo] = {
    "clients": SettingInfo(int, 1, "browser tabs, one stream each"),
    "replicas": SettingInfo(int, 1, "API replicas behind the load balancer"),
    "duration": SettingInfo(float, 0, "simulated time, seconds", strict=True),
    "seed": SettingInfo(int, 0, "seed of the one random generator"),
    "topics": SettingInfo(int, 0, "topics (0: one per client)"),
    "publish_rate": SettingInfo(float, 0, "events per second per topic (Poisson)"),
    "startup": SettingInfo(float, 0, "clients start uniformly over the first this many seconds"),
    "network_latency": SettingInfo(float, 0, "one-way client <-> replica latency, seconds"),
    "connect_timeout": SettingInfo(float, 0, "HTTP client's limit for an unanswered attempt, "
                                   "seconds", strict=True),
    "drop_rate_per_h": SettingInfo(float, 0, "background network drops per client per hour"),
    "sleep_rate_per_h": SettingInfo(float, 0, "background laptop sleeps per client per hour"),
    "sleep_median": SettingInfo(float, 0, "median background sleep, seconds", strict=True),
    "sleep_sigma": SettingInfo(float, 0, "shape of the log-normal sleep duration"),
    "user_retry": SettingInfo(float, 0, "mean wait before a user presses Retry, seconds",
                              strict=True),
    "redis_latency": SettingInfo(float, 0, "publish -> subscriber delivery, seconds"),
    "redis_reconnect": SettingInfo(float, 0, "a Redis link's retry interval, seconds", strict=True),
    "pool_size": SettingInfo(int, 1, "Postgres connections per replica"),
    "query_base": SettingInfo(float, 0, "fixed cost of a query, seconds"),
    "query_row": SettingInfo(float, 0, "cost per row read, seconds"),
    "query_timeout": SettingInfo(float, 0, "pool wait + statement time limit, seconds",
                                 strict=True),
    "snapshot_rows": SettingInfo(int, 0, "rows a re-hydration snapshot reads"),
    "retention_rows": SettingInfo(int, 1, "events kept per topic"),
    "replica_boot": SettingInfo(float, 0, "how long a restarting replica is down, seconds"),
    "heartbeat_interval": SettingInfo(float, 0, "server heartbeat period, seconds", strict=True),
    "heartbeat_timeout": SettingInfo(float, 0, "client heartbeat threshold, seconds", strict=True),
    "heartbeat_check": SettingInfo(float, 0, "check period with heartbeat-guard off, seconds",
                                   strict=True),
    "max_attempts": SettingInfo(int, 1, "reconnect attempts before 'failed'"),
    "policy": SettingInfo(BackoffPolicy, 0, "backoff policy: exponential, full, equal, "
                          "decorrelated, grpc or none"),
    "backoff_cap": SettingInfo(float, 0, "backoff cap, seconds", optional=True),
    "replay_limit": SettingInfo(int, 1, "rows a replay may send before it is truncated"),
    "sentinel_interval": SettingInfo(float, 0, "sentinel period, seconds", strict=True),
    "sentinel_timeout": SettingInfo(float, 0, "sentinel round-trip limit, seconds", strict=True),
    "probe_interval": SettingInfo(float, 0, "head probe period (off with head-probe off), "
                                  "seconds", strict=True),
    "fixes": SettingInfo(Fixes, 0, "fixes switched on"),
}


def settings_from_mapping(data: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Check a mapping of setting names to values; return the typed overrides.

    ``policy`` is a policy name; ``without`` (a list of fix names or F1..F5)
    switches fixes off. Raise :class:`ScenarioError` naming ``where``, the key and
    what it accepts.
    """
    out: dict[str, Any] = {}
    for key, raw in data.items():
        if key == "without":
            names = [raw] if isinstance(raw, str) else raw
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ScenarioError(f"{where}: without must be a list of fix names, got {raw!r}")
            try:
                out["fixes"] = Fixes().without(*names)
            except UnknownFixError as exc:
                raise ScenarioError(f"{where}: without: {exc}") from None
            continue
        info = SETTINGS.get(key)
        if info is None or key == "fixes":
            accepted = ", ".join([*(k for k in SETTINGS if k != "fixes"), "without"])
            raise ScenarioError(f"{where}: unknown setting {key!r}; accepted: {accepted}")
        if key == "policy":
            if not isinstance(raw, str):
                raise ScenarioError(f"{where}: policy must be a name, got {raw!r}")
            try:
                out[key] = parse_policy(raw)
            except ValueError as exc:
                raise ScenarioError(f"{where}: policy: {exc}") from None
            continue
        problem = info.problem(raw)
        if problem:
            raise ScenarioError(f"{where}: {key} ({info.doc}): {problem}")
        out[key] = int(raw) if info.kind is int else float(raw)
    return out
