"""A fake timer book: named one-shot timers on a manual clock, for engines on fake time.

A machine asks for ``StartTimer(timer, at)`` and ``CancelTimer(timer)``; a shell
on fake time hands both to a :class:`FakeTimers`. Re-arming a name replaces its
pending callback, and cancelling a name that is not armed does nothing, exactly
as the machines expect. Nothing fires until the clock is moved on
(:meth:`FakeTimers.advance`, :meth:`FakeTimers.advance_to`); timers due at the
same time fire in the order they were armed.

It reads no clock and draws no number, so it lives beside the machines: the
service's tests (``service.timers`` re-exports it next to its asyncio
``LoopTimers``) and ``sims.bench`` keep their timers in this one book.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

__all__ = ["FakeTimers"]


class FakeTimers:
    """A manual clock for tests: nothing fires until :meth:`advance` passes its time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._armed: dict[str, tuple[float, int]] = {}
        self._queue: list[tuple[float, int, str, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The fake time."""
        return self._now

    def start(self, name: str, at: float, callback: Callable[[], None]) -> None:
        """Arm ``name`` at fake time ``at``."""
        token = next(self._order)
        self._armed[name] = (at, token)
        heapq.heappush(self._queue, (at, token, name, callback))

    def cancel(self, name: str) -> None:
        """Disarm ``name``."""
        self._armed.pop(name, None)

    def cancel_all(self) -> None:
        """Disarm every timer."""
        self._armed.clear()

    def armed(self) -> dict[str, float]:
        """The armed timers and their due times."""
        return {name: at for name, (at, _) in self._armed.items()}

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, firing every timer that falls due, in order."""
        self.advance_to(self._now + seconds)

    def advance_to(self, until: float) -> None:
        """Move the clock to ``until``, firing every timer due by then, in order."""
        while self._queue and self._queue[0][0] <= until:
            at, token, name, callback = heapq.heappop(self._queue)
            if self._armed.get(name) != (at, token):
                continue  # cancelled or re-armed
            del self._armed[name]
            self._now = max(self._now, at)
            callback()
        self._now = until
