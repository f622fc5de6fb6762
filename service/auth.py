"""Signed bearer tokens and stream tickets: HS256 JWTs, scoped, bounded, revocable.

A **user** token (``role: user``) reads its own stream and snapshot. A
**publisher** token (``role: publisher``) publishes to the topics its ``topics``
claim matches (exact names or ``fnmatch`` patterns such as ``team-*``); a
publisher token without that claim may publish nowhere. A **stream ticket**
(``typ: ticket``) is minted by ``POST /stream/ticket`` from a user token: it is
good for opening ``GET /stream`` only, for a short time (``SSELAB_TICKET_TTL_S``),
and carries its parent token's id and expiry, so the stream it opens still ends
when the parent expires and is revoked with it. Tickets are what a browser puts in
the query string (``EventSource`` cannot send headers).

Every token has ``sub`` (the user, validated like a publish's ``user``), ``iat``,
``exp`` and ``jti`` (its id, for revocation and per-token caps); a lifetime over
``max_ttl`` is refused. Error messages never echo the token or PyJWT's text.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import jwt

__all__ = [
    "MIN_SECRET_BYTES", "ROLES", "USER_PATTERN", "AuthError", "Principal", "issue_ticket",
    "issue_token", "may_publish", "user_problem", "verify_token",
]

Role = Literal["user", "publisher"]
ROLES: tuple[Role, ...] = ("user", "publisher")
_ALGORITHM = "HS256"
#: The shortest key the service accepts (RFC 7518 3.2: at least the hash's 256 bits).
MIN_SECRET_BYTES = 32
#: A user name (a topic): 1 to 200 characters, no control characters.
USER_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"
_USER = re.compile(USER_PATTERN)
#: Clock skew tolerated on ``iat`` (seconds).
_LEEWAY = 60.0


class AuthError(Exception):
    """A token is missing, forged, expired or malformed; ``hint`` says what to do."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Principal(NamedTuple):
    """Who a verified token speaks for, until when (Unix seconds), and what it may do."""

    user: str
    role: Role
    expires_at: float
    token_id: str = ""  #: the ``jti`` (a ticket's: its parent token's)
    issued_at: float = 0.0  #: the ``iat`` (a ticket's: its parent token's)
    topics: tuple[str, ...] = ()  #: a publisher's topic patterns
    ticket: bool = False  #: a stream ticket, not a bearer token


def user_problem(user: object) -> str | None:
    """What is wrong with ``user`` as a user name / topic, or None when it is fine."""
    if not isinstance(user, str) or not _USER.match(user):
        return "a user is 1 to 200 characters with no control characters (no NUL, no newline)"
    return None


def may_publish(principal: Principal, topic: str) -> bool:
    """Whether a publisher token's scope covers ``topic``."""
    return principal.role == "publisher" and any(
        fnmatch.fnmatchcase(topic, pattern) for pattern in principal.topics)


