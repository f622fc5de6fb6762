"""Run one scenario: build the fleet, run it, and return frames and metrics."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from sims.des.fleet import Fleet
from sims.des.metrics import FRAMES, Recorder, build_frames, summary
from sims.des.scenarios import Scenario

__all__ = ["Result", "simulate"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What one run produced: its DataFrames, summary metrics and costs."""

    scenario: Scenario
    frames: dict[str, pd.DataFrame]
    metrics: dict[str, Any]
    wall_seconds: float
    sim_events: int  #: SimPy events processed
    machine_steps: int  #: inputs applied to client, session and subscriber machines
    publishes: int
    lost_messages: int

    def report(self) -> dict[str, Any]:
        """The ``--json`` object: exactly the keys the issue lists."""
        s = self.scenario.settings
        return {
            "scenario": self.scenario.name,
            "clients": s.clients,
            "replicas": s.replicas,
            "duration_s": s.duration,
            "seed": s.seed,
            "fixes": str(s.fixes),
            "wall_seconds": round(self.wall_seconds, 3),
            "sim_events": self.sim_events,
            "metrics": dict(self.metrics),
        }

    def write_parquet(self, out: Path) -> list[Path]:
        """Write every frame to ``out/NAME.parquet``; return the paths."""
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in FRAMES:
            path = out / f"{name}.parquet"
            self.frames[name].to_parquet(path, index=False)
            paths.append(path)
        return paths


def simulate(scenario: Scenario, progress: Callable[[float], None] | None = None) -> Result:
    """Simulate ``scenario``; ``progress`` is called with the simulated time as it advances."""
    started = time.perf_counter()
    rec = Recorder()
    fleet = Fleet(scenario, rec)
    events = fleet.run(progress)
    wall = time.perf_counter() - started
    frames = build_frames(rec, scenario.settings.duration)
    metrics = summary(frames, failures_possible=scenario.settings.fixes.max_reconnect)
    return Result(scenario=scenario, frames=frames, metrics=metrics, wall_seconds=wall,
                  sim_events=events,
                  machine_steps=fleet.client_steps + fleet.session_steps + fleet.subscriber_steps,
                  publishes=rec.publishes, lost_messages=rec.lost_messages)
