"""Service configuration: every knob is an environment variable with a documented default.

The README's "Configuration" section lists every variable with its default and
meaning; :meth:`Settings.from_env` is the one place that reads them. Production
defaults are safe: there is no built-in key (``SSELAB_SECRET`` of at least 32
bytes is required unless ``SSELAB_INSECURE_DEV_KEY=1``, which logs a warning on
every start), every buffer and cap is bounded, and pool waits are short.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping

from model.client import ClientConfig
from model.fixes import Fixes, UnknownFixError
from model.session import SessionConfig
from model.subscriber import SubscriberConfig
from service.auth import MIN_SECRET_BYTES

__all__ = ["DEV_SECRET", "ConfigError", "Settings", "cli_secret", "resolve_secret"]

#: The key used only with SSELAB_INSECURE_DEV_KEY=1: published here, so never in production.
DEV_SECRET = "sselab-development-secret-change-me"
#: What a refused or missing key's error says to do.
_SECRET_HINT = ("set SSELAB_SECRET to a random key of at least 32 bytes (e.g. `python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'`); on a laptop only, "
                "SSELAB_INSECURE_DEV_KEY=1 uses a published development key")


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


def _gc_threshold(text: str) -> tuple[int, ...]:
    """``SSELAB_GC_THRESHOLD``: three counts as for ``gc.set_threshold``, or ``off``."""
    if text.strip().lower() in ("", "off", "default"):
        return ()
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) != 3 or counts[0] < 1 or min(counts) < 0:
        raise ConfigError(f"SSELAB_GC_THRESHOLD={text!r}: expected three counts as for "
                          "gc.set_threshold, e.g. 10000,10,10, or 'off' for CPython's own")
    return counts


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = _get(env, name, "").lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={text!r}: expected one of 1, true, yes, on, 0, false, no, off")


def resolve_secret(env: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The signing key from ``env`` and whether it is the insecure development key.

    Raises ConfigError when SSELAB_SECRET is missing (and the development switch is
    off) or shorter than 32 bytes.
    """
    env = os.environ if env is None else env
    secret = env.get("SSELAB_SECRET", "").strip()
    if not secret:
        if _flag(env, "SSELAB_INSECURE_DEV_KEY", False):
            return DEV_SECRET, True
        raise ConfigError(f"SSELAB_SECRET is not set: {_SECRET_HINT}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"SSELAB_SECRET is {len(secret.encode())} bytes, expected at least "
                          f"{MIN_SECRET_BYTES}: {_SECRET_HINT}")
    return secret, False


