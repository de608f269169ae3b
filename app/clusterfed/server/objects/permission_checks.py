"""Permission checks, the home side: may this cluster's user do this to this cluster's object?

The caller is another cluster presenting the user's token salted for it
(``?remote=<caller>``; ``auth.py`` admits a salted token to this route). A target that
does not exist and one the user cannot read get the very same answer, so a remote
cluster cannot use the endpoint to probe for objects.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from clusterfed.errors import Unprocessable
from clusterfed.server.deps import CallerDep, ConfigDep, SessionDep

from .permissions import LEVEL_NAMES, LEVELS, MANAGE, permission_level
from .schemas import PermissionCheck

router = APIRouter(prefix="/federation/v1", tags=["federation"])

UNREADABLE = "target does not exist or the user cannot read it"


@router.post("/permission_checks")
async def permission_check(
    body: PermissionCheck, caller: CallerDep, session: SessionDep, config: ConfigDep
) -> dict[str, Any]:
    if caller.is_foreign(config.cluster_id):
        # A cluster vouches only for its own users (as when validating a token).
        raise Unprocessable(
            f"{config.cluster_id} answers permission checks only about its own users; "
            f"ask {caller.issuer}"
        )
    user = caller.user
    wanted = LEVELS[body.permission]
    if not user.is_active:
        level, reason = 0, "the user is not active"
    else:
        level = (
            MANAGE
            if caller.is_admin
            else await permission_level(session, user_uuid=user.uuid, target_uuid=body.target_uuid)
        )
        if level >= wanted:
            reason = f"the user has {LEVEL_NAMES[level]}"
            if caller.is_admin:
                reason = "the user is an admin"
        elif level == 0:
            reason = UNREADABLE
        else:
            reason = f"the user has only {LEVEL_NAMES[level]}"
    return {
        "allowed": level >= wanted,
        "user_uuid": user.uuid,
        "target_uuid": body.target_uuid,
        "permission": body.permission,
        "reason": reason,
    }
