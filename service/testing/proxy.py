"""A loopback TCP proxy that can stall or cut the links through it.

Put it between the server and Redis (or a client and the server) to make a link
fail the way networks do: :meth:`TcpProxy.stall` keeps every connection open but
stops forwarding (a half-open, silent link: bytes are read and dropped, nothing
errors), :meth:`TcpProxy.resume` lets *new* connections through again (stalled
ones stay dead until their owner closes them), and :meth:`TcpProxy.cut` closes
every connection at once. :meth:`TcpProxy.hold` delays instead of dropping: a
chunk (every one, or one that contains a marker, such as a query's text) waits,
with everything behind it on that link and direction, until :meth:`TcpProxy.release`.
It runs on its own thread and event loop, so a test on
another loop (or none) can drive it; :meth:`close` stops it and its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

T = TypeVar("T")


class _Link:
    def __init__(self, writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self.writers = writers
        self.stalled = False

    def close(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.accepted = 0  #: connections accepted so far
        self._stalled = False
        self._hold: bytes | None = None
        self._holding = False
        self._split = False
        self._released = asyncio.Event()
        self.held = 0  #: link directions waiting for :meth:`release` right now
        self._links: set[_Link] = set()
        self._accepting: set[asyncio.Task[None]] = set()  #: each connection's task
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy",
                                        daemon=True)

    def start(self) -> TcpProxy:
        """Listen and start forwarding; return self."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stall(self) -> None:
        """Stop forwarding on every connection, current and new, without closing any."""
        def apply() -> None:
            self._stalled = True
            for link in self._links:
                link.stalled = True
        self._loop.call_soon_threadsafe(apply)

    def resume(self) -> None:
        """Forward new connections again; connections stalled so far stay stalled."""
        self._loop.call_soon_threadsafe(setattr, self, "_stalled", False)

    def hold(self, marker: bytes | None = None, *, split: bool = False) -> None:
        """Delay (never drop) every chunk, or only chunks containing ``marker``, until release().

        ``split``: forward the bytes of a held chunk that come before ``marker`` at once (say
        an HTTP response's headers that arrived in one read with the frame to hold).
        """
        def apply() -> None:
            self._hold, self._holding, self._split = marker, True, split
            self._released.clear()
        self._loop.call_soon_threadsafe(apply)

    def release(self) -> None:
        """Forward everything held, in order, and stop holding."""
        def apply() -> None:
            self._holding = False
            self._released.set()
        self._loop.call_soon_threadsafe(apply)

    def cut(self) -> None:
        """Close every connection through the proxy."""
        def apply() -> None:
            for link in list(self._links):
                link.close()
        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        """Stop listening, close every connection and stop the thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                link.close()
            # Let every connection's task end before the loop stops (a task still
            # pending then is destroyed with a warning, and its sockets leak).
            if self._accepting:
                await asyncio.wait(list(self._accepting), timeout=2)
            for task in self._accepting:
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        if task is not None:
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        link = _Link((writer, up_writer))
        link.stalled = self._stalled
        self._links.add(link)
        try:
            await asyncio.gather(self._pump(link, reader, up_writer),
                                 self._pump(link, up_reader, writer))
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if link.stalled:
                    continue  # read and drop: the peer sees silence, not an error
                if self._holding and (self._hold is None or self._hold in data):
                    at = data.index(self._hold) if self._split and self._hold is not None else 0
                    if at:
                        writer.write(data[:at])
                        await writer.drain()
                        data = data[at:]
                    self.held += 1
                    try:
                        await self._released.wait()
                    finally:
                        self.held -= 1
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
