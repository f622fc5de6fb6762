"""Named timers on an event loop, with a fake for tests: the shells' only clock.

A machine asks for ``StartTimer(timer, at)`` and ``CancelTimer(timer)``; a shell
hands both to a :class:`Timers`. Re-arming a name replaces its pending callback,
and cancelling a name that is not armed does nothing, exactly as the machines
expect. :class:`LoopTimers` uses ``loop.call_at`` (``at`` on ``loop.time()``);
:class:`FakeTimers` keeps a manual clock that tests move with ``advance``; it is
pure, so it lives in :mod:`model.timers` (engines on fake time share it) and is
re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from model.timers import FakeTimers

__all__ = ["FakeTimers", "LoopTimers", "Timers"]


class Timers(Protocol):
    """A clock and a set of named one-shot timers."""

    def now(self) -> float:
        """The current time on this clock, seconds."""
        ...

    def start(self, name: str, at: float, callback: Callable[[], None]) -> None:
        """Arm (or re-arm) ``name`` to call ``callback`` at absolute time ``at``."""
        ...

    def cancel(self, name: str) -> None:
        """Disarm ``name``; a name that is not armed is fine."""
        ...

    def cancel_all(self) -> None:
        """Disarm every timer."""
        ...


class LoopTimers:
    """Timers on an asyncio loop's monotonic clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def now(self) -> float:
        """The loop's ``time()``."""
        return self._loop.time()

    def start(self, name: str, at: float, callback: Callable[[], None]) -> None:
        """Arm ``name`` with ``loop.call_at``."""
        self.cancel(name)

        def fire() -> None:
            self._handles.pop(name, None)
            callback()

        self._handles[name] = self._loop.call_at(at, fire)

    def cancel(self, name: str) -> None:
        """Cancel ``name``'s handle if armed."""
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        """Cancel every handle."""
        for name in list(self._handles):
            self.cancel(name)
