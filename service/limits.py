"""Caps the service enforces before work starts: open streams, JSON shape, retry hints.

* :class:`Admission` counts open streams per token, per client address and per
  process; a stream over a cap is refused with 429 and ``Retry-After``.
* :func:`check_json` refuses what a publish may not hold: NaN and infinities,
  NUL characters, nesting deeper than ``max_depth`` and more than ``max_nodes``
  values (a deeply nested event would poison every later snapshot).
  :func:`too_deep` finds excessive nesting in the raw body before it is parsed,
  so the parser itself is never asked to recurse a thousand levels.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any

__all__ = ["Admission", "check_json", "too_deep"]

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]")


class Admission:
    """Open-stream counts per token, per address and in total, against their caps."""

    def __init__(self, *, per_token: int, per_address: int, total: int) -> None:
        self.per_token, self.per_address, self.total = per_token, per_address, total
        self._tokens: collections.Counter[str] = collections.Counter()
        self._addresses: collections.Counter[str] = collections.Counter()
        self.open = 0

    def admit(self, token_id: str, address: str) -> str | None:
        """Count one more stream, or name the cap it would break (``process``, ``token``, ``address``)."""
        if self.open >= self.total:
            return "process"
        if self._tokens[token_id] >= self.per_token:
            return "token"
        if self._addresses[address] >= self.per_address:
            return "address"
        self._tokens[token_id] += 1
        self._addresses[address] += 1
        self.open += 1
        return None

    def release(self, token_id: str, address: str) -> None:
        """One admitted stream has ended."""
        for counter, key in ((self._tokens, token_id), (self._addresses, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        self.open -= 1


def too_deep(body: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``max_depth``."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", body))
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def check_json(value: Any, *, max_depth: int = 32, max_nodes: int = 10000) -> None:
    """Raise ValueError naming what is wrong and what is accepted."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise ValueError(f"data holds more than {max_nodes} values (SSELAB_MAX_JSON_NODES)")
        if isinstance(item, dict):
            if depth > max_depth:
                raise ValueError(f"data nests deeper than {max_depth} levels "
                                 "(SSELAB_MAX_JSON_DEPTH)")
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError("data may not contain NUL characters")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise ValueError(f"data nests deeper than {max_depth} levels "
                                 "(SSELAB_MAX_JSON_DEPTH)")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("data may not contain NaN or infinities")
        elif isinstance(item, str) and "\x00" in item:
            raise ValueError("data may not contain NUL characters")
