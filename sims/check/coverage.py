"""What a search or a walk reached: transition kinds and machine (state, input) pairs."""

from __future__ import annotations

from collections.abc import Iterable

from model.world import Transition

__all__ = ["coverage_of", "summarize"]

Item = tuple[str, ...]  #: ("kind", kind, variant) or ("fed", machine, state before, input type)


def coverage_of(transitions: Iterable[Transition]) -> set[Item]:
    """The kinds these transitions are and the (machine, state, input) pairs they fed."""
    out: set[Item] = set()
    for t in transitions:
        out.add(("kind", t.kind.value, t.variant))
        for fed in t.feeds:
            name = type(fed.input).__name__ if fed.input is not None else "-"
            out.add(("fed", fed.machine.value, fed.before, name))
    return out


def summarize(items: set[Item]) -> dict[str, list[str]]:
    """Coverage as sorted readable lists: kinds, and machine pairs."""
    kinds = sorted(f"{k}/{v}" if v else k for _, k, v in (i for i in items if i[0] == "kind"))
    fed = sorted(f"{m}: {b or '-'} + {n}" for _, m, b, n in (i for i in items if i[0] == "fed"))
    return {"kinds": kinds, "machine_pairs": fed}
