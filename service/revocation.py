"""The token deny list, in Redis: revoke one token by its id, or every token of a user.

Keys (in the service's namespace, each expiring when nothing it could deny is
still valid):

* ``NS:revoked:jti:<jti>`` -- that token (and every stream ticket minted from it);
* ``NS:revoked:user:<user>`` -- a Unix time: the user's tokens issued at or before
  it ("log out everywhere").

The ``reauthorize`` fix decides when the list is read: on every stream open, before
every replay, and every ``SSELAB_REAUTH_INTERVAL_S`` for each open stream. A
check that cannot reach Redis fails closed (the caller answers 503 or ends the
stream; the client comes back through its reconnect).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from service.auth import Principal

__all__ = ["Revocations"]


class Revocations:
    """Read and write the deny list through a Redis client."""

    def __init__(self, client: aioredis.Redis, namespace: str, *, max_ttl: float) -> None:
        self._redis = client
        self._prefix = f"{namespace}:revoked"
        self._max_ttl = max_ttl

    def _keys(self, principal: Principal) -> tuple[str, str]:
        return (f"{self._prefix}:jti:{principal.token_id}", f"{self._prefix}:user:{principal.user}")

    async def revoke_token(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Deny the token ``token_id`` (until ``expires_at``, default the longest lifetime)."""
        ttl = (expires_at - time.time()) if expires_at is not None else self._max_ttl
        await self._redis.set(f"{self._prefix}:jti:{token_id}", "1", ex=max(1, int(ttl) + 60))

    async def revoke_user(self, user: str, *, before: float | None = None) -> None:
        """Deny every token of ``user`` issued at or before ``before`` (default: now)."""
        cutoff = time.time() if before is None else before
        await self._redis.set(f"{self._prefix}:user:{user}", repr(cutoff),
                              ex=int(self._max_ttl) + 60)

    async def revoked(self, principals: Sequence[Principal]) -> list[bool]:
        """Whether each principal's token is denied (one round trip for all of them)."""
        if not principals:
            return []
        keys = [key for p in principals for key in self._keys(p)]
        values = await self._redis.mget(keys)
        out = []
        for i, p in enumerate(principals):
            by_id, by_user = values[2 * i], values[2 * i + 1]
            cutoff = _float(by_user)
            out.append(by_id is not None or (cutoff is not None and p.issued_at <= cutoff))
        return out

    async def is_revoked(self, principal: Principal) -> bool:
        """Whether one principal's token is denied."""
        return (await self.revoked([principal]))[0]


def _float(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
