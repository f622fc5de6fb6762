"""Speed of the exhaustive checker: states, transitions, seconds and states/s as JSON.

Run: ``python benchmarks/check.py`` (every world below), ``--quick`` (the default
world only), ``--only NAME`` (one world, repeatable), ``--profile`` (also run the
default world under cProfile and keep the top entries, by own time and by
cumulative time, in the JSON), ``--top N`` (how many entries, 15), and any
``check()`` option as ``--workers N`` / ``--scheduler ADDRESS`` /
``--no-reduction`` / ``--sleep-sets``; ``--ratios`` also runs each world without
each reduction and without any (:func:`sims.check.ratios.reduction_ratios`);
``--teeth`` hunts each seed fix's bug (F1..F5 off, one at a time) in the world of
two clients and two replicas and reports the seconds to its shortest counterexample;
``--compiled`` runs all of it on the mypyc build (:mod:`sims.check.compiled`).
Figures are wall time on a shared machine: quote them with the command and the
load average recorded; ``states_per_cpu_second`` (one process) is steadier.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
from typing import Any

from model.fixes import Fixes, info
from model.world import WorldConfig
from sims.check import check, compiled
from sims.check.ratios import reduction_ratios

CONFIGS = {
    "default": WorldConfig(),
    "two-faults": WorldConfig(faults=2),
    "two-publishers-three-events": WorldConfig(publishers=2, events=3),
    "two-clients": WorldConfig(clients=2),
    "two-replicas": WorldConfig(replicas=2),
}
QUICK = ("default",)
#: Worlds run only when named with --only (they take minutes).
SLOW = ("two-clients", "two-replicas")


def profile_top(config: WorldConfig, top: int, **options: Any) -> dict[str, list[str]]:
    """Run ``check(config)`` under cProfile; the ``top`` entries by own and cumulative time."""
    profile = cProfile.Profile()
    profile.enable()
    check(config, liveness=False, **options)
    profile.disable()
    out: dict[str, list[str]] = {}
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(top)
        lines = [" ".join(line.split()) for line in text.getvalue().splitlines()
                 if line.strip()[:1].isdigit()]
        out[order] = lines[:top]
    return out


#: What a seed fix's bug needs beyond its own world once there are two replicas: F5's
#: bug is a client refused max-attempts times, and a refusal needs every replica down
#: (one fault each).
TEETH_2X2_SIZES: dict[str, dict[str, int]] = {"max-reconnect": {"faults": 2}}


def hunt_teeth(options: dict[str, Any]) -> dict[str, Any]:
    """Each seed fix off in the two-client, two-replica world: time to a shortest counterexample."""
    out: dict[str, Any] = {}
    for n in range(1, 6):
        row = info(f"F{n}")
        sizes = (dict(row.worlds[0]) if row.worlds else {}) | TEETH_2X2_SIZES.get(row.name, {})
        config = WorldConfig(**({"clients": 2, "replicas": 2} | sizes),
                             fixes=Fixes().without(row.name, *row.also_off))
        r = check(config, stop_at_first=True, liveness=False, **options)
        first = min(r.violations, key=lambda v: len(v.steps), default=None)
        out[f"F{n} {row.name}"] = {
            "found": [v.invariant for v in r.violations], "seconds": round(r.seconds, 2),
            "states": r.states, "depth": r.depth, "sizes": sizes,
            "counterexample_steps": len(first.steps) if first else None}
    return out


def main(argv: list[str] | None = None) -> None:
    """Run each configuration once and print one JSON object."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", choices=sorted(CONFIGS))
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-reduction", action="store_true")
    p.add_argument("--sleep-sets", action="store_true", help="search with sleep sets too")
    p.add_argument("--ratios", action="store_true",
                   help="also run each world without each reduction, and without any, and "
                   "report the ratios (sims.check.ratios)")
    p.add_argument("--scheduler", help="a Dask scheduler address (with --workers N actors)")
    p.add_argument("--teeth", action="store_true",
                   help="only hunt F1..F5's bugs in the two-client, two-replica world")
    p.add_argument("--compiled", action="store_true",
                   help="run on the mypyc build of model/ and the checker's loop "
                   "(sims.check.compiled; built first if need be)")
    args = p.parse_args(argv)
    if args.compiled and not compiled.active():
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--compiled"]
        try:
            status = compiled.run_on_build([__file__, *rest], lambda m: print(m, file=sys.stderr))
        except compiled.CompileError as exc:
            raise SystemExit(f"check.py --compiled: {exc}") from None
        raise SystemExit(status)
    names = args.only or [n for n in CONFIGS if n not in SLOW and (not args.quick or n in QUICK)]
    options: dict[str, Any] = {}
    if args.workers != 1:
        options["workers"] = args.workers
    if args.no_reduction:
        options["reduction"] = False
    if args.sleep_sets:
        options["sleep_sets"] = True
    if args.scheduler:
        options["scheduler"] = args.scheduler
    results: dict[str, Any] = {}
    if args.teeth:
        names = []
        results = {"teeth_2x2": hunt_teeth(options)}
    for name in names:
        config = CONFIGS[name]
        r = check(config, **options)
        results[name] = {**r.to_json(), "violations": [v.invariant for v in r.violations],
                         "states_per_cpu_second": round(r.states / r.stats["cpu_seconds"])
                         if options.get("workers", 1) == 1 and r.stats["cpu_seconds"] else None}
        if args.ratios:
            results[name]["reduction_ratios"] = reduction_ratios(config, r, options)
    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "compiled": compiled.active(),
                           "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                           "options": options, "results": results}
    if args.profile:
        out["profile_top"] = profile_top(CONFIGS["default"], args.top,
                                         **{k: v for k, v in options.items()
                                            if k not in ("workers", "scheduler")})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
