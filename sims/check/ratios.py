"""What each reduction saved: the same world searched again without it.

One function for ``sselab check --ratios`` and ``benchmarks/check.py --ratios``. Sleep
sets never change the states, only the moves computed, so their ratio comes from the
run itself (``transitions_taken`` against ``transitions``); symmetry and dead fields
merge states, so theirs needs a second search with that reduction off (the others
left as they were), and one with every reduction off. A second search that hits a
bound gives a lower bound on the ratio (``complete`` false), never a pass.
"""

from __future__ import annotations

from typing import Any

from model.world import WorldConfig
from sims.check.result import CheckResult

__all__ = ["MERGING", "reduction_ratios"]

#: the reductions that merge states (``check()`` keyword, as ``stats.reductions`` names it)
MERGING = ("client_symmetry", "replica_symmetry", "dead_fields")


def reduction_ratios(config: WorldConfig, result: CheckResult,
                     options: dict[str, Any]) -> dict[str, Any]:
    """Each reduction that was on in ``result``: states (or moves) without it / with it."""
    from sims.check import check  # the package imports this module's users, not this module

    on = result.stats.get("reductions", {})
    out: dict[str, Any] = {}
    if on.get("sleep_sets"):
        taken = result.stats["transitions_taken"]
        out["sleep_sets"] = {"transitions": result.transitions, "transitions_taken": taken,
                             "ratio": round(result.transitions / taken, 4) if taken else None}
    runs = {f"without_{name}": {name: False} for name in MERGING if on.get(name)}
    if len(runs) + len(out) > 1:  # with one reduction on, "without it" is "without any"
        runs["without_any"] = {"reduction": False}
    base = {k: v for k, v in options.items() if k not in ("progress", "profile", "coverage")}
    for label, off in runs.items():
        plain = check(config, **(base | off))
        row: dict[str, Any] = {
            "states_without": plain.states, "states_with": result.states,
            "ratio": round(plain.states / result.states, 4) if result.states else None,
            "transitions_without": plain.transitions, "seconds_without": round(plain.seconds, 3),
            "complete": plain.complete and result.complete,
        }
        if row["complete"]:
            row["same_verdicts"] = plain.invariants == result.invariants
        out[label] = row
    return out
