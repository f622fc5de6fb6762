"""A grid of simulations on Dask distributed, gathered into one DataFrame.

A sweep is a scenario, axes of settings (``policy``, ``backoff_cap``,
``heartbeat_timeout``, ``replay_limit``, ``clients``, or any other setting) and a
list of seeds. Every combination times every seed is one cell, run by
:func:`run_cell` on a Dask worker; each cell returns one row: its settings, its
seed, the run's summary metrics, the invariants it broke and what it cost.

By default the cells run on a :class:`distributed.LocalCluster` this process
starts (worker processes, one thread each, so the cores run in parallel; or
threads in this process with ``processes=False``); give ``scheduler`` to use a
cluster that is already running. Dask is imported only here, inside
:func:`sweep`, so the command line stays quick to start.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from sims.des.settings import settings_from_mapping

__all__ = ["grid", "run_cell", "sweep"]


def grid(axes: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, times every seed, in a stable order."""
    names = list(axes)
    cells = []
    for values in itertools.product(*(axes[n] for n in names)):
        for seed in seeds:
            cells.append({**dict(zip(names, values, strict=True)), "seed": seed})
    return cells


def run_cell(scenario: str, cell: Mapping[str, Any], base: Mapping[str, Any],
             without: Sequence[str] = ()) -> dict[str, Any]:
    """Run one cell of a sweep; return its row (settings, seed, metrics, costs)."""
    import dataclasses

    from sims.des.run import simulate
    from sims.des.scenarios import load_scenario
    from sims.des.verdict import violations

    overrides = settings_from_mapping({**base, **cell}, where="sweep cell")
    sc = load_scenario(scenario, overrides)
    if without:
        sc = dataclasses.replace(sc, settings=dataclasses.replace(
            sc.settings, fixes=sc.settings.fixes.without(*without)))
    result = simulate(sc)
    report = result.report()
    row: dict[str, Any] = {"scenario": sc.name, **dict(cell)}
    row.update(report["metrics"])
    row["fixes"] = report["fixes"]
    row["violations"] = ",".join(violations(result))
    row["sim_events"] = result.sim_events
    row["machine_steps"] = result.machine_steps
    row["wall_seconds"] = result.wall_seconds
    return row


def sweep(scenario: str, axes: Mapping[str, Sequence[Any]], seeds: Sequence[int], *,
          base: Mapping[str, Any] | None = None, without: Sequence[str] = (),
          scheduler: str | None = None, workers: int | None = None, processes: bool = True,
          progress: bool | None = None,
          on_cluster: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run the grid on Dask and return one DataFrame, a row per cell in grid order."""
    from dask import distributed
    from tqdm import tqdm

    dist: Any = distributed  # untyped: keep mypy --strict quiet about its calls

    base = dict(base or {})
    cells = grid(axes, seeds)
    for cell in cells:  # fail here, not on a worker, for a bad value
        settings_from_mapping({**base, **cell}, where="sweep")
    cluster: Any = None
    if scheduler is not None:
        client = dist.Client(scheduler)
    else:
        cluster = dist.LocalCluster(n_workers=workers, threads_per_worker=1,
                                    processes=processes, dashboard_address=None)
        client = dist.Client(cluster)
    try:
        if on_cluster is not None:
            on_cluster(str(client.scheduler.address) if client.scheduler else "?")
        futures = [client.submit(run_cell, scenario, cell, base, tuple(without), pure=False)
                   for cell in cells]
        order = {f.key: i for i, f in enumerate(futures)}
        rows: list[dict[str, Any] | None] = [None] * len(cells)
        bar = tqdm(total=len(cells), unit="run", file=sys.stderr,
                   disable=None if progress is None else not progress, desc=f"sweep {scenario}")
        try:
            for future in dist.as_completed(futures):
                rows[order[future.key]] = future.result()
                bar.update(1)
        finally:
            bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return pd.DataFrame.from_records([r for r in rows if r is not None])
