"""The reports ``sselab report`` renders: name, title, the question each answers, its sources."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BROOKER_POST", "REPORTS", "SEED_LINK", "SIMULATOR", "ReportInfo", "Source", "names"]


class Source(NamedTuple):
    """A work a report cites: its label and a link (absolute, or relative to ``reports/``)."""

    label: str
    url: str


#: Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog (2015).
BROOKER_POST = Source("Brooker, \"Exponential Backoff And Jitter\" (AWS Architecture Blog)",
                      "https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/")
#: The post's public simulator.
SIMULATOR = Source("aws-samples/aws-arch-backoff-simulator",
                   "https://github.com/aws-samples/aws-arch-backoff-simulator")
#: The seed plan's five fixes and verification steps, as the README describes them.
SEED_LINK = Source("the seed plan (seed/000_af63d3db227666f2.txt) and its verification steps",
                   "../README.md#sselab-seed--the-plans-five-verification-steps")
GRPC_BACKOFF = Source("gRPC connection backoff",
                      "https://github.com/grpc/grpc/blob/master/doc/connection-backoff.md")
HTML_SSE = Source("HTML Standard: server-sent events",
                  "https://html.spec.whatwg.org/multipage/server-sent-events.html")
SOCKETIO = Source("socket.io client options",
                  "https://socket.io/docs/v4/client-options/")
FETCH_ES = Source("Azure/fetch-event-source", "https://github.com/Azure/fetch-event-source")


class ReportInfo(NamedTuple):
    """A report: its notebook's name (``notebooks/NAME.ipynb``), title and question."""

    name: str
    title: str
    question: str
    sources: tuple[Source, ...] = (SEED_LINK,)


#: Every report, in the order the index lists them.
REPORTS: tuple[ReportInfo, ...] = (
    ReportInfo("backoff-timing", "Backoff timing",
               "How long does a client back off per attempt, and when does it give up?",
               (SEED_LINK, BROOKER_POST, GRPC_BACKOFF)),
    ReportInfo("aws-jitter", "Exponential backoff and jitter (AWS reproduction)",
               "Does jitter really cut the work and the time of contending clients?",
               (BROOKER_POST, SIMULATOR)),
    ReportInfo("reconnect-herd", "Reconnect herd",
               "When a replica dies, how hard do the clients hit us when it returns?",
               (SEED_LINK, BROOKER_POST)),
    ReportInfo("real-clients", "Real clients over outage lengths",
               "With the clients people actually run, how long after an outage until they are "
               "back, how hard do they hit us, and when do they give up?",
               (HTML_SSE, FETCH_ES, SOCKETIO, GRPC_BACKOFF, SEED_LINK)),
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
