"""A real browser for tests: Debian's Chromium driven by Playwright, and pages on their own origin.

Browsers cannot be downloaded here, so :func:`launch` starts the system's
``/usr/bin/chromium`` (``.ci/run`` installs it) headless, with the flags a CI
container needs. :class:`PageServer` serves HTML on a loopback port of its own,
which is another origin than any service port, so pages exercise CORS the way a
browser app on another host would. :data:`EVENTSOURCE_APP` is such an app: it
gets a stream ticket, follows ``GET /stream`` with ``EventSource`` and, when the
browser gives up (a non-200 answer while a server restarts), reconnects itself
from the last id it saw -- what a real app must do.
"""

from __future__ import annotations

import http.server
import os
import threading
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "EVENTSOURCE_APP", "PageServer", "chromium_missing",
           "launch"]

#: The system Chromium (Debian's package).
CHROMIUM = os.environ.get("SSELAB_CHROMIUM", "/usr/bin/chromium")
#: Flags for a headless Chromium in a container with no GPU, sandbox or outside network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_missing() -> str | None:
    """Why no real browser can run here (with how to fix it), or None when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the real-browser tests need Playwright: pip install -e '.[dev]'"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"the real-browser tests need Chromium at {CHROMIUM}: "
                "apt-get install -y chromium (or set SSELAB_CHROMIUM)")
    return None


def launch(playwright: Any) -> Any:
    """A headless system Chromium from a ``sync_playwright()`` or ``async_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)


class PageServer:
    """Serve ``pages`` (path -> HTML) on a free loopback port; its own origin."""

    def __init__(self, pages: dict[str, str]) -> None:
        body = {path: html.encode() for path, html in pages.items()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = body.get(self.path.split("?", 1)[0])
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(page or b"not found")

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


#: A browser app: ``?api=URL&token=USER_TOKEN`` (or ``&ticket=`` to skip the ticket fetch).
#: It exposes ``window.sselab = {events: [{id, data}], opens, errors, states, fatal}``.
EVENTSOURCE_APP = """<!doctype html>
<html><head><meta charset="utf-8"><title>sselab browser app</title></head><body>
<script>
const params = new URLSearchParams(location.search);
const api = params.get("api");
const state = window.sselab = {events: [], opens: 0, errors: 0, states: [], fatal: null};
let lastId = null;
async function ticket() {
  if (params.get("ticket")) return params.get("ticket");
  const r = await fetch(api + "/stream/ticket", {method: "POST",
    headers: {"Authorization": "Bearer " + params.get("token")}});
  if (r.status !== 201) throw new Error("ticket: HTTP " + r.status);
  return (await r.json()).ticket;
}
async function connect() {
  let t;
  try { t = await ticket(); } catch (e) { state.fatal = String(e); setTimeout(connect, 300); return; }
  let url = api + "/stream?ticket=" + encodeURIComponent(t);
  if (lastId) url += "&last_event_id=" + encodeURIComponent(lastId);
  const es = new EventSource(url);
  window.es = es;
  es.onopen = () => { state.opens += 1; state.states.push("open"); };
  es.addEventListener("note", (e) => {
    lastId = e.lastEventId;
    state.events.push({id: e.lastEventId, data: e.data});
  });
  es.onerror = () => {
    state.errors += 1; state.states.push(es.readyState === 2 ? "closed" : "retrying");
    if (es.readyState === 2 && !params.get("ticket")) { setTimeout(connect, 300); }
  };
}
connect();
</script></body></html>
"""
