"""``LocalTokenCache``: the host's own credentials, answered in process.

A host resolves its local tokens against its tokens table; doing that on every request
costs a database round trip or two where a cached foreign token costs a dictionary
lookup. This cache lets a host keep what it resolved (its own ``value``: a caller, a
login...) for a bounded time, and :class:`~clusterfed.service.Federation` purges it
with the same log that purges L1: a purge of kind ``token`` (a revocation logs one),
``user`` or ``all``, made by any worker, reaches every worker at once on PostgreSQL
(announced) and within ``PurgePollInterval`` on SQLite.

Keys are HMAC-SHA256 of the credential (and the ``remote`` it was accepted for, which
decides whether a salted secret is valid) under a random per-process key, so no
secret sits in memory as a key. An entry is served until ``LocalTokenCacheTTL`` after
it was resolved, and never past the token's own expiry.

A lookup that raced a purge must not put back what the purge dropped: take
:attr:`generation` before reading the database and hand it to :meth:`put`, which
declines when any purge came in between.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import TTLCache

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    token_uuid: str | None
    user_uuid: str
    fresh_until: float  # epoch seconds


class LocalTokenCache(Generic[T]):
    def __init__(self, *, maxsize: int, ttl: float) -> None:
        self._key = secrets.token_bytes(32)
        self.ttl = ttl
        self.enabled = ttl > 0 and maxsize > 0
        self._entries: TTLCache[bytes, _Entry[T]] = TTLCache(
            maxsize=max(maxsize, 1), ttl=max(ttl, 1e-3)
        )
        self.generation = 0

    def key(self, credential: str, remote: str = "") -> bytes:
        return hmac.digest(self._key, f"{credential}\0{remote}".encode(), "sha256")

    def get(self, key: bytes) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.time() >= entry.fresh_until:
            self._entries.pop(key, None)
            return None
        return entry.value

    def put(
        self,
        key: bytes,
        value: T,
        *,
        token_uuid: str | None,
        user_uuid: str,
        expires_at: float | None,
        generation: int,
    ) -> bool:
        """Keep ``value``; False (not kept) when a purge came after ``generation``."""
        if not self.enabled or generation != self.generation:
            return False
        until = time.time() + self.ttl
        if expires_at is not None:
            until = min(until, expires_at)
        self._entries[key] = _Entry(value, token_uuid, user_uuid, until)
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, kind: str, value: str | None) -> int:
        """Drop entries by token UUID, user UUID, or all of them (``cluster``: none, as
        every entry is this cluster's own)."""
        if kind not in ("token", "user", "all"):
            return 0
        self.generation += 1
        if kind == "all":
            dropped = len(self._entries)
            self._entries.clear()
            return dropped
        if kind == "token":
            doomed = [k for k, e in list(self._entries.items()) if e.token_uuid == value]
        else:
            doomed = [k for k, e in list(self._entries.items()) if e.user_uuid == value]
        for key in doomed:
            self._entries.pop(key, None)
        return len(doomed)
