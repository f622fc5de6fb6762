"""Real-stack fixtures: Redis and Postgres reachability, servers in subprocesses, helpers.

Every test here needs a real Redis on 127.0.0.1:6379 and a real PostgreSQL on
127.0.0.1:5432 (override with SSELAB_REDIS_URL / SSELAB_DATABASE_URL). Without
them the tests fail with instructions when CI=true, and are skipped otherwise.

Each run uses its own Postgres schema and Redis channel namespace
(``sselab_it_<random>``), dropped at the end, so runs never collide. Servers run
as ``uvicorn --factory service.app:create_app`` subprocesses on free loopback
ports: a subprocess can be killed for real (the "server down" fault), and no
process-global state (sse-starlette's exit flag, metrics) leaks between servers.
The helpers live in ``service.testing.stack`` (shared with ``sselab conform``);
this module adds the fixtures and re-exports them for the tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.testing.stack import (
    DATABASE_URL,
    FAST,
    PUBLISHER,
    REDIS_URL,
    SECRET,
    Server,
    drop_schema,
    free_port,
    kill_redis_clients,
    new_namespace,
    publish,
    redis_client,
    token,
    unreachable,
    wait_for,
)

__all__ = [
    "DATABASE_URL", "FAST", "PUBLISHER", "REDIS_URL", "SECRET", "Server", "free_port",
    "kill_redis_clients", "namespace", "publish", "real_stack", "redis_client", "server_factory",
    "token", "user", "wait_for",
]


@pytest.fixture(scope="session", autouse=True)
def real_stack() -> None:
    """Fail (CI) or skip (elsewhere) when Redis or Postgres is not there."""
    problem = unreachable()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def namespace(real_stack: None) -> Iterator[str]:
    """This run's Postgres schema and Redis namespace; dropped at the end."""
    name = new_namespace()
    yield name
    drop_schema(name)


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
