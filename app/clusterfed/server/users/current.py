"""The validation endpoints every cluster serves (docs/protocol.md#validation-endpoints)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from clusterfed.errors import Unauthorized
from clusterfed.server.deps import CallerDep, ConfigDep
from clusterfed.timestamps import wire_time

from .revocation import record_validation
from .service import user_json

router = APIRouter(prefix="/arvados/v1", tags=["federation validation"])


@router.get("/api_client_authorizations/current")
async def current_token(caller: CallerDep, request: Request, config: ConfigDep) -> dict[str, Any]:
    if caller.token_uuid is None:
        raise Unauthorized("the system root token has no token record")
    remote = request.query_params.get("remote", "")
    if caller.issuer == config.cluster_id and config.accepts_salted_for(remote):
        # Remember who validated our token, to tell them when it is revoked: only the
        # clusters it would ever tell (a stranger's remote= writes nothing here).
        database = request.app.state.database
        await record_validation(database, token_uuid=caller.token_uuid, cluster_id=remote)
    # Never echo a secret: a caller that presented a salted token must not learn the
    # unsalted one, and the others already have theirs.
    return {
        "kind": "arvados#apiClientAuthorization",
        "uuid": caller.token_uuid,
        "owner_uuid": caller.user.uuid,
        "expires_at": wire_time(caller.expires_at),
        "scopes": list(caller.scopes),
    }


@router.get("/users/current")
async def current_user(caller: CallerDep, config: ConfigDep) -> dict[str, Any]:
    # is_admin as this caller is here: a token that does not carry admin says so.
    return {**user_json(caller.user, cluster_id=config.cluster_id), "is_admin": caller.is_admin}
