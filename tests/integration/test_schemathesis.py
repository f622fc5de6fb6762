"""Schemathesis over /openapi.json: no input makes the service answer 5xx.

Bounded runs: every operation with no credentials (the stream answers 401
before it would start streaming), and the authenticated operations that end
(publish with a publisher token, within the depth, node and byte caps and with
fuzzed Idempotency-Keys; snapshot pages and stream tickets with a user token). The stream itself
is never fuzzed authenticated, because a valid stream does not end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from .conftest import PUBLISHER, Server, token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def fuzz_server(namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(namespace, tmp_path_factory.mktemp("fuzz"), {}).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def api(fuzz_server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

# Divergence: schemathesis' own pytest loader (``from_fixture``/``parametrize``)
# does not run under pytest 9 here, so each operation's Hypothesis strategy is
# driven directly; the checks are the same.


def _fuzz(api: schemathesis.BaseSchema, headers: dict[str, str] | None) -> list[str]:
    fuzzed = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=10)

        run()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    return fuzzed


def test_no_server_error_without_credentials(api: schemathesis.BaseSchema) -> None:
    fuzzed = _fuzz(api, None)
    assert {"GET /stream", "POST /events", "GET /health/ready"} <= set(fuzzed)


def test_no_server_error_publishing(api: schemathesis.BaseSchema) -> None:
    _fuzz(api.include(method="POST", path="/events"), {"Authorization": f"Bearer {PUBLISHER}"})


def test_no_server_error_on_snapshots_and_tickets(api: schemathesis.BaseSchema) -> None:
    user = {"Authorization": f"Bearer {token('fuzz-user')}"}
    _fuzz(api.include(method="GET", path="/snapshot"), user)
    _fuzz(api.include(method="POST", path="/stream/ticket"), user)
