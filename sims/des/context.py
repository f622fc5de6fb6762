"""What every part of the fleet shares: clock, chance, settings, machine configs, counts.

One :class:`Context` per run. It holds the SimPy environment (the only clock), the
one seeded ``random.Random`` every draw comes from, the scenario's settings, the
machines' configurations built from them, the :class:`~sims.des.metrics.Recorder`
rows go to, and how many inputs each kind of machine took. It decides nothing and
knows no actor: the actors get it, and the narrow collaborators they talk to, when
the fleet is wired together (:mod:`sims.des.fleet`).
"""

from __future__ import annotations

import random

import simpy

from model.core import Log
from sims.des.metrics import Recorder
from sims.des.settings import Settings

__all__ = ["Context"]


class Context:
    """The run's clock, random generator, settings, machine configurations and counts."""

    __slots__ = ("ccfg", "client_steps", "env", "latency", "rec", "redis_latency", "rng", "scfg",
                 "session_steps", "settings", "subcfg", "subscriber_steps")

    def __init__(self, settings: Settings, rec: Recorder) -> None:
        self.settings = settings
        self.env = simpy.Environment()
        self.rng = random.Random(settings.seed)
        self.rec = rec
        self.ccfg = settings.client_config()
        self.scfg = settings.session_config()
        self.subcfg = settings.subscriber_config()
        self.latency = settings.network_latency  #: one way, client <-> replica
        self.redis_latency = settings.redis_latency  #: one way, replica <-> Redis
        self.client_steps = 0
        self.session_steps = 0
        self.subscriber_steps = 0

    def log(self, action: Log) -> None:
        """Carry out a machine's ``Log``: count the line by level."""
        logs = self.rec.logs
        logs[action.level] = logs.get(action.level, 0) + 1
