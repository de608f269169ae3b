"""L1 of the token cache (SPEC 4): in process, bounded, keyed by an HMAC of the token.

Keys are HMAC-SHA256(per-process random key, issuer + token), so no token sits in
memory as a key. Entries live for RemoteTokenRefresh + StaleIfError; whether one may
be served is decided by its own timestamps (``fresh`` / ``usable_stale``). Rejections
(the issuer said 4xx) live in a separate negative cache for NegativeCacheTTL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache

from .identity import Identity


@dataclass(slots=True)
class L1Entry:
    identity: Identity
    refreshes_at: datetime
    last_touched: datetime  # when last_used_at was last written to L2

    def fresh(self, now: datetime) -> bool:
        expires_at = self.identity.expires_at
        return now < self.refreshes_at and (expires_at is None or now < expires_at)

    def usable_stale(self, now: datetime, stale_if_error: float) -> bool:
        """May this entry be served while its issuer cannot be reached (StaleIfError)?"""
        expires_at = self.identity.expires_at
        return (
            stale_if_error > 0
            and now < self.refreshes_at + timedelta(seconds=stale_if_error)
            and (expires_at is None or now < expires_at)
        )


class TokenCache:
    def __init__(self, *, maxsize: int, ttl: float, negative_ttl: float) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: TTLCache[bytes, L1Entry] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1e-3))
        self._rejected: TTLCache[bytes, str] = TTLCache(
            maxsize=maxsize, ttl=max(negative_ttl, 1e-3)
        )
        self._negative_enabled = negative_ttl > 0

    def key(self, issuer: str, token: str) -> bytes:
        return hmac.new(self._key, f"{issuer}\0{token}".encode(), hashlib.sha256).digest()

    def get(self, key: bytes) -> L1Entry | None:
        return self._entries.get(key)

    def put(self, key: bytes, entry: L1Entry) -> None:
        self._rejected.pop(key, None)
        self._entries[key] = entry

    def rejection(self, key: bytes) -> str | None:
        return self._rejected.get(key)

    def reject(self, key: bytes, message: str) -> None:
        self._entries.pop(key, None)
        if self._negative_enabled:
            self._rejected[key] = message

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, kind: str, value: str | None) -> int:
        """Drop entries by token UUID, issuer cluster, user UUID, or all of them."""
        if kind == "all":
            dropped = len(self._entries)
            self._entries.clear()
            self._rejected.clear()
            return dropped
        attribute = {"token": "token_uuid", "cluster": "issuer", "user": "user"}[kind]

        def matches(entry: L1Entry) -> bool:
            identity = entry.identity
            found = identity.user.uuid if attribute == "user" else getattr(identity, attribute)
            return found == value

        doomed = [key for key, entry in list(self._entries.items()) if matches(entry)]
        for key in doomed:
            self._entries.pop(key, None)
        return len(doomed)
