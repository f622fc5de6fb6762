"""Bug hunt: how fast Hypothesis and the exhaustive checker each find every seed bug.

For each fix whose absence this world can show (F1..F5 and the additions
topic-sequence, retention-floor, head-before-snapshot, stable-reset,
resync-after-recovery), switch it off and hunt the bug two ways, in two worlds:

* **the checker** (``sims.check.check``, breadth first, stopping at the first BFS
  layer with a violation, safety only): seconds, states and transitions explored,
  and the length of its (shortest) counterexample;
* **Hypothesis** (``tests/stateful``'s ``WorldMachine``, the heal phase off as in
  the teeth tests, derandomized): runs and rule steps until the first violation,
  seconds to it and with shrinking, and the shrunk length. ``--samples`` runs it
  that many times under different derandomized seeds (machine names) and reports
  the median and the worst.

Worlds: ``checker`` is the one ``tests/check`` uses to show the bug (defaults,
``replay_limit=1, events=3, faults=0`` for F1's bounded-replay, two publishers
for topic-sequence); ``big`` has two clients, two replicas, two publishers,
three events and two faults, with the checker bounded to ``BIG_STATES`` states
(past that it reports not found, incomplete). Hypothesis gets exactly the same
world: every size pinned, only the schedule (and the three world-invisible fixes)
drawn.

Run: ``python benchmarks/bug_hunt.py`` (``--quick``: the checker's world only,
one sample; ``--samples N``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, settings

from model.fixes import FIXES, Fixes, resolve_fix_name, teeth
from model.fixes import info as fix_info
from model.world import WorldConfig
from sims.check import check

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from stateful.world_machine import WorldMachine, find_violation, machine_for

#: Hypothesis's hunt: derandomized, stops at the first violation, then shrinks it.
HUNT = settings(derandomize=True, database=None, max_examples=5000, stateful_step_count=25,
                deadline=None, report_multiple_bugs=False,
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck))
#: The checker's state bound in the big world.
BIG_STATES = 300_000

BIG = {"clients": 2, "replicas": 2, "publishers": 2, "events": 3, "faults": 2}

# (fix off, sizes of the checker's world, sizes of the big world): each fix's first world
# from model.fixes.FIXES, and the big world with that world's own overrides on top.
BUGS: list[tuple[str, dict[str, int], dict[str, int]]] = [
    (t.fix, t.sizes, BIG | t.sizes) for t in teeth(only_first=True)
]


def protects(fix: str) -> list[str]:
    """The invariants model.fixes says the fix protects."""
    name = resolve_fix_name(fix)
    return list(next(info.protects for info in FIXES if info.name == name))


def hunt_checker(config: WorldConfig, max_states: int) -> dict[str, Any]:
    """The checker's search for the first violation in ``config``."""
    result = check(config, stop_at_first=True, liveness=False, max_states=max_states)
    first = min(result.violations, key=lambda v: len(v.steps), default=None)
    return {
        "found": [v.invariant for v in result.violations],
        "seconds": round(result.seconds, 3),
        "states": result.states,
        "transitions": result.transitions,
        "depth": result.depth,
        "complete": result.complete,
        "counterexample_steps": len(first.steps) if first else None,
    }


def hunt_hypothesis(fixes: Fixes, config: WorldConfig, samples: int) -> dict[str, Any]:
    """Hypothesis's search in exactly ``config``'s world, ``samples`` derandomized times."""
    sizes = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "fixes"}
    base = machine_for(fixes, healing=False, sizes=sizes)
    runs: list[dict[str, Any]] = []
    for n in range(samples):
        machine: type[WorldMachine] = type(f"{base.__name__}_sample{n}", (base,), {
            "counters": {"runs": 0, "steps": 0}, "__module__": base.__module__})
        found = find_violation(machine, HUNT)
        if found is None:
            runs.append({"found": None, "runs": int(machine.counters["runs"]),
                         "steps": int(machine.counters["steps"])})
            continue
        runs.append({"found": found.invariant, "runs": found.runs, "steps": found.steps,
                     "seconds_to_first": round(found.first_seconds, 3),
                     "seconds_with_shrinking": round(found.seconds, 3),
                     "counterexample_steps": len(found.trace)})
    hits = [r for r in runs if r["found"]]

    def median(key: str) -> float | None:
        return statistics.median(r[key] for r in hits) if hits else None

    def worst(key: str) -> float | None:
        return max(r[key] for r in hits) if hits else None

    return {
        "found": sorted({r["found"] for r in hits}),
        "found_in": f"{len(hits)}/{samples}",
        "median": {k: median(k) for k in ("runs", "steps", "seconds_to_first",
                                          "seconds_with_shrinking", "counterexample_steps")},
        "worst": {k: worst(k) for k in ("runs", "steps", "seconds_to_first",
                                        "seconds_with_shrinking")},
        "samples": runs,
    }


def main() -> None:
    """Hunt every seed bug both ways and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the checker's world only, one sample")
    parser.add_argument("--samples", type=int, default=3, help="Hypothesis runs per bug and world")
    args = parser.parse_args()
    samples = 1 if args.quick else args.samples
    started = time.perf_counter()
    bugs = []
    for fix, small, big in BUGS:
        fixes = Fixes.all().without(fix, *fix_info(fix).also_off)
        entry: dict[str, Any] = {"fix": resolve_fix_name(fix), "alias": fix if fix.startswith("F") else None,
                                 "protects": protects(fix), "worlds": {}}
        worlds = {"checker": (small, 3_000_000)}
        if not args.quick:
            worlds["big"] = (big, BIG_STATES)
        for world, (sizes, bound) in worlds.items():
            config = WorldConfig(fixes=fixes, **sizes)
            entry["worlds"][world] = {
                "sizes": sizes or "defaults",
                "checker": hunt_checker(config, bound),
                "hypothesis": hunt_hypothesis(fixes, config, samples),
            }
            print(f"{fix:>22} {world:>7}: checker "
                  f"{entry['worlds'][world]['checker']['seconds']:>7.2f} s, hypothesis median "
                  f"{entry['worlds'][world]['hypothesis']['median']['seconds_to_first']} s",
                  file=sys.stderr, flush=True)
        bugs.append(entry)
    print(json.dumps({
        "python": platform.python_version(),
        "hypothesis": hypothesis.__version__,
        "machine": platform.machine(),
        "settings": {"max_examples": HUNT.max_examples, "stateful_step_count": HUNT.stateful_step_count,
                     "samples": samples, "big_world_state_bound": BIG_STATES},
        "seconds": round(time.perf_counter() - started, 1),
        "bugs": bugs,
    }, indent=2))


if __name__ == "__main__":
    main()
