"""Policies a user names on the command line: a spec, a real client, or ``module:function``.

``sselab report --policy TEXT`` accepts

* a spec of :func:`model.backoff.parse_spec`, e.g.
  ``exponential(base=0.5,factor=1.5,cap=60,jitter=full)`` (``max_attempts=N`` included);
* a real client of :data:`model.backoff.CLIENT_POLICIES` (``eventsource``, ``socket.io``, ...);
* ``module:function``: either a function of no arguments returning a
  :class:`~model.backoff.BackoffPolicy` or a spec string, or a delay function
  ``(attempt, u, previous) -> seconds`` with the contract of :func:`model.backoff.delay`,
  which becomes a policy with that ``custom`` delay.

Every policy is a :class:`~model.backoff.BackoffPolicy`, so the client machine and every
report use it through the one backoff module. A bad text raises ``ValueError`` saying
what is accepted; :func:`load_policy` also tries a custom delay function on a few draws
so a function that returns nonsense is refused before a report runs for minutes.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import NamedTuple

from model.backoff import CLIENT_POLICIES, SPEC_HELP, BackoffPolicy, PolicySpec, delay, parse_spec

__all__ = ["ACCEPTED", "Named", "load_policy"]

#: What ``--policy`` accepts, for error messages.
ACCEPTED = (f"a policy spec ({SPEC_HELP}); a real client ({', '.join(CLIENT_POLICIES)}); or "
            "module:function naming a delay function (attempt, u, previous) -> seconds or a "
            "function of no arguments returning a BackoffPolicy or a spec")


class Named(NamedTuple):
    """A loaded policy, the attempts it gives up after (None: the report's own), and its label."""

    policy: BackoffPolicy
    max_attempts: int | None
    label: str


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"bad --policy {text!r}: {why}; accepted: {ACCEPTED}")


def _from_callable(text: str) -> Named:
    module_name, _, attr = text.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's to fix
        raise _bad(text, f"cannot import {module_name!r} ({exc.__class__.__name__}: {exc})") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise _bad(text, f"{module_name} has no function {attr!r}")
    try:
        required = [p for p in inspect.signature(func).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        required = []
    if not required:
        made = func()
        if isinstance(made, str):
            parsed = _spec(made)
            return Named(parsed.policy, parsed.max_attempts, text.strip())
        if isinstance(made, BackoffPolicy):
            return Named(made, None, text.strip())
        raise _bad(text, f"{text} returned {type(made).__name__}, not a BackoffPolicy or a spec")
    policy = BackoffPolicy(custom=func, name=text.strip())
    previous: float | None = None
    for attempt, u in ((1, 0.0), (2, 0.5), (3, 0.999), (10, 0.25)):
        try:
            value = delay(policy, attempt, u, previous)
        except Exception as exc:
            raise _bad(text, f"{text}({attempt}, {u}, {previous}) raised "
                             f"{exc.__class__.__name__}: {exc}") from None
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise _bad(text, f"{text}({attempt}, {u}, {previous}) returned {value!r}, "
                             "not a finite number of seconds >= 0")
        previous = value
    return Named(policy, None, text.strip())


def _spec(text: str) -> PolicySpec:
    try:
        return parse_spec(text)
    except ValueError as exc:
        raise ValueError(f"bad --policy {text!r}: {exc}") from None


def load_policy(text: str) -> Named:
    """The policy ``text`` names (see the module docstring); ``ValueError`` says what is accepted."""
    stripped = text.strip()
    if not stripped:
        raise _bad(text, "empty")
    if stripped.lower() in CLIENT_POLICIES:
        policy, attempts = CLIENT_POLICIES[stripped.lower()]
        return Named(policy, attempts, stripped.lower())
    if ":" in stripped and "(" not in stripped:
        return _from_callable(stripped)
    parsed = _spec(stripped)
    return Named(parsed.policy, parsed.max_attempts, stripped)
