"""``EventStreamClient``: an httpx + httpx-sse shell around ``model.client``.

The machine decides everything a resilient EventSource must: when to open and
close the stream, how long to back off, when a silent stream is dead, when to
give up (``failed``), when and how to re-hydrate, and which events are new. This
shell performs its actions:

================  ============================================================
action            what the shell does
================  ============================================================
OpenStream        ``GET /stream`` with ``Last-Event-ID`` and a fresh token from
                  the token provider; reports StreamOpened / StreamFailed, then
                  every frame, then StreamClosed
CloseStream       cancels the stream task; its late reports are dropped
Deliver           calls ``on_event`` with the event
StartRehydrate    calls the user's ``rehydrate(head_first)`` (which returns the
                  head EventId), or by default ``GET /snapshot?head_first=...``
                  and ``on_rehydrate(snapshot)``; reports RehydrateDone(head)
                  or RehydrateFailed
StatusChanged     calls ``on_status(status, attempts)``
Start/CancelTimer arms the machine's timers on a :class:`~service.timers.Timers`
Log               writes a JSON log line
================  ============================================================

Actions run through one ``{action: handler}`` table (``model.core.dispatch``):
an action without a handler is a loud error. The attempts really started since
the last stable connection are counted by ``model.witness`` (the one witness
every engine keeps), read through ``opens_since_stable``.

Time comes from the injected ``timers`` (default: the running loop), and the
jitter draw from the injected ``rng`` (default: ``random.random``), so tests can
run the client on fake time. ``open_timeout`` bounds how long an attempt may
wait for the response headers before it counts as failed (the network's own
timeout, which the machine takes as ``StreamFailed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from model import client as machine
from model.client import ClientConfig, ClientState, Status
from model.core import CancelTimer, EventId, Handlers, Log, StartTimer, dispatch
from model.witness import AttemptsWitness, observe
from service import trace
from service.logs import log_action
from service.timers import LoopTimers, Timers

__all__ = ["ClientEvent", "EventStreamClient", "SnapshotData"]

log = logging.getLogger("sselab.client")


class ClientEvent(NamedTuple):
    """An event handed to the application."""

    id: EventId
    type: str
    data: Any


#: The most pages one snapshot load reads (``GET /snapshot`` pages by ``before``).
MAX_SNAPSHOT_PAGES = 10_000


class SnapshotData(NamedTuple):
    """What ``GET /snapshot`` returned over all its pages: the head cursor and every kept event.

    The machines treat a snapshot as the complete state (``model.world``: the snapshot
    applies every committed event); the service pages it in bounded pieces, so the
    client reads every page (oldest last) before it reports ``RehydrateDone``.
    """

    head: EventId
    events: tuple[ClientEvent, ...]


TokenSource = str | Callable[[], str]


class EventStreamClient:
    """A resilient SSE client whose every decision is ``model.client``'s."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        config: ClientConfig | None = None,
        last_event_id: EventId | None = None,
        on_event: Callable[[ClientEvent], None] | None = None,
        on_status: Callable[[Status, int], None] | None = None,
        on_rehydrate: Callable[[SnapshotData], None] | None = None,
        rehydrate: Callable[[bool], Awaitable[EventId]] | None = None,
        timers: Timers | None = None,
        rng: Callable[[], float] = random.random,
        open_timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        name: str = "client",
        trace_path: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.config = config or ClientConfig()
        self.state: ClientState = machine.initial(last_event_id)
        self.opens = 0  #: OpenStream actions carried out (attempts really made)
        #: attempts really started since the last stable connection (model.witness)
        self.witness = AttemptsWitness()
        self._token = token
        self._on_event = on_event
        self._on_status = on_status
        self._on_rehydrate = on_rehydrate
        self._rehydrate = rehydrate
        self._timers = timers
        self._rng = rng
        self._open_timeout = open_timeout
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(
            connect=open_timeout, read=None, write=open_timeout, pool=open_timeout))
        self._generation = 0
        self._stream_task: asyncio.Task[None] | None = None
        self._rehydrate_task: asyncio.Task[None] | None = None
        self._current: ClientEvent | None = None
        self._changed: asyncio.Event | None = None
        self.name = name
        self._trace = trace.for_path(trace_path) if trace_path else trace.from_env()
        self._handlers: Handlers = {
            machine.OpenStream: self._open,
            machine.CloseStream: lambda a: self._cancel_stream(),
            machine.Deliver: self._deliver,
            machine.StartRehydrate: self._start_rehydrate,
            machine.StatusChanged: self._status,
            StartTimer: self._start_timer,
            CancelTimer: lambda a: self.timers.cancel(a.timer),
            Log: lambda a: log_action(log, a, url=self.url),
        }

    # ------------------------------------------------------------ the application's calls

    @property
    def timers(self) -> Timers:
        """The clock and timers the machine runs on."""
        if self._timers is None:
            self._timers = LoopTimers()
        return self._timers

    @property
    def opens_since_stable(self) -> int:
        """Attempts really started since the last stream that delivered a message (read-only)."""
        return self.witness.started

    @property
    def status(self) -> Status:
        """The status shown to the user."""
        return self.state.status

    @property
    def live(self) -> bool:
        """Whether the client shows itself live (connected, not re-hydrating)."""
        return machine.is_live(self.state)

    def start(self) -> None:
        """Start streaming."""
        self.feed(machine.Start(now=self.timers.now()))

    def stop(self) -> None:
        """Stop streaming (a snapshot in flight still reports; the machine takes it idle)."""
        self.feed(machine.Stop(now=self.timers.now()))

    def recover(self) -> None:
        """The user pressed Retry: re-hydrate, then reconnect (only from ``failed``)."""
        self.feed(machine.Recover(now=self.timers.now()))

    def online(self) -> None:
        """The browser went online."""
        self.feed(machine.Online(now=self.timers.now()))

    def visible(self) -> None:
        """The page became visible."""
        self.feed(machine.Visible(now=self.timers.now()))

    async def aclose(self) -> None:
        """Stop and release the HTTP client."""
        if self.state.status is not Status.IDLE:
            self.stop()
        self._cancel_stream()
        self._cancel_rehydrate()
        self.timers.cancel_all()
        if self._own_http:
            await self._http.aclose()

    async def wait_until(self, predicate: Callable[[EventStreamClient], bool],
                         timeout: float) -> bool:
        """Wait (bounded) until ``predicate(self)`` holds; return whether it did."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._signal().wait()
                self._signal().clear()
            return True

    # ------------------------------------------------------------ the machine

    def _signal(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def feed(self, event: machine.ClientInput) -> None:
        """Step the client machine and carry out its actions."""
        before = self.state
        self.state, actions = machine.step(self.config, self.state, event)
        self.witness = observe(self.witness, event, before, self.state, actions)
        if self._trace is not None:
            self._trace.step("client", self.name, event, self.state.status.value, actions,
                             now=self.timers.now(), detail={"stable": self.state.stable,
                                                            "attempts": self.state.attempts})
        dispatch(self._handlers, actions, shell="service.client")
        self._signal().set()

    def _u(self) -> float:
        return self._rng()

    def _open(self, action: machine.OpenStream) -> None:
        self.opens += 1
        self._generation += 1
        self._stream_task = asyncio.create_task(
            self._run_stream(self._generation, action.last_event_id))

    def _deliver(self, action: machine.Deliver) -> None:
        if self._current is not None and self._current.id == action.event_id \
                and self._on_event is not None:
            self._on_event(self._current)

    def _start_rehydrate(self, action: machine.StartRehydrate) -> None:
        self._rehydrate_task = asyncio.create_task(self._run_rehydrate(action.head_first))

    def _status(self, action: machine.StatusChanged) -> None:
        if self._on_status is not None:
            self._on_status(action.status, action.attempts)

    def _start_timer(self, action: StartTimer) -> None:
        name = action.timer
        self.timers.start(name, action.at, lambda: self.feed(
            machine.TimerFired(now=self.timers.now(), timer=name, u=self._u())))

    def _cancel_stream(self) -> None:
        self._generation += 1  # whatever the old task still reports is dropped
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    def _cancel_rehydrate(self) -> None:
        if self._rehydrate_task is not None:
            self._rehydrate_task.cancel()
            self._rehydrate_task = None

    def _report(self, generation: int, event: machine.ClientInput) -> None:
        if generation == self._generation:
            self.feed(event)

    # ------------------------------------------------------------ I/O

    def _token_now(self) -> str:
        return self._token() if callable(self._token) else self._token

    async def _run_stream(self, generation: int, last_event_id: EventId | None) -> None:
        headers = {"Authorization": f"Bearer {self._token_now()}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        opened = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self._open_timeout):
                    source = await stack.enter_async_context(
                        aconnect_sse(self._http, "GET", f"{self.url}/stream", headers=headers))
                response = source.response
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode("utf-8", "replace")
                    self._report(generation, machine.StreamFailed(
                        now=self.timers.now(), reason=f"HTTP {response.status_code}: {body}",
                        u=self._u()))
                    return
                opened = True
                self._report(generation, machine.StreamOpened(now=self.timers.now()))
                async for sse in source.aiter_sse():
                    if generation != self._generation:
                        return
                    self._on_frame(generation, sse)
            self._report(generation, machine.StreamClosed(
                now=self.timers.now(), reason="stream ended", u=self._u()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"[:300]
            if opened:
                self._report(generation, machine.StreamClosed(now=self.timers.now(),
                                                              reason=reason, u=self._u()))
            else:
                self._report(generation, machine.StreamFailed(now=self.timers.now(),
                                                              reason=reason, u=self._u()))

    def _on_frame(self, generation: int, sse: ServerSentEvent) -> None:
        now = self.timers.now()
        if not sse.data and sse.event in ("", "message"):
            announced = getattr(machine, "HeadAnnounced", None)  # the announce-head fix
            if sse.id and announced is not None and self.state.last_event_id is None:
                # An id-only message: the head announced to a stream opened without a cursor.
                self._report(generation, announced(now=now, head=EventId.parse(sse.id)))
            return  # otherwise a frame holding only ``retry:``: not a message
        if sse.event == "heartbeat":
            self._report(generation, machine.HeartbeatReceived(now=now))
        elif sse.event == "replay-truncated":
            body = json.loads(sse.data)
            self._report(generation, machine.ReplayTruncated(
                now=now, head=EventId.parse(body["head"]), reason=str(body.get("reason", "gap"))))
        elif sse.event == "replay-failed":
            body = json.loads(sse.data)
            self._report(generation, machine.ReplayFailed(
                now=now, reason=str(body.get("reason", "replay failed"))))
        else:
            event_id = EventId.parse(sse.id)  # a malformed id breaks the stream
            self._current = ClientEvent(event_id, sse.event, json.loads(sse.data))
            try:
                self._report(generation, machine.EventReceived(now=now, event_id=event_id))
            finally:
                self._current = None

    async def _load_snapshot(self, head_first: bool) -> tuple[EventId, tuple[ClientEvent, ...]]:
        """Every page of ``GET /snapshot``: the head of the first page and all events, in order."""
        params = {"head_first": str(head_first).lower()}
        head: EventId | None = None
        pages: list[list[ClientEvent]] = []
        for _ in range(MAX_SNAPSHOT_PAGES):
            response = await self._http.get(
                f"{self.url}/snapshot", params=params,
                headers={"Authorization": f"Bearer {self._token_now()}"},
                timeout=self._open_timeout)
            response.raise_for_status()
            body = response.json()
            if head is None:
                head = EventId.parse(body["head"])
            pages.append([ClientEvent(EventId.parse(e["id"]), e["type"], e["data"])
                          for e in body["events"]])
            if not body.get("more") or not body.get("next_before"):
                break
            params = {"head_first": str(head_first).lower(), "before": str(body["next_before"])}
        else:
            raise RuntimeError(f"snapshot has more than {MAX_SNAPSHOT_PAGES} pages")
        assert head is not None
        return head, tuple(e for page in reversed(pages) for e in page)

    async def _run_rehydrate(self, head_first: bool) -> None:
        try:
            if self._rehydrate is not None:
                head = await self._rehydrate(head_first)
            else:
                head, events = await self._load_snapshot(head_first)
                snap = SnapshotData(head, events)
                if self._on_rehydrate is not None:
                    self._on_rehydrate(snap)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._rehydrate_task = None
            self.feed(machine.RehydrateFailed(now=self.timers.now(),
                                              reason=f"{exc.__class__.__name__}: {exc}"[:300],
                                              u=self._u()))
            return
        self._rehydrate_task = None
        self.feed(machine.RehydrateDone(now=self.timers.now(), head=head))
