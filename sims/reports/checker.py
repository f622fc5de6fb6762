"""``sselab check`` for the report: the default world, and each fix switched off.

For every fix in :data:`model.fixes.FIXES` the world is checked with that fix
off and the search stopped at its first violation, which breadth-first search
makes a shortest counterexample. Each fix is checked in the first world its
``FixInfo`` names (``worlds``; e.g. a shared sequence can only misorder commits
with two publishers), with the fixes that would mask its bug off too
(``also_off``); a fix no world can show is listed with the reason its row gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from model.fixes import FIXES, Fixes
from model.world import WorldConfig
from sims.check import CheckResult, check

__all__ = ["default_check", "fix_off_checks", "first_lines", "last_lines", "verdict_table"]


def default_check(**bounds: Any) -> CheckResult:
    """The check ``sselab check`` runs with no arguments: every fix on, default bounds."""
    return check(WorldConfig(), **bounds)


def first_lines(result: CheckResult, lines: int = 3) -> str:
    """The first ``lines`` steps of the first counterexample, numbered, one per line."""
    if not result.violations:
        return ""
    steps = result.violations[0].trace[:lines]
    return "\n".join(f"{n}. {label}" for n, label in enumerate(steps, 1))


def last_lines(result: CheckResult, lines: int = 2, after: int = 3) -> str:
    """The last ``lines`` steps of the first counterexample not already among its first ``after``."""
    if not result.violations:
        return ""
    trace = result.violations[0].trace
    start = max(after, len(trace) - lines)
    return "\n".join(f"{n}. {trace[n - 1]}" for n in range(start + 1, len(trace) + 1))


def fix_off_checks(max_states: int = 3_000_000, lines: int = 3,
                   worlds: Mapping[str, Mapping[str, int]] | None = None) -> pd.DataFrame:
    """One row per fix: its shortest counterexample's invariant, length and first steps.

    ``worlds`` overrides a fix's world sizes (default: the first of its ``FixInfo.worlds``).
    """
    rows = []
    for info in FIXES:
        if worlds is not None and info.name in worlds:
            sizes: dict[str, Any] = dict(worlds[info.name])
        else:
            sizes = dict(info.worlds[0]) if info.worlds else {}
        off = (info.name, *info.also_off)
        if not info.worlds and (worlds is None or info.name not in worlds):
            rows.append({
                "fix": info.name, "alias": info.alias or "", "world": "none can show it",
                "outcome": "no world: " + info.no_world, "invariant": "", "steps": 0,
                "first_steps": "", "last_steps": "", "states": 0, "seconds": 0.0,
                "protects": ", ".join(info.protects),
            })
            continue
        config = WorldConfig(fixes=Fixes.all().without(*off), **sizes)
        result = check(config, stop_at_first=True, liveness=False, max_states=max_states)
        v = result.violations[0] if result.violations else None
        if v is not None:
            outcome = "counterexample"
        elif result.complete:
            outcome = "none in this world"
        else:
            outcome = f"none within {result.states:,} states"
        world = ", ".join(f"{k}={val}" for k, val in sizes.items()) or "defaults"
        if info.also_off:
            world += " (also off: " + ", ".join(info.also_off) + ")"
        rows.append({
            "fix": info.name,
            "alias": info.alias or "",
            "world": world,
            "outcome": outcome,
            "invariant": v.invariant if v else "",
            "steps": len(v.steps) if v else 0,
            "first_steps": first_lines(result, lines),
            "last_steps": last_lines(result, 2, lines),
            "states": result.states,
            "seconds": round(result.seconds, 2),
            "protects": ", ".join(info.protects),
        })
    return pd.DataFrame(rows)


def verdict_table(result: CheckResult) -> pd.DataFrame:
    """Each invariant's verdict in one check, one row each."""
    return pd.DataFrame([{"invariant": k, "verdict": v} for k, v in result.invariants.items()])
