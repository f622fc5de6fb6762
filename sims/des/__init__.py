"""Fleet simulation in SimPy: timed worlds of clients, replicas, Redis and Postgres.

The machines in ``model/`` decide; this package times them. :mod:`sims.des.fleet`
wires the SimPy model from parts that each hold one job (its essay lists them),
:mod:`sims.des.scenarios` holds the presets and scenario files,
:mod:`sims.des.metrics` the pandas DataFrames, :mod:`sims.des.run` one run and
:mod:`sims.des.sweep` a grid of runs on Dask.
"""

from __future__ import annotations

from sims.des.run import Result, simulate
from sims.des.scenarios import PRESETS, Scenario, ScenarioError, load_scenario
from sims.des.settings import Settings

__all__ = ["PRESETS", "Result", "Scenario", "ScenarioError", "Settings", "load_scenario", "simulate"]
