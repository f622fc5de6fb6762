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
import math
import weakref
from collections.abc import Callable
from typing import Protocol

from model.timers import FakeTimers

__all__ = ["FakeTimers", "LoopTimers", "TickTimers", "Timers"]


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


class _Wheel:
    """One loop timer per tick for every coalesced timer of a loop that falls in that tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.loop, self.tick = loop, tick
        self.slots: dict[int, dict[object, Callable[[], None]]] = {}

    def add(self, at: float, key: object, callback: Callable[[], None]) -> int:
        """Call ``callback`` at the first tick at or after ``at``; return that tick."""
        slot = math.ceil(at / self.tick)
        entries = self.slots.get(slot)
        if entries is None:
            entries = self.slots[slot] = {}
            self.loop.call_at(slot * self.tick, self._fire, slot)
        entries[key] = callback
        return slot

    def remove(self, slot: int, key: object) -> None:
        """Forget ``key``'s callback in ``slot`` (if it has not fired)."""
        entries = self.slots.get(slot)
        if entries is not None:
            entries.pop(key, None)

    def _fire(self, slot: int) -> None:
        for callback in self.slots.pop(slot, {}).values():
            try:
                callback()
            except Exception as exc:  # as loop.call_at would: report it, run the others
                self.loop.call_exception_handler({
                    "message": "exception in a coalesced timer callback", "exception": exc})


_WHEELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Wheel]] = \
    weakref.WeakKeyDictionary()


class TickTimers(LoopTimers):
    """:class:`LoopTimers` whose ``coalesce`` timers fire at the first ``tick`` at or after ``at``.

    A stream's heartbeat is due every few seconds, and a thousand streams opened at
    different moments would each wake the loop on its own. Rounded up to a shared
    tick, the heartbeats due in the same tick fire from one loop timer in one loop
    pass. A coalesced timer fires at most ``tick`` late, never early; the other
    names (token expiry) keep their exact ``loop.call_at``.

    Re-arming later is lazy: a busy stream pushes its heartbeat back on every frame,
    and moving it on the wheel each time cost as much as the frame's machine step.
    Only the new deadline is noted; when the tick it was armed for comes, a deadline
    that moved past that tick is armed again there instead of firing. Re-arming
    earlier moves it at once (never late).
    """

    def __init__(self, tick: float, coalesce: frozenset[str],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop)
        self._coalesce = coalesce
        wheels = _WHEELS.setdefault(self._loop, {})
        self._wheel = wheels.get(tick) or wheels.setdefault(tick, _Wheel(self._loop, tick))
        self._tick = self._wheel.tick
        self._slots: dict[str, int] = {}  #: the tick each armed name waits on
        self._due: dict[str, tuple[float, Callable[[], None]]] = {}  #: its latest deadline

    def start(self, name: str, at: float, callback: Callable[[], None]) -> None:
        """Arm ``name``: on the shared tick if it is coalesced, else with ``loop.call_at``."""
        if name not in self._coalesce:
            super().start(name, at, callback)
            return
        self._due[name] = (at, callback)
        slot = self._slots.get(name)
        if slot is not None:
            if slot <= math.ceil(at / self._tick):
                return  # its tick comes first and will re-arm it for ``at``
            self._wheel.remove(slot, (self, name))
        self._slots[name] = self._wheel.add(at, (self, name), lambda: self._fire(name))

    def _fire(self, name: str) -> None:
        due = self._due.get(name)
        slot = self._slots.get(name)
        if due is None or slot is None:
            return
        at, callback = due
        if math.ceil(at / self._tick) > slot:  # pushed back since it was put on the wheel
            self._slots[name] = self._wheel.add(at, (self, name), lambda: self._fire(name))
            return
        del self._slots[name], self._due[name]
        callback()

    def armed(self, name: str) -> bool:
        """Whether the coalesced timer ``name`` is armed."""
        return name in self._slots

    def cancel(self, name: str) -> None:
        """Disarm ``name``."""
        slot = self._slots.pop(name, None)
        if slot is not None:
            self._wheel.remove(slot, (self, name))
            del self._due[name]
        super().cancel(name)

    def cancel_all(self) -> None:
        """Disarm every timer."""
        for name in list(self._slots):
            self.cancel(name)
        super().cancel_all()
