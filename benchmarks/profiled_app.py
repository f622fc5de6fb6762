"""Benchmark-only: an app factory under a profiler, for ``benchmarks/service.py``.

``BENCH_PROFILE_APP`` names the factory to wrap (``service.app:create_app``). SIGUSR1
clears the statistics (the load generator sends it once the streams are open), SIGUSR2
writes them to ``BENCH_PROFILE_OUT-N.pstat`` (the Nth dump). The profiler is yappi on
the CPU clock, or with ``BENCH_PROFILER=cprofile`` cProfile on process time. Never
used by the service itself.
"""

from __future__ import annotations

import cProfile
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service package, not benchmarks/service.py


def create_app() -> Any:
    """The wrapped app, its profiler running."""
    module, _, name = os.environ["BENCH_PROFILE_APP"].partition(":")
    app = getattr(importlib.import_module(module), name)()
    out = os.environ["BENCH_PROFILE_OUT"]
    dumps = iter(range(1, 1000))
    if os.environ.get("BENCH_PROFILER") == "cprofile":  # deterministic, one thread
        profile = cProfile.Profile(time.process_time)

        def clear(*_: object) -> None:
            profile.disable()
            profile.clear()
            profile.enable()

        def dump(*_: object) -> None:
            profile.disable()
            profile.dump_stats(f"{out}-{next(dumps)}.pstat")
            profile.enable()
    else:
        import yappi  # pip install yappi: only for profiling

        yappi.set_clock_type("cpu")
        yappi.start()

        def clear(*_: object) -> None:
            yappi.clear_stats()

        def dump(*_: object) -> None:
            yappi.get_func_stats().save(f"{out}-{next(dumps)}.pstat", type="pstat")

    signal.signal(signal.SIGUSR1, clear)
    signal.signal(signal.SIGUSR2, dump)
    return app
