"""L1 of the token cache: in process, bounded, keyed by an HMAC of the token.

Keys are HMAC-SHA256(per-process random key, issuer + token), so no token sits in
memory as a key. Entries live for RemoteTokenRefresh + StaleIfError; whether one may
be served is decided by its own timestamps (``fresh`` / ``usable_stale``). Rejections
(the issuer said 4xx) live in a separate negative cache for NegativeCacheTTL.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cachetools import TTLCache

from clusterfed.identity import Identity


@dataclass(slots=True)
class L1Entry:
    identity: Identity
    refreshes_at: datetime
    touched_at: float  # epoch seconds when last_used_at was last written to L2
    # The hit path compares one float (epoch seconds) instead of building and comparing
    # timezone-aware datetimes on every request: min(refreshes_at, expires_at).
    fresh_until: float = field(init=False)

    def __post_init__(self) -> None:
        expires_at = self.identity.expires_at
        until = self.refreshes_at if expires_at is None else min(self.refreshes_at, expires_at)
        self.fresh_until = until.timestamp()

    def fresh(self, now: float) -> bool:
        """``now`` is ``time.time()``."""
        return now < self.fresh_until

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
        # hmac.digest is the one-shot C path: no HMAC object per request.
        return hmac.digest(self._key, f"{issuer}\0{token}".encode(), "sha256")

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
