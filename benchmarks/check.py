"""Speed of the exhaustive checker: states, transitions, seconds and states/s as JSON.

Run: ``python benchmarks/check.py`` (add ``--quick`` to skip the larger world).
"""

from __future__ import annotations

import cProfile
import io
import json
import platform
import pstats
import sys

from model.world import WorldConfig
from sims.check import check

CONFIGS = {
    "default": WorldConfig(),
    "two-faults": WorldConfig(faults=2),
    "two-publishers-three-events": WorldConfig(publishers=2, events=3),
}


def main() -> None:
    """Run each configuration once and print one JSON object."""
    quick = "--quick" in sys.argv
    results = {}
    for name, config in CONFIGS.items():
        if quick and name != "default":
            continue
        r = check(config)
        results[name] = {
            "config": config.to_dict(),
            "states": r.states,
            "transitions": r.transitions,
            "seconds": round(r.seconds, 2),
            "states_per_second": round(r.states_per_second),
            "complete": r.complete,
            "violations": [v.invariant for v in r.violations],
        }
    profile = cProfile.Profile()
    profile.enable()
    check(CONFIGS["default"], liveness=False)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
    top = [line.strip() for line in out.getvalue().splitlines() if line.strip()[:1].isdigit()]
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "results": results, "profile_top_tottime": top[:8]}, indent=2))


if __name__ == "__main__":
    main()
