"""Real-stack fixtures: Redis and Postgres reachability, servers in subprocesses, helpers.

Every test here needs a real Redis on 127.0.0.1:6379 and a real PostgreSQL on
127.0.0.1:5432 (override with SSELAB_REDIS_URL / SSELAB_DATABASE_URL). Without
them the tests fail with instructions when CI=true, and are skipped otherwise.

Each run uses its own Postgres schema and Redis channel namespace
(``sselab_it_<random>``), dropped at the end, so runs never collide. Servers run
as ``uvicorn --factory service.app:create_app`` subprocesses on free loopback
ports: a subprocess can be killed for real (the "server down" fault), and no
process-global state (sse-starlette's exit flag, metrics) leaks between servers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from service.auth import issue_token

REDIS_URL = os.environ.get("SSELAB_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("SSELAB_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "integration-secret-" + "x" * 24
ROOT = Path(__file__).resolve().parents[2]

#: Scaled-down timings shared by the servers of these tests (seconds).
FAST = {
    "SSELAB_HEARTBEAT_S": "0.3",
    "SSELAB_SENTINEL_INTERVAL_S": "1.0",
    "SSELAB_SENTINEL_TIMEOUT_S": "0.5",
    "SSELAB_REDIS_RETRY_S": "0.3",
    "SSELAB_LOG_LEVEL": "WARNING",
}


def _unreachable() -> str | None:
    problems = []
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
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


@pytest.fixture(scope="session", autouse=True)
def real_stack() -> None:
    """Fail (CI) or skip (elsewhere) when Redis or Postgres is not there."""
    problem = _unreachable()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def namespace(real_stack: None) -> Iterator[str]:
    """This run's Postgres schema and Redis namespace; dropped at the end."""
    name = f"sselab_it_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One service process on a loopback port."""

    def __init__(self, namespace: str, log_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.replica = f"r{secrets.token_hex(3)}"
        self.env = {**os.environ, **FAST, "SSELAB_DB_SCHEMA": namespace,
                    "SSELAB_NAMESPACE": namespace, "SSELAB_SECRET": SECRET,
                    "SSELAB_REDIS_URL": REDIS_URL, "SSELAB_DATABASE_URL": DATABASE_URL,
                    "SSELAB_REPLICA": self.replica, **env}
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.subscriber_name = f"sselab-sub-{namespace}-{self.replica}"
        self.publisher_name = f"sselab-pub-{namespace}-{self.replica}"

    def start(self) -> Server:
        """Start the process and wait (bounded) until it answers /health/live."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                 "--timeout-graceful-shutdown", "1"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
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
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

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


@pytest.fixture
def server_factory(namespace: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with extra env; every one is killed after the test."""
    started: list[Server] = []

    def make(**env: str) -> Server:
        server = Server(namespace, tmp_path, env).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def user() -> str:
    """A user name no other test uses."""
    return f"u-{secrets.token_hex(4)}"


def token(user: str, *, role: str = "user", ttl: float = 600.0) -> str:
    """A token signed with the test servers' secret."""
    return issue_token(SECRET, user, role="publisher" if role == "publisher" else "user", ttl=ttl)


PUBLISHER = token("publisher", role="publisher", ttl=3600)


def publish(server: Server, user: str, n: int = 1, type_: str = "note") -> list[str]:
    """Publish ``n`` events to ``user``; return their ids."""
    ids = []
    with httpx.Client(timeout=10) as http:
        for i in range(n):
            response = http.post(f"{server.url}/events",
                                 json={"user": user, "type": type_, "data": {"i": i}},
                                 headers={"Authorization": f"Bearer {PUBLISHER}"})
            assert response.status_code == 201, response.text
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
            killed += int(r.execute_command(*args))
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
