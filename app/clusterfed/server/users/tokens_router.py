"""Token create and list, Arvados-shaped: ``POST``/``GET /arvados/v1/api_client_authorizations``.

A user asks for a new token of their own, as Workbench and the arv-* tools do; an admin
may name another existing user as ``owner_uuid`` (for work run on their behalf: on a
satellite those are the runtime tokens of docs/protocol.md#login-cluster). A scoped token
can only create tokens within its own scopes. The secret is in the create answer and nowhere else: a
list never shows one. On a satellite both requests go to the login cluster instead
(``clusterfed.routing.login_forwarding``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy import select

from clusterfed.errors import Forbidden, NotFound, Unprocessable
from clusterfed.server.deps import CallerDep, ConfigDep, ListRequestDep, SessionDep
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.server.objects.listing import parse_select, run_list, selected
from clusterfed.storage.db import utcnow
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid

from .service import get_user
from .tokens import token_json

router = APIRouter(
    prefix="/arvados/v1/api_client_authorizations", tags=["api_client_authorizations"]
)

SINGULAR = "api_client_authorization"
ATTRIBUTES = {
    "uuid": ApiClientAuthorization.uuid,
    "owner_uuid": ApiClientAuthorization.user_uuid,
    "expires_at": ApiClientAuthorization.expires_at,
    "created_at": ApiClientAuthorization.created_at,
    # Tokens are never modified here; Arvados clients order lists by modified_at.
    "modified_at": ApiClientAuthorization.created_at,
}
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 1024


def _attributes(body: dict[str, Any] | None) -> dict[str, Any]:
    if body is None:
        return {}
    inner = body.get(SINGULAR)
    if set(body) == {SINGULAR}:
        if not isinstance(inner, dict):
            raise Unprocessable(f"{SINGULAR} must be an object")
        return inner
    return body


def _scopes(value: Any, caller_scopes: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(caller_scopes)
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_SCOPES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_SCOPE_LENGTH for s in value)
    ):
        raise Unprocessable("scopes must be a non-empty list of strings")
    if "all" not in caller_scopes and not set(value) <= set(caller_scopes):
        raise Forbidden("a scoped token can only create tokens within its own scopes")
    return value


def _expires_at(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise Unprocessable("expires_at must be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unprocessable("expires_at must be an ISO 8601 timestamp") from None
    if moment <= utcnow():
        raise Unprocessable("expires_at must be in the future")
    return moment


@router.post("")
async def create_token(
    caller: CallerDep,
    session: SessionDep,
    config: ConfigDep,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    attributes = _attributes(body)
    user = caller.user
    if not user.is_active:
        raise Forbidden("inactive users may not create tokens")
    owner_uuid = attributes.get("owner_uuid") or user.uuid
    if owner_uuid != user.uuid and not caller.is_admin:
        raise Forbidden("only an admin may create a token for another user")
    # An admin's token that does not carry admin here (a runtime token another cluster
    # issued for them) must not mint one that would: that would launder it into admin.
    if user.is_admin and not caller.is_admin:  # at home: what a new token would carry
        raise Forbidden(
            "this token does not carry its user's admin rights, so it cannot create a "
            "token for them; use a token their own cluster issued"
        )
    home = user.uuid[:5]
    if home != config.cluster_id and not caller.is_admin:
        raise Forbidden(f"tokens for a user of cluster {home} are issued by {home}")
    if not isinstance(owner_uuid, str) or await get_user(session, uuid=owner_uuid) is None:
        raise NotFound(f"user {owner_uuid} not found")
    row = ApiClientAuthorization(
        uuid=new_uuid(config.cluster_id, TOKEN_TYPE),
        api_token=new_secret(),
        user_uuid=owner_uuid,
        expires_at=_expires_at(attributes.get("expires_at")),
        scopes=_scopes(attributes.get("scopes"), caller.scopes),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return token_json(row, with_secret=True)


# What ``select`` may name: the attributes of the token record served here.
SELECTABLE = ("uuid", "owner_uuid", "expires_at", "scopes", "created_at")


@router.get("")
async def list_tokens(
    caller: CallerDep, session: SessionDep, listing: ListRequestDep
) -> dict[str, Any]:
    params = listing.params
    names = parse_select(listing.select, SELECTABLE)
    query = select(ApiClientAuthorization)
    if not caller.is_admin:
        query = query.where(ApiClientAuthorization.user_uuid == caller.user.uuid)
    rows, available = await run_list(
        session, query, params, ATTRIBUTES, ApiClientAuthorization.uuid
    )
    answer: dict[str, Any] = {
        "kind": "arvados#apiClientAuthorizationList",
        "items": [selected(token_json(row), names) for row in rows],
        "offset": params.offset,
        "limit": params.limit,
    }
    if listing.counted:
        answer["items_available"] = available
    return answer
