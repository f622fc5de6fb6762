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

Bounded staleness (a deliberate divergence, STYLE 11). :meth:`is_revoked` (every
request, every replay) answers from a per-process cache for ``cache_s`` seconds
(``SSELAB_REVOCATION_CACHE_S``, default 1 s; 0 reads Redis every time), so a
publisher posting many events costs one Redis read per token per ``cache_s``
instead of one per event. A token revoked elsewhere is therefore still accepted
for at most ``cache_s`` after the revocation is written; a revocation written
through this process clears its cache at once, and the periodic sweep of open
streams (:meth:`revoked`) always reads Redis and refreshes the cache with what it
read. The cache holds at most ``cache_size`` answers (older ones are dropped first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from service.auth import Principal

__all__ = ["Revocations"]


class Revocations:
    """Read and write the deny list through a Redis client."""

    def __init__(self, client: aioredis.Redis, namespace: str, *, max_ttl: float,
                 cache_s: float = 0.0, cache_size: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = client
        self._prefix = f"{namespace}:revoked"
        self._max_ttl = max_ttl
        self.cache_s, self._cache_size, self._clock = cache_s, cache_size, clock
        #: (token id, user, issued at) -> (when read, revoked?); insertion order is age order
        self._cache: dict[tuple[str, str, float], tuple[float, bool]] = {}

    @staticmethod
    def _key(principal: Principal) -> tuple[str, str, float]:
        return (principal.token_id, principal.user, principal.issued_at)

    def _remember(self, principals: Sequence[Principal], answers: list[bool]) -> None:
        if self.cache_s <= 0:
            return
        now = self._clock()
        for p, answer in zip(principals, answers, strict=True):
            key = self._key(p)
            self._cache.pop(key, None)  # re-inserted last: the dict stays in age order
            self._cache[key] = (now, answer)
        while len(self._cache) > self._cache_size:
            del self._cache[next(iter(self._cache))]

    def _keys(self, principal: Principal) -> tuple[str, str]:
        return (f"{self._prefix}:jti:{principal.token_id}", f"{self._prefix}:user:{principal.user}")

    async def revoke_token(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Deny the token ``token_id`` (until ``expires_at``, default the longest lifetime)."""
        ttl = (expires_at - time.time()) if expires_at is not None else self._max_ttl
        await self._redis.set(f"{self._prefix}:jti:{token_id}", "1", ex=max(1, int(ttl) + 60))
        self._cache.clear()

    async def revoke_user(self, user: str, *, before: float | None = None) -> None:
        """Deny every token of ``user`` issued at or before ``before`` (default: now)."""
        cutoff = time.time() if before is None else before
        await self._redis.set(f"{self._prefix}:user:{user}", repr(cutoff),
                              ex=int(self._max_ttl) + 60)
        self._cache.clear()

    async def revoked(self, principals: Sequence[Principal]) -> list[bool]:
        """Whether each principal's token is denied (one round trip for all, never cached)."""
        if not principals:
            return []
        keys = [key for p in principals for key in self._keys(p)]
        values = await self._redis.mget(keys)
        out = []
        for i, p in enumerate(principals):
            by_id, by_user = values[2 * i], values[2 * i + 1]
            cutoff = _float(by_user)
            out.append(by_id is not None or (cutoff is not None and p.issued_at <= cutoff))
        self._remember(principals, out)
        return out

    async def is_revoked(self, principal: Principal) -> bool:
        """Whether one principal's token is denied (an answer at most ``cache_s`` old)."""
        hit = self._cache.get(self._key(principal))
        if hit is not None and self._clock() - hit[0] < self.cache_s:
            return hit[1]
        return (await self.revoked([principal]))[0]


def _float(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
