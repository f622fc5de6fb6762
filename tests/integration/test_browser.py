"""A real Chromium on another origin: EventSource through CORS, across a server restart.

The page is served from its own loopback port (another origin); the service is
``uvicorn --factory service.app:create_app`` with ``SSELAB_CORS_ORIGINS`` naming
that origin. Under ``CI=true`` a missing Chromium or Playwright fails the test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from service.testing.browser import EVENTSOURCE_APP, PageServer, chromium_missing, launch

from .conftest import Server, publish, token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def browser() -> Any:
    problem = chromium_missing()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def _state(page: Any) -> dict[str, Any]:
    return json.loads(page.evaluate("JSON.stringify(window.sselab)"))


def _wait(page: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(page)
        if predicate(state) or time.monotonic() > deadline:
            return state
        page.wait_for_timeout(100)


def test_eventsource_on_another_origin_survives_a_restart_with_no_loss_or_duplicate(
        browser: Any, namespace: str, tmp_path: Path, user: str) -> None:
    with PageServer({"/app.html": EVENTSOURCE_APP}) as pages:
        env = {"SSELAB_CORS_ORIGINS": pages.origin, "SSELAB_RETRY_MS": "300"}
        api = Server(namespace, tmp_path, env).start()
        helper = Server(namespace, tmp_path, env).start()  # publishes while `api` is down
        try:
            page = browser.new_page()
            query = urlencode({"api": api.url, "token": token(user)})
            page.goto(f"{pages.origin}/app.html?{query}")
            assert _wait(page, lambda s: s["opens"] >= 1, 15)["opens"] >= 1
            ids = publish(api, user, 3)
            state = _wait(page, lambda s: len(s["events"]) >= 3, 15)
            assert [e["id"] for e in state["events"]] == ids
            api.kill()  # a crash: the browser's stream breaks
            ids += publish(helper, user, 2)  # committed while the browser is cut off
            api = Server(namespace, tmp_path, env, port=api.port).start()
            ids += publish(api, user, 2)
            state = _wait(page, lambda s: len(s["events"]) >= len(ids), 30)
            got = [e["id"] for e in state["events"]]
            assert got == ids, (got, ids, state["states"])  # no loss, no duplicate, in order
            assert state["opens"] >= 2
            page.close()
        finally:
            api.kill()
            helper.kill()


def test_eventsource_from_an_origin_not_configured_cannot_connect(
        browser: Any, namespace: str, tmp_path: Path, user: str) -> None:
    with PageServer({"/app.html": EVENTSOURCE_APP}) as pages:
        server = Server(namespace, tmp_path,
                        {"SSELAB_CORS_ORIGINS": "http://127.0.0.1:1"}).start()
        try:
            import httpx

            ticket = httpx.post(f"{server.url}/stream/ticket",
                                headers={"Authorization": f"Bearer {token(user)}"}).json()["ticket"]
            page = browser.new_page()
            page.goto(f"{pages.origin}/app.html?{urlencode({'api': server.url, 'ticket': ticket})}")
            state = _wait(page, lambda s: "closed" in s["states"], 15)
            publish(server, user, 1)
            page.wait_for_timeout(300)
            state = _state(page)
            assert state["states"] == ["closed"] and state["opens"] == 0 and not state["events"]
            assert page.evaluate("window.es.readyState") == 2  # the browser gave up
            page.close()
        finally:
            server.kill()
