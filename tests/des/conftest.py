"""Helpers for the fleet-simulation tests: small fleets, simulated time only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.faults import Fault, parse_fault
from sims.des.run import Result, simulate
from sims.des.scenarios import PRESETS, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"


def run(spec: str, *, without: Sequence[str] = (), faults: Sequence[str | Fault] = (),
        **settings: Any) -> Result:
    """Simulate a preset (40 clients unless told) or a scenario file, fixes switched off."""
    if spec in PRESETS:
        settings.setdefault("clients", 40)
    extra = [parse_fault(f) if isinstance(f, str) else f for f in faults]
    scenario = load_scenario(spec, settings, extra)
    if without:
        fixes = scenario.settings.fixes.without(*without)
        scenario = dataclasses.replace(
            scenario, settings=dataclasses.replace(scenario.settings, fixes=fixes))
    return simulate(scenario)