def cli_secret(command: str) -> str | None:
    """The key for a command line tool; None after printing why there is none (exit 2).

    With the development switch it warns on stderr on every run, as the server does.
    """
    import sys

    try:
        secret, insecure = resolve_secret()
    except ConfigError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None
    if insecure:
        print(f"{command}: warning: SSELAB_INSECURE_DEV_KEY is set; signing with the published "
              "development key (never in production)", file=sys.stderr)
    return secret


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service reads from its environment."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    subscriber_redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    db_schema: str = "sselab"
    namespace: str = "sselab"
    secret: str = ""
    replay_limit: int = 1000
    heartbeat_s: float = 5.0
    sentinel_interval_s: float = 30.0
    sentinel_timeout_s: float = 5.0
    probe_s: float = 5.0
    fixes: Fixes = Fixes()
    replay_timeout_ms: int = 5000
    snapshot_limit: int = 100
    max_event_bytes: int = 65536
    redis_retry_s: float = 0.5
    db_pool_max: int = 10
    retention_s: float = 0.0
    replica: str = "replica"
    log_level: str = "INFO"
    insecure_dev_key: bool = False
    max_token_ttl_s: float = 86400.0
    ticket_ttl_s: float = 60.0
    query_tokens: bool = False
    reauth_interval_s: float = 30.0
    revocation_cache_s: float = 1.0
    stream_buffer_frames: int = 2000
    stream_buffer_bytes: int = 4 * 1024 * 1024
    send_timeout_s: float = 10.0
    max_streams: int = 10000
    max_streams_per_token: int = 20
    max_streams_per_address: int = 1000
    retry_after_s: int = 2
    db_acquire_timeout_s: float = 2.0
    db_max_waiting: int = 1000
    db_check_s: float = 2.0
    bus_signing: bool = True
    max_json_depth: int = 32
    max_json_nodes: int = 10000
    snapshot_max_bytes: int = 1024 * 1024
    replay_max_bytes: int = 2 * 1024 * 1024
    idempotency_ttl_s: float = 86400.0
    debug: bool = False
    metrics_enabled: bool = True
    metrics_token: str = ""
    docs_enabled: bool = True
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    retry_ms: int = 3000
    shutdown_grace_s: float = 1.0
    #: CPython's collector thresholds for this process; () leaves them as they are.
    gc_threshold: tuple[int, ...] = (10000, 10, 10)

    def __post_init__(self) -> None:
        if not self.insecure_dev_key and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"the signing key is shorter than {MIN_SECRET_BYTES} bytes: "
                              f"{_SECRET_HINT}")
        if self.stream_buffer_frames <= self.replay_limit + 16:
            raise ConfigError(
                f"SSELAB_STREAM_BUFFER_FRAMES={self.stream_buffer_frames}: expected more than "
                f"SSELAB_REPLAY_LIMIT + 16 = {self.replay_limit + 16} (a replay is buffered whole)")
        if self.stream_buffer_bytes < self.replay_max_bytes + 2 * self.max_event_bytes:
            raise ConfigError(
                f"SSELAB_STREAM_BUFFER_BYTES={self.stream_buffer_bytes}: expected at least "
                "SSELAB_REPLAY_MAX_BYTES + 2 x SSELAB_MAX_EVENT_BYTES = "
                f"{self.replay_max_bytes + 2 * self.max_event_bytes}")
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("http://", "https://")) \
                    or origin.count("/") != 2:
                raise ConfigError(f"SSELAB_CORS_ORIGINS: {origin!r} is not an exact origin; "
                                  "expected scheme://host[:port], e.g. https://app.example.com")

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
        secret, insecure = resolve_secret(env)
        # Random, not host-pid: the name reaches Redis client lists, not health bodies.
        default_replica = f"replica-{secrets.token_hex(4)}"

        def num(name: str, default: float, minimum: float = 0.0) -> float:
            return _number(env, name, default, minimum=minimum)

        def whole(name: str, default: int, minimum: int = 1) -> int:
            return int(_number(env, name, default, minimum=minimum, integer=True))

        origins = tuple(o.strip().rstrip("/") for o in _get(env, "SSELAB_CORS_ORIGINS", "")
                        .split(",") if o.strip())
        return cls(
            redis_url=redis_url,
            subscriber_redis_url=_get(env, "SSELAB_SUBSCRIBER_REDIS_URL", redis_url),
            database_url=_get(env, "SSELAB_DATABASE_URL", cls.database_url),
            db_schema=schema,
            namespace=_get(env, "SSELAB_NAMESPACE", cls.namespace),
            secret=secret,
            insecure_dev_key=insecure,
            replay_limit=int(_number(env, "SSELAB_REPLAY_LIMIT", 1000, minimum=1, integer=True)),
            heartbeat_s=_number(env, "SSELAB_HEARTBEAT_S", 5.0, minimum=0.01),
            sentinel_interval_s=_number(env, "SSELAB_SENTINEL_INTERVAL_S", 30.0, minimum=0.01),
            sentinel_timeout_s=_number(env, "SSELAB_SENTINEL_TIMEOUT_S", 5.0, minimum=0.01),
            probe_s=_number(env, "SSELAB_PROBE_S", 5.0, minimum=0.05),
            fixes=fixes,
            replay_timeout_ms=int(_number(env, "SSELAB_REPLAY_TIMEOUT_MS", 5000, minimum=1,
                                          integer=True)),
            snapshot_limit=int(_number(env, "SSELAB_SNAPSHOT_LIMIT", 100, minimum=1, integer=True)),
            max_event_bytes=int(_number(env, "SSELAB_MAX_EVENT_BYTES", 65536, minimum=64,
                                        integer=True)),
            redis_retry_s=_number(env, "SSELAB_REDIS_RETRY_S", 0.5, minimum=0.0),
            db_pool_max=whole("SSELAB_DB_POOL_MAX", 10, 2),
            retention_s=_number(env, "SSELAB_RETENTION_S", 0.0, minimum=0.0),
            replica=_get(env, "SSELAB_REPLICA", default_replica),
            log_level=_get(env, "SSELAB_LOG_LEVEL", "INFO").upper(),
            max_token_ttl_s=num("SSELAB_MAX_TOKEN_TTL_S", 86400.0, 1.0),
            ticket_ttl_s=num("SSELAB_TICKET_TTL_S", 60.0, 1.0),
            query_tokens=_flag(env, "SSELAB_QUERY_TOKENS", False),
            reauth_interval_s=num("SSELAB_REAUTH_INTERVAL_S", 30.0, 0.1),
            revocation_cache_s=num("SSELAB_REVOCATION_CACHE_S", 1.0, 0.0),
            stream_buffer_frames=whole("SSELAB_STREAM_BUFFER_FRAMES", 2000),
            stream_buffer_bytes=whole("SSELAB_STREAM_BUFFER_BYTES", 4 * 1024 * 1024),
            send_timeout_s=num("SSELAB_SEND_TIMEOUT_S", 10.0, 0.1),
            max_streams=whole("SSELAB_MAX_STREAMS", 10000),
            max_streams_per_token=whole("SSELAB_MAX_STREAMS_PER_TOKEN", 20),
            max_streams_per_address=whole("SSELAB_MAX_STREAMS_PER_ADDRESS", 1000),
            retry_after_s=whole("SSELAB_RETRY_AFTER_S", 2),
            db_acquire_timeout_s=num("SSELAB_DB_ACQUIRE_TIMEOUT_S", 2.0, 0.05),
            db_max_waiting=whole("SSELAB_DB_MAX_WAITING", 1000),
            db_check_s=num("SSELAB_DB_CHECK_S", 2.0, 0.1),
            bus_signing=_flag(env, "SSELAB_BUS_SIGNING", True),
            max_json_depth=whole("SSELAB_MAX_JSON_DEPTH", 32),
            max_json_nodes=whole("SSELAB_MAX_JSON_NODES", 10000),
            snapshot_max_bytes=whole("SSELAB_SNAPSHOT_MAX_BYTES", 1024 * 1024, 1024),
            replay_max_bytes=whole("SSELAB_REPLAY_MAX_BYTES", 2 * 1024 * 1024, 1024),
            idempotency_ttl_s=num("SSELAB_IDEMPOTENCY_TTL_S", 86400.0, 1.0),
            debug=_flag(env, "SSELAB_DEBUG", False),
            metrics_enabled=_flag(env, "SSELAB_METRICS", True),
            metrics_token=_get(env, "SSELAB_METRICS_TOKEN", ""),
            docs_enabled=_flag(env, "SSELAB_DOCS", True),
            cors_origins=origins,
            cors_credentials=_flag(env, "SSELAB_CORS_CREDENTIALS", False),
            retry_ms=whole("SSELAB_RETRY_MS", 3000, 100),
            shutdown_grace_s=num("SSELAB_SHUTDOWN_GRACE_S", 1.0, 0.0),
            gc_threshold=_gc_threshold(_get(env, "SSELAB_GC_THRESHOLD", "10000,10,10")),
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
