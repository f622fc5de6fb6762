"""The reports ``sselab report`` renders: name, title and the question each one answers."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["REPORTS", "ReportInfo", "names"]


class ReportInfo(NamedTuple):
    """A report: its notebook's name (``notebooks/NAME.ipynb``), title and question."""

    name: str
    title: str
    question: str


#: Every report, in the order the index lists them.
REPORTS: tuple[ReportInfo, ...] = (
    ReportInfo("backoff-timing", "Backoff timing",
               "How long does a client back off per attempt, and when does it give up?"),
    ReportInfo("aws-jitter", "Exponential backoff and jitter (AWS reproduction)",
               "Does jitter really cut the work and the time of contending clients?"),
    ReportInfo("reconnect-herd", "Reconnect herd",
               "When a replica dies, how hard do the clients hit us when it returns?"),
    ReportInfo("replay-storm", "Replay storm",
               "During a deploy, how many rows per second does replay read, and how long "
               "until clients are back in sync?"),
    ReportInfo("staleness", "Silent staleness",
               "Which fix keeps which fault from leaving clients silently stale?"),
    ReportInfo("detection", "Sentinel detection",
               "How fast is a silently dead Redis subscriber detected?"),
    ReportInfo("checker-summary", "Checker summary",
               "Do the invariants hold, and does every fix have teeth?"),
)


def names() -> list[str]:
    """The report names, in index order."""
    return [r.name for r in REPORTS]