def issue_token(secret: str, user: str, *, role: Role = "user", ttl: float = 3600.0,
                now: float | None = None, topics: Iterable[str] | None = None) -> str:
    """Sign a token for ``user`` with ``role``, valid for ``ttl`` seconds (publishers: ``topics``)."""
    problem = user_problem(user)
    if problem:
        raise ValueError(f"bad user {user!r}: {problem}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; accepted: {', '.join(ROLES)}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user, "role": role, "iat": int(issued),
                              "exp": int(issued + ttl), "jti": secrets.token_hex(12)}
    if role == "publisher":
        scope = list(topics or ())
        if not scope or not all(isinstance(t, str) and t for t in scope):
            raise ValueError("a publisher token needs topics: names or patterns such as "
                             "'alice' or 'team-*' ('*' for every topic)")
        claims["topics"] = scope
    elif topics:
        raise ValueError("only publisher tokens carry topics")
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def issue_ticket(secret: str, principal: Principal, *, ttl: float, now: float | None = None
                 ) -> str:
    """A short-lived stream ticket for a user token's principal."""
    issued = time.time() if now is None else now
    claims = {"sub": principal.user, "typ": "ticket", "iat": int(issued),
              "exp": int(min(issued + ttl, principal.expires_at)), "jti": secrets.token_hex(12),
              "pjti": principal.token_id, "piat": int(principal.issued_at),
              "pexp": int(principal.expires_at)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


#: Tokens that passed every check but the clock's: (secret, token, ticket, max_ttl) ->
#: (principal, exp, iat). Bounded; the oldest entries go first.
_VERIFIED: dict[tuple[str, str, bool, float | None], tuple[Principal, float, float]] = {}
_VERIFIED_MAX = 4096


def verify_token(secret: str, token: str | None, *, max_ttl: float | None = None,
                 ticket: bool = False, now: float | None = None) -> Principal:
    """Check a token's (or, with ``ticket``, a ticket's) signature, expiry and claims.

    A token's signature and claims are checked once: the answer depends only on the
    token, the key and the options, so a token that passed is remembered (a publisher
    sends the same one with every publish) and only its time checks, ``exp`` and
    ``iat``, run again on each use. Failures are never remembered. Revocation is not
    part of this check (the deny list is read per request).
    """
    what = "ticket" if ticket else "token"
    if not token:
        raise AuthError(f"missing {what}",
                        hint="send 'Authorization: Bearer <token>'; browsers open GET /stream "
                             "with '?ticket=' from POST /stream/ticket")
    moment = time.time() if now is None else now
    key = (secret, token, ticket, max_ttl)
    hit = _VERIFIED.get(key)
    if hit is not None:
        principal, exp, iat = hit
        if exp <= moment:
            raise AuthError(f"{what} expired", hint="get a new token and reconnect")
        if iat > moment + _LEEWAY:
            raise AuthError(f"invalid {what}: 'iat' is in the future",
                            hint="check the issuer's clock")
        return principal
    principal, exp, iat = _check(secret, token, what, max_ttl=max_ttl, ticket=ticket,
                                 moment=moment)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[key] = (principal, exp, iat)
    return principal


def _check(secret: str, token: str, what: str, *, max_ttl: float | None, ticket: bool,
           moment: float) -> tuple[Principal, float, float]:
    """Every check of :func:`verify_token`; the principal with the token's exp and iat."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM],
                            options={"require": ["sub", "exp", "iat", "jti"],
                                     "verify_iat": False, "verify_exp": False})
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"invalid {what}: the '{exc.claim}' claim is missing",
                        hint="issue tokens with sub, iat, exp and jti") from None
    except jwt.InvalidTokenError:
        raise AuthError(f"invalid {what}", hint="the token is forged or malformed") from None
    if not isinstance(claims["exp"], int | float) or isinstance(claims["exp"], bool):
        raise AuthError(f"invalid {what}: bad 'exp'", hint="exp is a Unix time")
    if claims["exp"] <= moment:
        raise AuthError(f"{what} expired", hint="get a new token and reconnect")
    user = claims.get("sub")
    problem = user_problem(user)
    if problem:
        raise AuthError(f"invalid {what}: bad 'sub'", hint=problem)
    assert isinstance(user, str)
    if not isinstance(claims["iat"], int | float) or claims["iat"] > moment + _LEEWAY:
        raise AuthError(f"invalid {what}: 'iat' is in the future", hint="check the issuer's clock")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 128:
        raise AuthError(f"invalid {what}: bad 'jti'", hint="a jti is a string of 1 to 128 chars")
    if (claims.get("typ") == "ticket") != ticket:
        if ticket:
            raise AuthError("not a stream ticket", hint="get one from POST /stream/ticket")
        raise AuthError("a stream ticket is not a bearer token",
                        hint="use a ticket only as GET /stream?ticket=...")
    if ticket:
        try:
            return Principal(user=user, role="user", expires_at=float(claims["pexp"]),
                             token_id=str(claims["pjti"]), issued_at=float(claims["piat"]),
                             ticket=True), float(claims["exp"]), float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise AuthError("invalid ticket", hint="get one from POST /stream/ticket") from None
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if max_ttl is not None and lifetime > max_ttl:
        raise AuthError("token lifetime over the maximum",
                        hint=f"issue tokens valid for at most {max_ttl:g} s "
                             "(SSELAB_MAX_TOKEN_TTL_S)")
    role = claims.get("role", "user")
    if role not in ROLES:
        raise AuthError("invalid token: unknown role", hint=f"roles: {', '.join(ROLES)}")
    topics = claims.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics) \
            or len(topics) > 100:
        raise AuthError("invalid token: bad 'topics'", hint="a list of up to 100 patterns")
    return Principal(user=user, role=role, expires_at=float(claims["exp"]),
                     token_id=claims["jti"], issued_at=float(claims["iat"]),
                     topics=tuple(topics)), float(claims["exp"]), float(claims["iat"])
