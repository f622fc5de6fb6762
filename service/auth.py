"""Signed bearer tokens: HS256 JWTs whose ``sub`` is the user and ``role`` its rights.

A ``user`` token may read its own stream and snapshot; a ``publisher`` token may
also publish to any user's topic. A stream's topic is always its token's user, so
no request can name another user's topic.
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple

import jwt

__all__ = ["ROLES", "AuthError", "Principal", "issue_token", "verify_token"]

Role = Literal["user", "publisher"]
ROLES: tuple[Role, ...] = ("user", "publisher")
_ALGORITHM = "HS256"


class AuthError(Exception):
    """A token is missing, forged, expired or malformed; ``hint`` says what to do."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Principal(NamedTuple):
    """Who a verified token speaks for, and until when (Unix seconds)."""

    user: str
    role: Role
    expires_at: float


def issue_token(secret: str, user: str, *, role: Role = "user", ttl: float = 3600.0,
                now: float | None = None) -> str:
    """Sign a token for ``user`` with ``role``, valid for ``ttl`` seconds."""
    if not user:
        raise ValueError("a token needs a non-empty user")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; accepted: {', '.join(ROLES)}")
    issued = time.time() if now is None else now
    claims = {"sub": user, "role": role, "iat": int(issued), "exp": int(issued + ttl)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_token(secret: str, token: str | None) -> Principal:
    """Check a token's signature, expiry and claims; raise AuthError if it is not good."""
    if not token:
        raise AuthError("missing token",
                        hint="send 'Authorization: Bearer <token>' or '?access_token=<token>'")
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM],
                            options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired", hint="get a new token and reconnect") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}", hint="the token is forged or malformed") from None
    user, role = claims.get("sub"), claims.get("role", "user")
    if not isinstance(user, str) or not user:
        raise AuthError("invalid token: 'sub' must be a non-empty string")
    if role not in ROLES:
        raise AuthError(f"invalid token: unknown role {role!r}")
    return Principal(user=user, role=role, expires_at=float(claims["exp"]))
