"""The SSE wire form of one frame, encoded once per event and shared by every stream."""

from __future__ import annotations

import re

__all__ = ["encode_frame", "retry_frame"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encode_frame(event_id: str | None, event_type: str, data: str) -> bytes:
    """``id:`` (when given), ``event:`` and one ``data:`` line per line of ``data``, CRLF-ended.

    Only CR, LF and CRLF end a line in SSE, so other Unicode line separators that a
    JSON text may hold raw (U+2028, U+0085...) stay inside their ``data:`` line.
    """
    head = f"id: {event_id}\r\nevent: {event_type}\r\n" if event_id is not None \
        else f"event: {event_type}\r\n"
    if "\r" in data or "\n" in data:
        body = "".join(f"data: {line}\r\n" for line in _LINE_BREAK.split(data))
    else:
        body = f"data: {data}\r\n"
    return (head + body + "\r\n").encode()


def retry_frame(milliseconds: int) -> bytes:
    """A frame holding only ``retry:``: the browser's reconnect delay, dispatching no event."""
    return f"retry: {int(milliseconds)}\r\n\r\n".encode()
