"""A live stack for tests and ``sselab conform``: reachability, server processes, fault helpers.

Everything here needs a real Redis (``SSELAB_REDIS_URL``, default
127.0.0.1:6379) and a real PostgreSQL (``SSELAB_DATABASE_URL``, default
127.0.0.1:5432, database ``test``). :func:`unreachable` says what is missing.
Each run uses its own Postgres schema and Redis channel namespace
(:func:`new_namespace`), dropped with :func:`drop_schema`. A :class:`Server` is
a ``uvicorn --factory service.app:create_app`` subprocess on a free loopback
port: it can be killed for real, and no process-global state leaks between
servers. Nothing here imports from ``tests/``, so an installed package can use it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from service.auth import issue_token

__all__ = [
    "DATABASE_URL", "FAST", "PUBLISHER", "REDIS_URL", "SECRET", "Server", "drop_schema",
    "free_port", "kill_redis_clients", "new_namespace", "publish", "redis_client", "token",
    "unreachable", "wait_for",
]

REDIS_URL = os.environ.get("SSELAB_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("SSELAB_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "integration-secret-" + "x" * 24
#: The directory that holds the ``service`` package (a checkout or site-packages).
_PACKAGES = Path(__file__).resolve().parents[2]

#: Scaled-down timings shared by the test servers (seconds).
FAST = {
    "SSELAB_HEARTBEAT_S": "0.3",
    "SSELAB_SENTINEL_INTERVAL_S": "1.0",
    "SSELAB_SENTINEL_TIMEOUT_S": "0.5",
    "SSELAB_REDIS_RETRY_S": "0.3",
    "SSELAB_LOG_LEVEL": "WARNING",
}


def unreachable() -> str | None:
    """Why the real Redis or Postgres cannot be used, with how to start them; None when both answer."""
    problems = []
    try:
        probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            probe.ping()
        finally:
            probe.close()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL} ({exc.__class__.__name__}: {exc}); start it with "
                        "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
                        "--appendonly no`")
    try:
        psycopg.connect(DATABASE_URL, connect_timeout=3).close()
    except Exception as exc:
        problems.append(f"PostgreSQL at {DATABASE_URL} ({exc.__class__.__name__}); start it with "
                        "`service postgresql start` (trust auth for user postgres, database test)")
    if not problems:
        return None
    return ("the integration tests need a real Redis and PostgreSQL; unreachable: "
            + "; ".join(problems))


def new_namespace() -> str:
    """A fresh Postgres schema / Redis namespace name (``sselab_it_<random>``)."""
    return f"sselab_it_{secrets.token_hex(4)}"


def drop_schema(namespace: str) -> None:
    """Drop a run's Postgres schema (its tables, sequences and rows)."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One service process on a loopback port."""

    def __init__(self, namespace: str, log_dir: Path, env: dict[str, str], *,
                 port: int | None = None, access_log: bool = False) -> None:
        self.port = port or free_port()
        self.access_log = access_log
        self.url = f"http://127.0.0.1:{self.port}"
        self.replica = f"r{secrets.token_hex(3)}"
        path = os.pathsep.join(p for p in (str(_PACKAGES), os.environ.get("PYTHONPATH")) if p)
        self.env = {**os.environ, **FAST, "SSELAB_DB_SCHEMA": namespace,
                    "SSELAB_NAMESPACE": namespace, "SSELAB_SECRET": SECRET,
                    "SSELAB_REDIS_URL": REDIS_URL, "SSELAB_DATABASE_URL": DATABASE_URL,
                    "SSELAB_REPLICA": self.replica, "PYTHONPATH": path, **env}
        self.log_dir = log_dir
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.subscriber_name = f"sselab-sub-{namespace}-{self.replica}"
        self.publisher_name = f"sselab-pub-{namespace}-{self.replica}"

    def start(self) -> Server:
        """Start the process and wait (bounded) until it answers /health/live."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port),
                 "--access-log" if self.access_log else "--no-access-log",
                 "--timeout-graceful-shutdown", "1"],
                cwd=self.log_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process as an operator would (SIGTERM: a graceful shutdown); its exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(10)
        self.proc = None
        return code

    def kill(self) -> None:
        """Kill the process at once (a crash: open streams break)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 if absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                       if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def ready(self) -> tuple[int, dict[str, Any]]:
        """/health/ready's status and body."""
        response = httpx.get(f"{self.url}/health/ready", timeout=5)
        return response.status_code, response.json()


def token(user: str, *, role: str = "user", ttl: float = 600.0,
          topics: tuple[str, ...] = ("*",)) -> str:
    """A token signed with the test servers' secret (a publisher's scoped to ``topics``)."""
    if role == "publisher":
        return issue_token(SECRET, user, role="publisher", ttl=ttl, topics=topics)
    return issue_token(SECRET, user, role="user", ttl=ttl)


PUBLISHER = token("publisher", role="publisher", ttl=3600)


def publish(server: Server, user: str, n: int = 1, type_: str = "note") -> list[str]:
    """Publish ``n`` events to ``user`` through ``POST /events``; return their ids."""
    ids = []
    with httpx.Client(timeout=10) as http:
        for i in range(n):
            response = http.post(f"{server.url}/events",
                                 json={"user": user, "type": type_, "data": {"i": i}},
                                 headers={"Authorization": f"Bearer {PUBLISHER}"})
            if response.status_code != 201:
                raise AssertionError(f"publish: HTTP {response.status_code}: {response.text}")
            ids.append(response.json()["id"])
    return ids


def redis_client() -> redis.Redis:
    """A plain Redis client for fault injection."""
    return redis.Redis.from_url(REDIS_URL)


def kill_redis_clients(*names: str, pubsub_only: bool = False) -> int:
    """``CLIENT KILL`` the connections with these client names; return how many."""
    r = redis_client()
    killed = 0
    for info in r.client_list():
        if info.get("name") in names:
            args = ["CLIENT", "KILL", "ID", info["id"]]
            if pubsub_only:
                args += ["TYPE", "pubsub"]
            killed += int(r.execute_command(*args))  # type: ignore[no-untyped-call]
    r.close()
    return killed


async def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(interval)
    return True
