"""Service configuration: every knob is an environment variable with a documented default.

=============================  ==========================================  ==========================
variable                       meaning                                     default
=============================  ==========================================  ==========================
SSELAB_REDIS_URL               Redis for publishing and sentinels          redis://127.0.0.1:6379/0
SSELAB_SUBSCRIBER_REDIS_URL    Redis for the pub/sub subscriber link       SSELAB_REDIS_URL
SSELAB_DATABASE_URL            PostgreSQL (events, topics)                 postgresql://postgres@127.0.0.1:5432/test
SSELAB_DB_SCHEMA               schema holding the tables                   sselab
SSELAB_NAMESPACE               prefix of every Redis channel               sselab
SSELAB_SECRET                  HS256 key for tokens                        an insecure development key
SSELAB_REPLAY_LIMIT            rows a replay may serve                     1000
SSELAB_HEARTBEAT_S             server heartbeat interval, seconds          5
SSELAB_SENTINEL_INTERVAL_S     sentinel period, seconds                    30
SSELAB_SENTINEL_TIMEOUT_S      sentinel round-trip deadline, seconds       5
SSELAB_FIXES                   fixes switched on (``all,-F3`` ...)         all
SSELAB_REPLAY_TIMEOUT_MS       statement_timeout of a replay query         5000
SSELAB_SNAPSHOT_LIMIT          recent events in ``GET /snapshot``          100
SSELAB_MAX_EVENT_BYTES         largest ``POST /events`` body               65536
SSELAB_REDIS_RETRY_S           wait before the subscriber link redials     0.5
SSELAB_DB_POOL_MAX             Postgres connections per pool (2 pools)     20
SSELAB_RETENTION_S             keep events this long (0: forever)          0
SSELAB_REPLICA                 this replica's name (sentinel channel)      host-pid-random
SSELAB_LOG_LEVEL               log level of the JSON logs                  INFO
=============================  ==========================================  ==========================
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections.abc import Mapping

from model.client import ClientConfig
from model.fixes import Fixes, UnknownFixError
from model.session import SessionConfig
from model.subscriber import SubscriberConfig

__all__ = ["DEV_SECRET", "ConfigError", "Settings"]

#: The key used when SSELAB_SECRET is unset; fine on a laptop, never in production.
DEV_SECRET = "sselab-development-secret-change-me"


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0,
            integer: bool = False) -> float:
    text = _get(env, name, str(default))
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={text!r}: expected {kind}") from None
    if value < minimum:
        raise ConfigError(f"{name}={text!r}: expected a value >= {minimum:g}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service reads from its environment."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    subscriber_redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    db_schema: str = "sselab"
    namespace: str = "sselab"
    secret: str = DEV_SECRET
    replay_limit: int = 1000
    heartbeat_s: float = 5.0
    sentinel_interval_s: float = 30.0
    sentinel_timeout_s: float = 5.0
    fixes: Fixes = Fixes()
    replay_timeout_ms: int = 5000
    snapshot_limit: int = 100
    max_event_bytes: int = 65536
    redis_retry_s: float = 0.5
    db_pool_max: int = 20
    retention_s: float = 0.0
    replica: str = "replica"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        redis_url = _get(env, "SSELAB_REDIS_URL", cls.redis_url)
        schema = _get(env, "SSELAB_DB_SCHEMA", cls.db_schema)
        if not schema.replace("_", "").isalnum() or not schema[0].isalpha():
            raise ConfigError(f"SSELAB_DB_SCHEMA={schema!r}: expected letters, digits and _")
        try:
            fixes = Fixes.parse(_get(env, "SSELAB_FIXES", "all"))
        except UnknownFixError as exc:
            raise ConfigError(f"SSELAB_FIXES: {exc}") from None
        default_replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        return cls(
            redis_url=redis_url,
            subscriber_redis_url=_get(env, "SSELAB_SUBSCRIBER_REDIS_URL", redis_url),
            database_url=_get(env, "SSELAB_DATABASE_URL", cls.database_url),
            db_schema=schema,
            namespace=_get(env, "SSELAB_NAMESPACE", cls.namespace),
            secret=_get(env, "SSELAB_SECRET", DEV_SECRET),
            replay_limit=int(_number(env, "SSELAB_REPLAY_LIMIT", 1000, minimum=1, integer=True)),
            heartbeat_s=_number(env, "SSELAB_HEARTBEAT_S", 5.0, minimum=0.01),
            sentinel_interval_s=_number(env, "SSELAB_SENTINEL_INTERVAL_S", 30.0, minimum=0.01),
            sentinel_timeout_s=_number(env, "SSELAB_SENTINEL_TIMEOUT_S", 5.0, minimum=0.01),
            fixes=fixes,
            replay_timeout_ms=int(_number(env, "SSELAB_REPLAY_TIMEOUT_MS", 5000, minimum=1,
                                          integer=True)),
            snapshot_limit=int(_number(env, "SSELAB_SNAPSHOT_LIMIT", 100, minimum=1, integer=True)),
            max_event_bytes=int(_number(env, "SSELAB_MAX_EVENT_BYTES", 65536, minimum=64,
                                        integer=True)),
            redis_retry_s=_number(env, "SSELAB_REDIS_RETRY_S", 0.5, minimum=0.0),
            db_pool_max=int(_number(env, "SSELAB_DB_POOL_MAX", 20, minimum=2, integer=True)),
            retention_s=_number(env, "SSELAB_RETENTION_S", 0.0, minimum=0.0),
            replica=_get(env, "SSELAB_REPLICA", default_replica),
            log_level=_get(env, "SSELAB_LOG_LEVEL", "INFO").upper(),
        )

    def session_config(self) -> SessionConfig:
        """The per-connection session machine's configuration."""
        return SessionConfig(replay_limit=self.replay_limit, heartbeat_interval=self.heartbeat_s,
                             fixes=self.fixes)

    def subscriber_config(self) -> SubscriberConfig:
        """The per-process subscriber machine's configuration."""
        return SubscriberConfig(sentinel_interval=self.sentinel_interval_s,
                                sentinel_timeout=self.sentinel_timeout_s, fixes=self.fixes)

    def client_config(self, **overrides: object) -> ClientConfig:
        """A client configuration matching this server's heartbeat (timeout = 2 x interval)."""
        base = ClientConfig(heartbeat_timeout=2.0 * self.heartbeat_s, fixes=self.fixes)
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
