"""Timers a test can put to sleep: the laptop-lid fault for a real ``EventStreamClient``.

:class:`SleepableTimers` behaves like :class:`service.timers.LoopTimers` until
:meth:`~SleepableTimers.freeze` (the laptop sleeps: no timer fires, timers
armed meanwhile wait too); :meth:`~SleepableTimers.release` is the wake: every
armed timer becomes due at once, in due-time order, as a suspended OS delivers
the timers whose deadline passed while it slept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["SleepableTimers"]


class SleepableTimers:
    """Named one-shot timers on the running loop that can be frozen and released."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._armed: dict[str, tuple[float, Callable[[], None], asyncio.TimerHandle | None]] = {}
        self.frozen = False

    def now(self) -> float:
        """The loop's ``time()``."""
        return self._loop.time()

    def start(self, name: str, at: float, callback: Callable[[], None]) -> None:
        """Arm (or re-arm) ``name``; while frozen it only waits for the wake."""
        self.cancel(name)
        self._armed[name] = (at, callback, None if self.frozen else self._schedule(name, at))

    def _schedule(self, name: str, at: float) -> asyncio.TimerHandle:
        def fire() -> None:
            entry = self._armed.pop(name, None)
            if entry is not None:
                entry[1]()
        return self._loop.call_at(at, fire)

    def cancel(self, name: str) -> None:
        """Disarm ``name``; a name that is not armed is fine."""
        entry = self._armed.pop(name, None)
        if entry is not None and entry[2] is not None:
            entry[2].cancel()

    def cancel_all(self) -> None:
        """Disarm every timer."""
        for name in list(self._armed):
            self.cancel(name)

    def armed(self) -> dict[str, float]:
        """The armed timers and their due times."""
        return {name: at for name, (at, _, _) in self._armed.items()}

    def freeze(self) -> None:
        """The laptop sleeps: nothing fires until :meth:`release`."""
        self.frozen = True
        for name, (at, callback, handle) in list(self._armed.items()):
            if handle is not None:
                handle.cancel()
            self._armed[name] = (at, callback, None)

    def release(self) -> None:
        """The laptop wakes: every armed timer becomes due now, earliest first."""
        self.frozen = False
        now = self.now()
        for name, (at, callback, _) in sorted(self._armed.items(), key=lambda kv: kv[1][0]):
            self._armed[name] = (min(at, now), callback, self._schedule(name, min(at, now)))
