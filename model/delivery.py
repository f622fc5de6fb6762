"""The three rules of ``ordered-delivery``, as pure predicates every engine calls.

A browser's ``EventSource`` does not deduplicate, so the stack must not rely on the
client to: on one stream, event ids strictly increase; a client's cursor never moves
backwards within an epoch; and no event is handed to the application twice. The
checker's world (``model.world_shell``) and the SimPy fleet (``sims.des``) call these
when a step happens, and record a breach under ``model.invariants.ORDERED_DELIVERY``.
"""

from __future__ import annotations

from model.core import EventId

__all__ = ["cursor_moved_back", "delivered_again", "sent_out_of_order"]


def sent_out_of_order(last_sent: int, seq: int) -> bool:
    """Whether sending event ``seq`` on a stream whose last sent id was ``last_sent`` breaks order."""
    return seq <= last_sent


def cursor_moved_back(was: EventId | None, now: EventId | None) -> bool:
    """Whether a client's cursor moved from ``was`` back to ``now`` within one epoch."""
    return was is not None and now is not None and now.epoch == was.epoch and now.seq < was.seq


def delivered_again(top: int, seq: int) -> bool:
    """Whether handing event ``seq`` to the application repeats one at or below ``top``."""
    return seq <= top
