"""Speed and scale of the fleet simulation, printed as one JSON object.

Measures, in one run on this machine:

* ``raw_simpy``: a bare loop of timeouts (``PROCESSES`` processes each yielding
  ``env.timeout(1)``), stepped by the same ``peek()``/``step()`` loop the
  simulation uses -- the most SimPy events per second this machine manages;
* the ``redis-outage`` preset with 10,000 clients, 4 replicas and one simulated
  hour, then 100,000 clients (``--clients`` to change the sizes): wall time, SimPy
  events and machine steps, their rates, and the events rate as a ratio of the
  raw SimPy rate;
* whether the issue's targets are met: 10,000 clients in at most 60 s, cost
  growing linearly with clients (wall time per client within 1.5x across sizes),
  and at least half the raw SimPy rate.

Usage: ``python benchmarks/des.py [--clients 10000,100000] [--duration 3600]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Generator
from typing import Any

import simpy

from sims.des.run import simulate
from sims.des.scenarios import load_scenario

PROCESSES = 1000  #: processes in the raw SimPy loop
RAW_EVENTS = 3_000_000  #: timeouts the raw loop processes


def raw_simpy_rate(events: int = RAW_EVENTS, processes: int = PROCESSES) -> dict[str, Any]:
    """SimPy events per second for a bare loop of timeouts."""
    env = simpy.Environment()

    def ticker() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(1)

    for _ in range(processes):
        env.process(ticker())
    until = events / processes
    step, peek = env.step, env.peek
    count = 0
    started = time.perf_counter()
    while peek() < until:
        step()
        count += 1
    wall = time.perf_counter() - started
    return {"events": count, "wall_seconds": round(wall, 3), "events_per_s": round(count / wall)}


def fleet_run(clients: int, duration: float, replicas: int, raw_rate: float) -> dict[str, Any]:
    """One redis-outage run: its costs, rates and metrics."""
    scenario = load_scenario("redis-outage", {"clients": clients, "replicas": replicas,
                                              "duration": duration, "seed": 1})
    result = simulate(scenario)
    wall = result.wall_seconds
    rate = result.sim_events / wall
    steps = result.machine_steps
    return {
        "clients": clients,
        "replicas": replicas,
        "duration_s": duration,
        "wall_seconds": round(wall, 3),
        "wall_ms_per_client": round(1000 * wall / clients, 4),
        "sim_events": result.sim_events,
        "sim_events_per_s": round(rate),
        "ratio_to_raw_simpy": round(rate / raw_rate, 3),
        "machine_steps": steps,
        "machine_steps_per_s": round(steps / wall),
        "events_and_steps_per_s_ratio_to_raw": round((result.sim_events + steps) / wall / raw_rate,
                                                     3),
        "publishes": result.publishes,
        "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "metrics": result.metrics,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10000,100000",
                        help="comma-separated fleet sizes (default 10000,100000)")
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--raw-events", type=int, default=RAW_EVENTS)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.clients.split(",") if x.strip()]
    load_before = [round(x, 2) for x in os.getloadavg()]
    raw = raw_simpy_rate(args.raw_events)
    runs = []
    for clients in sizes:
        runs.append(fleet_run(clients, args.duration, args.replicas, raw["events_per_s"]))
        print(f"{clients} clients: {runs[-1]['wall_seconds']} s", file=sys.stderr)
    raw_after = raw_simpy_rate(args.raw_events)  # the machine may be shared: measure twice
    per_client = [r["wall_ms_per_client"] for r in runs]
    first = next((r for r in runs if r["clients"] == 10_000), None)
    targets = {
        "10k_clients_at_most_60s": None if first is None else first["wall_seconds"] <= 60.0,
        "linear_cost_within_1.5x": (max(per_client) / min(per_client) <= 1.5
                                    if len(runs) > 1 else None),
        "at_least_half_raw_simpy_rate": all(r["ratio_to_raw_simpy"] >= 0.5 for r in runs),
    }
    print(json.dumps({
        "benchmark": "des",
        "scenario": "redis-outage",
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "raw_simpy": raw,
        "raw_simpy_after": raw_after,
        "runs": runs,
        "cost_per_client_spread": round(max(per_client) / min(per_client), 3) if runs else None,
        "targets": targets,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
