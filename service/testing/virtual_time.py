"""An asyncio loop on fake time: when nothing is ready, the clock jumps to the next timer.

The shells' timers (:mod:`service.timers`) run on ``loop.call_at`` and ``loop.time()``,
and the send watch cancels a blocked task from a timer. Testing them on the real
clock means real sleeps. :func:`run_virtual` runs a coroutine on a loop whose
``time()`` starts at 0 and advances only when every ready callback has run and no
I/O is pending: then it jumps straight to the earliest timer. A test's
``await asyncio.sleep(3600)`` takes no wall time, and ``loop.time()`` differences
are exact. Real sockets still work (they are polled without blocking), but a loop
that waits for I/O with no timer left would wait forever on real time; here it
raises instead, naming the deadlock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; a wait that would block moves the loop's clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Ready I/O now; if none, advance the clock by ``timeout`` (the next timer's delay)."""
        events = super().select(0)
        if events or self.loop is None:
            return events
        if timeout is None:
            raise RuntimeError("virtual time: the loop waits for I/O and no timer is armed "
                               "(nothing can ever happen)")
        self.loop.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is fake and jumps to the next timer when idle."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        """The fake clock, seconds (starts at 0)."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        self._now += max(0.0, seconds)


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop`; return its result."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
