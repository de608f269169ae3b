"""clusterfed's own tables (docs/mounting.md): the L2 token cache, the purge log, the
shared rate limits.

They live in the host's database beside the host's tables, with their own Alembic
chain (top-level ``migrations/``, shipped in the wheel as ``clusterfed.migrations``)
and their own version table, so a host's migrations never see them. None of them
holds a secret: the cache keeps an HMAC-SHA256 digest of the secret as presented.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Double, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .db import TYPE_ANNOTATION_MAP, new_metadata, utcnow


class FederationBase(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class FederationTokenCache(FederationBase):
    """L2 of the foreign-token cache (docs/protocol.md#the-token-cache), keyed by token UUID."""

    __tablename__ = "federation_token_cache"

    token_uuid: Mapped[str] = mapped_column(String(27), primary_key=True)
    user_uuid: Mapped[str] = mapped_column(String(27), index=True)
    cluster_id: Mapped[str] = mapped_column(String(5), index=True)
    # Indexed: a satellite finds a bare credential's row by its digest.
    secret_digest: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    refreshes_at: Mapped[datetime]
    validated_at: Mapped[datetime]
    last_used_at: Mapped[datetime]


class FederationPurge(FederationBase):
    """A log of cache purges; every worker polls it to drop its own L1 entries."""

    __tablename__ = "federation_purges"
    __table_args__ = (Index("ix_federation_purges_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # token | cluster | user | all
    value: Mapped[str | None] = mapped_column(String(27))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FederationRateBucket(FederationBase):
    """One token bucket of the cluster's shared rate limits (cold validations per client
    and per issuer, admin logins, ...), spent by every worker of every host in one
    statement (``storage.rate_buckets``). Times are seconds since the epoch. A row whose
    bucket is full again (``full_at`` passed) means nothing and is pruned. Rows keyed
    ``worker:<id>`` are the workers sharing the budget, each alive until its ``full_at``."""

    __tablename__ = "federation_rate_buckets"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    level: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)
    full_at: Mapped[float] = mapped_column(Double)
