"""What a check returns: verdicts, counterexamples as steps, and what the search cost."""

from __future__ import annotations

import dataclasses
from typing import Any

from model.invariants import INVARIANTS
from model.world import Kind, WorldConfig

__all__ = ["CheckResult", "Key", "Step", "Violation"]

Key = tuple[Any, ...]  #: Transition.key: (kind, actor, variant, args)


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a counterexample: the transition taken and the fields it changed."""

    kind: Kind
    actor: int
    variant: str
    args: tuple[Any, ...]
    label: str  #: the transition's sentence
    changes: tuple[tuple[str, str], ...]

    @property
    def key(self) -> Key:
        """The transition's key, to replay it (:func:`sims.check.replay`)."""
        return (self.kind, self.actor, self.variant, self.args)


@dataclasses.dataclass(frozen=True)
class Violation:
    """An invariant broken, with the steps that break it (and the cycle, for liveness)."""

    invariant: str
    kind: str  #: "safety" or "liveness"
    steps: tuple[Step, ...]
    cycle: tuple[Step, ...] = ()
    found_by: str = "search"  #: "search", or "simulation" (a shrunk random walk)

    @property
    def trace(self) -> list[str]:
        """The sentences of the steps, in order."""
        return [s.label for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        """The violation as plain JSON values."""
        out: dict[str, Any] = {"invariant": self.invariant, "kind": self.kind, "trace": self.trace}
        if self.kind == "liveness":
            out["cycle"] = [s.label for s in self.cycle]
        return out


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What a check found and what it cost."""

    config: WorldConfig
    symmetry: bool
    states: int
    transitions: int
    depth: int
    seconds: float
    complete: bool
    incomplete_reason: str | None
    violations: tuple[Violation, ...]
    judged: frozenset[str] = frozenset(i.name for i in INVARIANTS)
    #: the search's cost and shape: cpu_seconds, peak_memory_mb, bytes_per_state, workers,
    #: reductions (which were on, and states/transitions they spared), profile_top
    stats: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def invariants(self) -> dict[str, str]:
        """Each invariant's verdict: holds, violated, unknown when incomplete, or not judged."""
        broken = {v.invariant for v in self.violations}
        out = {}
        for info in INVARIANTS:
            if info.name in broken:
                out[info.name] = "violated"
            elif info.name not in self.judged:
                out[info.name] = "not judged"
            else:
                out[info.name] = "holds" if self.complete else "unknown"
        return out

    @property
    def states_per_second(self) -> float:
        """Distinct states found per second of wall time."""
        return self.states / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Complete and nothing violated."""
        return self.complete and not self.violations

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON object ``sselab check --json`` prints."""
        return {
            "fixes": list(self.config.fixes.on()),
            "config": self.config.to_dict() | {"symmetry": self.symmetry},
            "states": self.states,
            "transitions": self.transitions,
            "depth": self.depth,
            "seconds": round(self.seconds, 3),
            "states_per_second": round(self.states_per_second),
            "complete": self.complete,
            "invariants": self.invariants,
            "violations": [v.to_json() for v in self.violations],
            "stats": self.stats,
        }
