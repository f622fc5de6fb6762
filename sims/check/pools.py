"""Where the partitions run: in this process, in worker processes, or as Dask actors.

A pool holds one :class:`~sims.check.partition.Partition` per worker and calls the
same method on all of them at once (:meth:`Pool.map`), or on one
(:meth:`Pool.call`). The processes pool is a pipe per forked worker and a
request/reply loop, nothing more; Dask's own actors do the same on a cluster
someone else runs (``--scheduler``). No pool starts, scales or watches machines.
"""

from __future__ import annotations

import cProfile
import gc
import multiprocessing as mp
import multiprocessing.connection
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Protocol

from model.world import WorldConfig
from sims.check.partition import Partition

__all__ = ["DaskPool", "LocalPool", "Pool", "ProcessPool", "open_pool"]


class Pool(Protocol):
    """One partition per worker, called level by level."""

    size: int
    #: whether the partitions live in other processes (whose memory is their own)
    remote: bool

    def map(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Call ``method`` on every partition (``args[i]`` for partition i), in parallel."""
        ...

    def call(self, index: int, method: str, *args: Any) -> Any:
        """Call ``method`` on partition ``index``."""
        ...

    def close(self) -> None:
        """Stop the workers this pool started (never a cluster it was given)."""
        ...

    def profiles(self) -> list[dict[Any, Any]]:
        """Each worker process's cProfile statistics (empty where this process did the work)."""
        ...


class LocalPool:
    """Every partition in this process (``--workers 1``: no pickling, no pipes)."""

    def __init__(self, count: int, config: WorldConfig, options: dict[str, Any]) -> None:
        self.size = count
        self.remote = False
        self.parts = [Partition(i, count, config, options) for i in range(count)]

    def map(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Call ``method`` on every partition in turn."""
        return [getattr(p, method)(*a) for p, a in zip(self.parts, args, strict=True)]

    def call(self, index: int, method: str, *args: Any) -> Any:
        """Call ``method`` on one partition."""
        return getattr(self.parts[index], method)(*args)

    def close(self) -> None:
        """Drop the partitions (freed by reference counting, before the caller turns gc back on)."""
        self.parts = []

    def profiles(self) -> list[dict[Any, Any]]:
        """None: the partitions ran in this process, under its own profiler."""
        return []


#: the request a worker answers with its own profile statistics (not a partition method)
PROFILE_STATS = "profile_stats"


def _serve(conn: multiprocessing.connection.Connection, index: int, count: int,
           config: WorldConfig, options: dict[str, Any]) -> None:
    gc.disable()  # states are acyclic tuples: a collection would rescan them to free nothing
    # A profiler running in the coordinator is inherited through fork, where it only slows
    # this worker (about twice, measured) and its statistics never come back: drop it, and
    # when the search is profiled, profile here and hand the statistics over (profiles()).
    sys.setprofile(None)
    prof = cProfile.Profile() if options.get("profile") else None
    part = Partition(index, count, config, options)
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the coordinator is gone: so is the search
            return
        if msg is None:
            return
        method, args = msg
        try:
            if method == PROFILE_STATS:
                reply: tuple[bool, Any] = (True, {})
                if prof is not None:
                    prof.create_stats()
                    reply = (True, prof.stats)
            else:
                if prof is not None:
                    prof.enable()
                try:
                    reply = (True, getattr(part, method)(*args))
                finally:
                    if prof is not None:
                        prof.disable()
        except Exception:  # report it to the coordinator, which raises it
            reply = (False, traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class WorkerError(RuntimeError):
    """A partition failed in a worker process; the message holds its traceback."""


class ProcessPool:
    """One forked worker process per partition (``--workers N``)."""

    def __init__(self, count: int, config: WorldConfig, options: dict[str, Any]) -> None:
        self.size = count
        self.remote = True
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("fork" if "fork" in methods else "spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for i in range(count):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs, i, count, config, options), daemon=True,
                               name=f"sselab-check-{i}")
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)

    def _reply(self, conn: multiprocessing.connection.Connection) -> Any:
        ok, value = conn.recv()
        if not ok:
            raise WorkerError(value)
        return value

    def map(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send the call to every worker, then gather the replies."""
        for conn, a in zip(self.conns, args, strict=True):
            conn.send((method, a))
        return [self._reply(conn) for conn in self.conns]

    def call(self, index: int, method: str, *args: Any) -> Any:
        """Call one worker and wait for its reply."""
        self.conns[index].send((method, args))
        return self._reply(self.conns[index])

    def close(self) -> None:
        """Ask every worker to stop, then join it."""
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def profiles(self) -> list[dict[Any, Any]]:
        """Each worker's cProfile statistics (empty dicts unless the search was profiled)."""
        for conn in self.conns:
            conn.send((PROFILE_STATS, ()))
        return [self._reply(conn) for conn in self.conns]


class DaskPool:
    """One Dask actor per partition on an existing cluster (``--scheduler ADDRESS``)."""

    def __init__(self, count: int, config: WorldConfig, options: dict[str, Any], scheduler: Any) -> None:
        from distributed import Client

        self.client = scheduler if isinstance(scheduler, Client) else Client(scheduler)  # type: ignore[no-untyped-call]
        self._own_client = not isinstance(scheduler, Client)
        workers = list(self.client.scheduler_info()["workers"])
        self.size = count
        self.remote = True
        futures = [self.client.submit(Partition, i, count, config, options, actor=True, pure=False,
                                      workers=[workers[i % len(workers)]] if workers else None)
                   for i in range(count)]
        self.actors = [f.result() for f in futures]

    def map(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Call every actor at once, then gather the results."""
        futures = [getattr(actor, method)(*a) for actor, a in zip(self.actors, args, strict=True)]
        return [f.result() for f in futures]

    def call(self, index: int, method: str, *args: Any) -> Any:
        """Call one actor and wait for its result."""
        return getattr(self.actors[index], method)(*args).result()

    def close(self) -> None:
        """Drop the actors; close the client if this pool opened it (the cluster stays up)."""
        self.actors = []
        if self._own_client:
            self.client.close()  # type: ignore[no-untyped-call]

    def profiles(self) -> list[dict[Any, Any]]:
        """None gathered: the actors run on the cluster's workers, unprofiled."""
        return []


def open_pool(workers: int, config: WorldConfig, options: dict[str, Any],
              scheduler: Any = None) -> Pool:
    """A pool of ``workers`` partitions: Dask actors with a scheduler, else processes or local."""
    if scheduler is not None:
        return DaskPool(workers, config, options, scheduler)
    if workers == 1:
        return LocalPool(1, config, options)
    return ProcessPool(workers, config, options)
