"""Users, Arvados-shaped: list, get, and the admin actions activate, setup and unsetup.

Who sees whom (Arvados's default, ``ActivatedUsersAreVisibleToOthers``): an admin sees
everyone, an active user sees every active user and themselves, anyone else only
themselves; a user they cannot see is 404. ``activate`` is for an admin, or for an
invited user activating themselves; ``setup`` (invite, creating the user when given an
email) and ``unsetup`` (deactivate) are for admins. On a satellite the list and the
three actions go to the login cluster instead (``clusterfed.routing.login_forwarding``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from sqlalchemy import ColumnElement, or_, select

from clusterfed.errors import Forbidden, NotFound, Unprocessable
from clusterfed.jsonbody import check_text
from clusterfed.server.deps import CallerDep, ConfigDep, ListRequestDep, SelectParam, SessionDep
from clusterfed.server.models import User
from clusterfed.server.objects.listing import parse_select, run_list, selected
from clusterfed.storage.models import FederationPurge
from clusterfed.tokens import USER_TYPE, is_uuid, system_user_uuid

from .auth import Caller
from .service import create_user, to_record, user_json

router = APIRouter(prefix="/arvados/v1/users", tags=["users"])

ATTRIBUTES = {
    "uuid": User.uuid,
    "email": User.email,
    "username": User.username,
    "first_name": User.first_name,
    "last_name": User.last_name,
    "is_admin": User.is_admin,
    "is_active": User.is_active,
    "is_invited": User.is_invited,
    "created_at": User.created_at,
    "modified_at": User.modified_at,
}
MAX_TEXT = 255


def _visible(caller: Caller) -> ColumnElement[bool] | None:
    """The users ``caller`` may see, as a clause (None: all of them)."""
    if caller.is_admin:
        return None
    if caller.user.is_active:
        return or_(User.is_active.is_(True), User.uuid == caller.user.uuid)
    return User.uuid == caller.user.uuid


async def _user(session: Any, caller: Caller, uuid: str) -> User:
    missing = NotFound(f"{uuid} not found")
    if not is_uuid(uuid, type_=USER_TYPE):
        raise missing
    query = select(User).where(User.uuid == uuid)
    visible = _visible(caller)
    if visible is not None:
        query = query.where(visible)
    row = await session.scalar(query)
    if row is None:
        raise missing
    return row


def _text(value: str, name: str) -> str:
    try:
        check_text(value)
    except ValueError as exc:
        raise Unprocessable(f"{name}: {exc}") from None
    if not 0 < len(value) <= MAX_TEXT:
        raise Unprocessable(f"{name} must be 1 to {MAX_TEXT} characters")
    return value


def _require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"only an admin may {action}")


def _json(row: User, config: Any, names: list[str] | None = None) -> dict[str, Any]:
    return selected(user_json(to_record(row), cluster_id=config.cluster_id), names)


# What ``select`` may name: every attribute of the Arvados user record served here.
SELECTABLE = (
    "uuid",
    "owner_uuid",
    "email",
    "username",
    "first_name",
    "last_name",
    "full_name",
    "is_admin",
    "is_active",
    "is_invited",
    "prefs",
)


@router.get("")
async def list_users(
    caller: CallerDep,
    session: SessionDep,
    config: ConfigDep,
    listing: ListRequestDep,
) -> dict[str, Any]:
    params = listing.params
    names = parse_select(listing.select, SELECTABLE)
    query = select(User)
    visible = _visible(caller)
    if visible is not None:
        query = query.where(visible)
    rows, available = await run_list(session, query, params, ATTRIBUTES, User.uuid)
    answer: dict[str, Any] = {
        "kind": "arvados#userList",
        "items": [_json(row, config, names) for row in rows],
        "offset": params.offset,
        "limit": params.limit,
    }
    if listing.counted:
        answer["items_available"] = available
    return answer


@router.post("/setup")
async def setup_user(
    caller: CallerDep,
    session: SessionDep,
    config: ConfigDep,
    uuid: Annotated[str | None, Query()] = None,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    """Invite a user (``uuid``), or create and invite one (``user: {"email": ...}``)."""
    _require_admin(caller, "set up users")
    body = body or {}
    uuid = uuid or body.get("uuid")
    attributes = body.get("user")
    if uuid is not None:
        if not isinstance(uuid, str):
            raise Unprocessable("uuid must be a user UUID")
        row = await _user(session, caller, uuid)
    elif isinstance(attributes, dict) and isinstance(attributes.get("email"), str):
        username = attributes.get("username")
        row = await create_user(
            session,
            cluster_id=config.cluster_id,
            email=_text(attributes["email"], "email"),
            username=_text(username, "username") if isinstance(username, str) else None,
        )
    else:
        raise Unprocessable("setup needs a uuid, or a user with an email")
    row.is_invited = True
    await session.flush()
    return {"kind": "arvados#HashList", "items": [_json(row, config)]}


@router.get("/{uuid}")
async def get_one_user(
    uuid: str,
    caller: CallerDep,
    session: SessionDep,
    config: ConfigDep,
    select_: SelectParam = None,
) -> dict[str, Any]:
    names = parse_select(select_, SELECTABLE)
    return _json(await _user(session, caller, uuid), config, names)


async def _changed(session: Any, request: Request, user_uuid: str) -> None:
    """A user's flags changed: every worker's local-token cache forgets the user's tokens
    (through the purge log, in this transaction), this worker's at once."""
    session.add(FederationPurge(kind="user", value=user_uuid))
    await session.flush()
    request.app.state.federation.local_tokens.invalidate("user", user_uuid)


@router.post("/{uuid}/activate")
async def activate_user(
    uuid: str, request: Request, caller: CallerDep, session: SessionDep, config: ConfigDep
) -> dict[str, Any]:
    row = await _user(session, caller, uuid)
    if not caller.is_admin:
        if row.uuid != caller.user.uuid:
            raise Forbidden("only an admin may activate another user")
        if not row.is_invited:
            raise Forbidden("a user who was not invited (set up) cannot activate themselves")
    row.is_active = row.is_invited = True
    await _changed(session, request, row.uuid)
    return _json(row, config)


@router.post("/{uuid}/unsetup")
async def unsetup_user(
    uuid: str, request: Request, caller: CallerDep, session: SessionDep, config: ConfigDep
) -> dict[str, Any]:
    _require_admin(caller, "unsetup users")
    row = await _user(session, caller, uuid)
    if row.uuid == system_user_uuid(config.cluster_id):
        raise Unprocessable("the system user cannot be unset")
    row.is_active = row.is_invited = row.is_admin = False
    await _changed(session, request, row.uuid)
    return _json(row, config)
