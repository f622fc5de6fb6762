"""Chromium's own ``EventSource`` against two replicas: every event exactly once (issue 12).

No reconnect logic of ours runs in the page: it opens one ``EventSource`` on a
stream ticket and records what the browser dispatches. Only messages with data
count (``note`` events); heartbeats, the ``retry:`` frame and the id-only head
announcement are not events. Events are published through a second replica on
the same Redis and Postgres while the browser's replica is cut off.

(a) The first stream drops before any event, right after the head announcement
    (``id: <head>`` and no data), which Chromium adopts as its last event id and
    sends back as ``Last-Event-ID`` on its own reconnect. With ``announce-head``
    off the reconnect carries no id and the events published meanwhile are lost:
    the test can fail.
(b) The browser's replica restarts mid-stream.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from model.fixes import Fixes
from service.testing.browser import PageServer, chromium_missing, launch
from service.testing.proxy import TcpProxy

from .conftest import Server, publish, token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: One bare EventSource on ``?stream=URL``; ``window.sselab`` is what the browser dispatched.
BARE_EVENTSOURCE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bare EventSource</title></head><body>
<script>
const state = window.sselab = {events: [], heartbeats: 0, opens: 0, errors: 0};
const es = new EventSource(new URLSearchParams(location.search).get("stream"));
es.onopen = () => { state.opens += 1; };
es.onerror = () => { state.errors += 1; };
es.onmessage = (e) => state.events.push({id: e.lastEventId, data: e.data, type: "message"});
es.addEventListener("note", (e) => state.events.push({id: e.lastEventId, data: e.data}));
es.addEventListener("heartbeat", () => { state.heartbeats += 1; });
</script></body></html>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
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
    state: dict[str, Any] = json.loads(page.evaluate("JSON.stringify(window.sselab)"))
    return state


def _wait(page: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(page)
        if predicate(state) or time.monotonic() > deadline:
            return state
        page.wait_for_timeout(50)


def _ids(state: dict[str, Any]) -> list[str]:
    return [e["id"] for e in state["events"] if e["data"]]


def _open(browser: Any, pages: PageServer, api: Server, stream_base: str, user: str
          ) -> tuple[Any, list[str | None]]:
    """A page with a bare EventSource on ``stream_base``; the Last-Event-ID of each request."""
    ticket = httpx.post(f"{api.url}/stream/ticket", timeout=10,
                        headers={"Authorization": f"Bearer {token(user)}"}).json()["ticket"]
    sent: list[str | None] = []
    page = browser.new_page()
    # ``all_headers``: ``headers`` leaves out what the network stack adds, Last-Event-ID too.
    page.on("request", lambda r: sent.append(r.all_headers().get("last-event-id"))
            if "/stream?" in r.url else None)
    page.goto(f"{pages.origin}/bare.html?"
              + urlencode({"stream": f"{stream_base}/stream?ticket={ticket}"}))
    return page, sent


def _settle(page: Any) -> dict[str, Any]:
    """Three more heartbeats: long enough for a duplicate or a late replay to show."""
    beats = _state(page)["heartbeats"]
    return _wait(page, lambda s: s["heartbeats"] >= beats + 3, 10)


@pytest.mark.parametrize("on", [True, False], ids=["announce-head", "without-announce-head"])
def test_first_stream_drops_before_any_event_and_chromium_resumes_from_the_announced_head(
        browser: Any, namespace: str, tmp_path: Path, user: str, on: bool) -> None:
    fixes = Fixes() if on else Fixes().without("announce-head")
    with PageServer({"/bare.html": BARE_EVENTSOURCE}) as pages:
        env = {"SSELAB_CORS_ORIGINS": pages.origin, "SSELAB_RETRY_MS": "300",
               "SSELAB_FIXES": str(fixes)}
        api = Server(namespace, tmp_path, env).start()
        other = Server(namespace, tmp_path, env).start()
        head = publish(other, user, 1)[0]  # history the browser never sees: it starts after it
        proxy = TcpProxy("127.0.0.1", api.port).start()
        try:
            page, sent = _open(browser, pages, api, f"http://127.0.0.1:{proxy.port}", user)
            # A heartbeat follows the announcement on the wire: the browser has it.
            assert _wait(page, lambda s: s["heartbeats"] >= 1, 15)["heartbeats"] >= 1
            port = proxy.port
            proxy.close()  # the first stream drops; reconnects are refused meanwhile
            assert _wait(page, lambda s: s["errors"] >= 1, 10)["errors"] >= 1
            missed = publish(other, user, 3)
            proxy = TcpProxy("127.0.0.1", api.port, port=port).start()
            assert _wait(page, lambda s: s["opens"] >= 2, 15)["opens"] >= 2  # by itself
            live = publish(other, user, 2)
            state = _wait(page, lambda s: len(_ids(s)) >= 5 or _ids(s)[-2:] == live, 15)
            state = _settle(page)
            got = _ids(state)
            resumed = [h for h in sent[1:] if h is not None]
            if on:
                assert got == missed + live, (got, sent)  # none missing, no duplicate, in order
                assert resumed and resumed[0] == head  # Chromium adopted the id-only message
            else:
                assert got == live, (got, sent)  # the bug: the three missed events are gone
                assert resumed == []
            assert all(e.get("type") != "message" for e in state["events"])
            page.close()
        finally:
            proxy.close()
            api.kill()
            other.kill()


def test_replica_restarts_mid_stream_and_chromium_gets_every_event_exactly_once(
        browser: Any, namespace: str, tmp_path: Path, user: str) -> None:
    with PageServer({"/bare.html": BARE_EVENTSOURCE}) as pages:
        env = {"SSELAB_CORS_ORIGINS": pages.origin, "SSELAB_RETRY_MS": "300"}
        api = Server(namespace, tmp_path, env).start()
        other = Server(namespace, tmp_path, env).start()
        try:
            page, _ = _open(browser, pages, api, api.url, user)
            assert _wait(page, lambda s: s["opens"] >= 1, 15)["opens"] >= 1
            ids = publish(other, user, 2)
            assert _ids(_wait(page, lambda s: len(_ids(s)) >= 2, 15)) == ids
            api.stop()  # SIGTERM: the stream ends, the replica goes away and comes back
            ids += publish(other, user, 3)
            api = Server(namespace, tmp_path, env, port=api.port).start()
            assert _wait(page, lambda s: s["opens"] >= 2, 20)["opens"] >= 2  # by itself
            ids += publish(other, user, 2)
            _wait(page, lambda s: len(_ids(s)) >= len(ids), 15)
            got = _ids(_settle(page))
            assert got == ids  # every event exactly once, in order
            page.close()
        finally:
            api.kill()
            other.kill()
