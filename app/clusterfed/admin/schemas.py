"""Pydantic shapes of the token-cache admin API: what goes over the wire.

``TokenCacheItem`` lists its fields explicitly (``extra="forbid"``): a column added to
the table later does not reach a response unless someone adds it here on purpose.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clusterfed.service import RemoteStatus

from .token_cache import CacheEntry, PurgeKind, State

CLUSTER_ID_PATTERN = r"^[a-z0-9]{5}$"
USER_UUID_PATTERN = r"^[a-z0-9]{5}-tpzed-[a-z0-9]{15}$"
TOKEN_UUID_PATTERN = r"^[a-z0-9]{5}-gj3su-[a-z0-9]{15}$"
MAX_LIMIT = 1000

ClusterId = Annotated[str, Field(pattern=CLUSTER_ID_PATTERN)]
UserUuid = Annotated[str, Field(pattern=USER_UUID_PATTERN)]


class TokenCacheItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_uuid: str
    user_uuid: str
    cluster_id: str
    scopes: list[str]
    expires_at: datetime | None
    refreshes_at: datetime
    validated_at: datetime
    last_used_at: datetime
    state: State

    @classmethod
    def of(cls, entry: CacheEntry) -> TokenCacheItem:
        # Reads exactly the fields declared above, whatever else ``entry`` carries.
        return cls.model_validate(entry, from_attributes=True)


class TokenCacheList(BaseModel):
    items: list[TokenCacheItem]
    items_available: int


class PurgeRequest(BaseModel):
    """Exactly one of ``cluster_id``, ``user_uuid``, ``all: true``."""

    model_config = ConfigDict(extra="forbid")

    cluster_id: ClusterId | None = None
    user_uuid: UserUuid | None = None
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PurgeRequest:
        given = [v for v in (self.cluster_id, self.user_uuid, self.all) if v is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of "cluster_id", "user_uuid", "all": true')
        return self

    def target(self) -> tuple[PurgeKind, str | None]:
        if self.cluster_id is not None:
            return "cluster", self.cluster_id
        if self.user_uuid is not None:
            return "user", self.user_uuid
        return "all", None


class PurgeResult(BaseModel):
    purged: int


class RemoteClusterStatus(BaseModel):
    """One remote as this worker process has seen it, plus its L2 entry count."""

    cluster_id: str
    host: str
    reachable: bool | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    circuit_state: str
    cached_tokens: int

    @classmethod
    def of(cls, status: RemoteStatus, cached_tokens: int) -> RemoteClusterStatus:
        return cls.model_validate({**asdict(status), "cached_tokens": cached_tokens})


class RemoteClusterList(BaseModel):
    items: list[RemoteClusterStatus]
