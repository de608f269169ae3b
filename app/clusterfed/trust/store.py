"""The storage the host supplies: user mirror, L2 token cache, and the purge log.

The example server implements it with SQLAlchemy (``app/cluster/federation_store.py``);
any host can implement it over its own tables. Every method must be safe to call from
concurrent tasks and processes (writes are upserts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from clusterfed.identity import RemoteUser, UserRecord

from .mirroring import MirrorPolicy


@dataclass(frozen=True, slots=True)
class CachedToken:
    """One L2 row. ``secret_digest`` is an HMAC of the secret, never the secret."""

    token_uuid: str
    user_uuid: str
    cluster_id: str
    secret_digest: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    refreshes_at: datetime
    validated_at: datetime
    last_used_at: datetime
    # The row's user, when the store read it with the row (one round trip for the L2
    # path); None: not read, or not there (the validator then asks ``get_user``).
    user: UserRecord | None = None

    def is_fresh(self, now: datetime) -> bool:
        return now < self.refreshes_at and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class PurgeEvent:
    """A purge some worker made; ``kind`` is token, cluster, user or all."""

    id: int
    kind: str
    value: str | None


class FederationStore(Protocol):
    async def load_token(self, token_uuid: str) -> CachedToken | None:
        """The L2 row, with its ``user`` filled in when the store can read both at once."""

    async def save_token(self, entry: CachedToken) -> None:
        """Insert or replace the row for ``entry.token_uuid`` (an upsert)."""

    async def load_token_by_digest(self, cluster_id: str, digest: str) -> CachedToken | None:
        """The row of ``cluster_id`` whose digest is ``digest`` (login cluster: a credential that
        is not a v2 token carries no UUID to look it up by)."""

    async def touch_tokens(self, used: Mapping[str, datetime]) -> None:
        """Set ``last_used_at`` of the rows named (token UUID -> time), in one transaction."""

    async def get_user(self, uuid: str) -> UserRecord | None: ...

    async def mirror_user(
        self, remote: RemoteUser, policy: MirrorPolicy, *, token: CachedToken | None = None
    ) -> UserRecord:
        """Create or update the local mirror of ``remote`` by the rules of ``policy``;
        with ``token`` (whose user is ``remote``), save it too, in the same transaction."""

    async def latest_purge_id(self) -> int: ...

    async def purges_after(self, purge_id: int) -> list[PurgeEvent]: ...

    async def forget_token(self, token_uuid: str, *, digest: str | None) -> bool:
        """Drop the L2 row (only when its digest is ``digest``, if given) and log a token
        purge for every worker; True when a row was dropped (docs/protocol.md#revocation)."""
