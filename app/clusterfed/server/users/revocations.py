"""Revoking a token at its issuer (the example server issues tokens).

``DELETE /arvados/v1/api_client_authorizations/<uuid>`` for a token issued here: by the
token itself (its own secret or its secret salted for any cluster: a holder may always
end their token, whatever its scopes), by another token of its owner, or by an admin.
For another cluster's token the ``FederatedRouter`` sends the request to its issuer
before it gets here.

Receiving notices from other issuers is clusterfed's (``trust.notices``), for any host.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.config import ClusterConfig
from clusterfed.credentials import is_management_token, parse_authorization
from clusterfed.errors import NotFound, Unauthorized
from clusterfed.outbound.remote import HOP_HEADER
from clusterfed.server.deps import ConfigDep, SessionDep
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.storage.db import utcnow
from clusterfed.tokens import TOKEN_TYPE, MalformedToken, is_uuid

from .auth import resolve_caller
from .revocation import presented_by_itself, revoke_token
from .tokens import get_token, token_json

log = logging.getLogger("clusterfed.revocation")

router = APIRouter(tags=["revocation"])


@router.delete("/arvados/v1/api_client_authorizations/{uuid}")
async def revoke(
    uuid: str, request: Request, session: SessionDep, config: ConfigDep
) -> dict[str, Any]:
    local = is_uuid(uuid, type_=TOKEN_TYPE) and uuid[:5] == config.cluster_id
    record = await get_token(session, uuid=uuid) if local else None
    if is_management_token(request.headers.get("authorization"), config.management_token):
        by: str | None = "ManagementToken"
    else:
        try:
            token = parse_authorization(request.headers.get("authorization"))
        except MalformedToken as exc:
            raise Unauthorized(f"malformed credential: {exc}") from None
        if token is None:
            raise Unauthorized("this request needs a token (Authorization: Bearer <token>)")
        hints = (request.query_params.get("remote"), request.headers.get(HOP_HEADER))
        itself = (
            record is not None
            and token.uuid == uuid
            and presented_by_itself(record, token.secret, config=config, hints=hints)
        )
        if itself:
            assert record is not None
            if record.expires_at is not None and record.expires_at <= utcnow():
                raise Unauthorized("token has expired")
            by = "itself"
        else:
            by = await _other_revoker(request, session, config, record)
    if record is None or by is None:
        # Not found and not yours answer alike, so token UUIDs cannot be probed.
        raise NotFound(f"token {uuid} not found")
    queued = await revoke_token(session, record, config=config)
    log.info("revoked token=%s by=%s notices=%s", uuid, by, ",".join(queued) or "-")
    federation = request.app.state.federation
    # This worker at once; the others through the purge revoke_token logged.
    federation.local_tokens.invalidate("token", uuid)
    if queued and federation.outbox is not None:
        federation.outbox.queued(queued)
    return token_json(record)


async def _other_revoker(
    request: Request,
    session: AsyncSession,
    config: ClusterConfig,
    record: ApiClientAuthorization | None,
) -> str | None:
    """Who, other than the token itself, may revoke ``record``: its owner's other
    tokens or an admin. None: nobody here (answered 404)."""
    caller = await resolve_caller(request, session, config)
    if caller is None:
        raise Unauthorized("this request needs a token (Authorization: Bearer <token>)")
    local_owner = record is not None and caller.user.uuid == record.user_uuid
    if local_owner and not caller.is_foreign(config.cluster_id):
        return caller.user.uuid
    return caller.user.uuid if caller.is_admin else None
