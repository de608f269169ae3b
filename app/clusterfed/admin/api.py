"""The token-cache admin API and the remote clusters' status (docs/operating.md#admin-api)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from clusterfed.errors import NotFound
from clusterfed.timestamps import wire_time

from . import token_cache
from .auth import AdminDep
from .deps import FederationDep, SessionDep
from .outbox import outbox_summary
from .schemas import (
    CLUSTER_ID_PATTERN,
    MAX_LIMIT,
    TOKEN_UUID_PATTERN,
    USER_UUID_PATTERN,
    PurgeRequest,
    PurgeResult,
    RemoteClusterList,
    RemoteClusterStatus,
    TokenCacheItem,
    TokenCacheList,
)
from .token_cache import State

log = logging.getLogger("clusterfed.admin")

router = APIRouter(prefix="/federation/v1", tags=["federation admin"])

TokenUuidPath = Annotated[str, Path(pattern=TOKEN_UUID_PATTERN)]


@router.get("/token_cache")
async def list_token_cache(
    _: AdminDep,
    session: SessionDep,
    cluster_id: Annotated[str | None, Query(pattern=CLUSTER_ID_PATTERN)] = None,
    user_uuid: Annotated[str | None, Query(pattern=USER_UUID_PATTERN)] = None,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> TokenCacheList:
    entries, available = await token_cache.list_entries(
        session, cluster_id=cluster_id, user_uuid=user_uuid, state=state, limit=limit, offset=offset
    )
    return TokenCacheList(
        items=[TokenCacheItem.of(entry) for entry in entries], items_available=available
    )


@router.post("/token_cache/purge")
async def purge_token_cache(
    body: PurgeRequest, admin: AdminDep, session: SessionDep, federation: FederationDep
) -> PurgeResult:
    kind, value = body.target()
    purged = await token_cache.purge(session, kind=kind, value=value, federation=federation)
    log.info("token cache purge kind=%s value=%s purged=%d by=%s", kind, value, purged, admin.label)
    return PurgeResult(purged=purged)


@router.get("/token_cache/{token_uuid}")
async def show_token_cache_entry(
    token_uuid: TokenUuidPath, _: AdminDep, session: SessionDep
) -> TokenCacheItem:
    entry = await token_cache.get_entry(session, token_uuid=token_uuid)
    if entry is None:
        raise NotFound(f"no cached token {token_uuid}")
    return TokenCacheItem.of(entry)


@router.delete("/token_cache/{token_uuid}")
async def delete_token_cache_entry(
    token_uuid: TokenUuidPath, admin: AdminDep, session: SessionDep, federation: FederationDep
) -> PurgeResult:
    if await token_cache.get_entry(session, token_uuid=token_uuid) is None:
        raise NotFound(f"no cached token {token_uuid}")
    purged = await token_cache.purge(session, kind="token", value=token_uuid, federation=federation)
    log.info(
        "token cache purge kind=token value=%s purged=%d by=%s", token_uuid, purged, admin.label
    )
    return PurgeResult(purged=purged)


@router.get("/remote_clusters")
async def remote_clusters(
    _: AdminDep, session: SessionDep, federation: FederationDep
) -> RemoteClusterList:
    counts = await token_cache.count_by_cluster(session)
    statuses = federation.remote_status()
    return RemoteClusterList(
        items=[RemoteClusterStatus.of(s, counts.get(s.cluster_id, 0)) for s in statuses]
    )


@router.get("/revocation_outbox")
async def revocation_outbox(_: AdminDep, session: SessionDep) -> dict[str, Any]:
    """The revocation notice outbox per remote (pending, delivered, given up, last error)."""
    items = []
    for row in await outbox_summary(session):
        item = asdict(row)
        for key in ("oldest_pending", "next_attempt_at"):
            item[key] = wire_time(item[key])
        items.append(item)
    return {"items": items}
