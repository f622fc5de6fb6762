"""Partial-order reduction: which of a state's transitions the search must follow."""

from __future__ import annotations

from model.world import State, Transition, WorldConfig

__all__ = ["Reducer"]


class Reducer:
    """Chooses an ample subset of a state's transitions (all of them when ``por`` is off)."""

    def __init__(self, config: WorldConfig, *, por: bool = True) -> None:
        self.config = config
        self.por = por

    def ample(self, state: State, succ: list[Transition]) -> list[Transition]:
        """The transitions to follow from ``state`` (``succ`` itself when nothing is spared)."""
        return succ
