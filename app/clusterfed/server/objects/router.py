"""Arvados-shaped endpoints for groups, collections and links: one router per resource.

Get, list, create, update (PUT and PATCH alike, partial, as Arvados does) and delete.
Bodies come wrapped the way Arvados clients send them (``{"collection": {...}}``) or
bare. Collection and project names are unique in their owner (``services.names``); a
create may ask for ``ensure_unique_name`` to be renamed rather than refused.

Every route answers from the caller's point of view: a list holds only what the
caller may read, and an object they may not read is 404 whether or not it exists.
Group records in a list carry ``can_write`` and ``can_manage`` for the caller, as
Arvados's do: that is how another cluster asks whether a user may write a project here
(docs/protocol.md#remote-permission-checks). ``GET /collections/<portable data hash>``
answers a readable collection with that hash, in Arvados's shape (``uuid`` is the hash).
Parameters arrive in the query whatever the client sent (``app.federation.params``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import CTE, Select, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from clusterfed.errors import NotFound, Unprocessable
from clusterfed.keep.manifests import portable_data_hash
from clusterfed.outbound.permissions import RemotePermissionsDep
from clusterfed.routing.lists import pinned_uuids
from clusterfed.routing.manifests import is_portable_data_hash, without_hints
from clusterfed.server.deps import CallerDep, ConfigDep, ListRequestDep, SelectParam, SessionDep
from clusterfed.server.keep.collections import check_signatures, sign_answer, stored_manifest
from clusterfed.server.models import Collection, Group, Link
from clusterfed.tokens import GROUP_TYPE, USER_TYPE, is_uuid, new_uuid, uuid_type

from .access import Access
from .listing import parse_select, run_list, selected
from .names import has_unique_name, insert_uniquely_named, name_taken
from .permissions import LEVELS, MANAGE, reachable, readable_clause
from .service import (
    COLLECTIONS,
    COMMON,
    GROUPS,
    LINKS,
    RESOURCES,
    Model,
    Resource,
    to_json,
)


async def get_access(
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    config: ConfigDep,
    remote: RemotePermissionsDep,
) -> Access:
    return Access(caller, session, request, config.cluster_id, remote)


AccessDep = Annotated[Access, Depends(get_access)]
# Accepted in bodies, never stored: a hash is computed from the manifest, and a
# replication level can only be the cluster default (see schemas.Replication).
NOT_STORED = frozenset({"portable_data_hash", "replication_desired"})
AnyBody = Annotated[dict[str, Any], Body()]
# On group records, for the caller: what another cluster reads to decide a move.
PERMISSION_FIELDS = ("can_write", "can_manage")
# A groups list whose uuid filters name at most this many groups (a permission check
# names one) decides each by a walk up from it, whose cost follows the group's depth,
# instead of a walk down through everything the caller can reach.
MAX_PINNED = 20


def _selectable(resource: Resource, *, listing: bool) -> tuple[str, ...]:
    # The permission flags are computed for lists (what other clusters ask), not for a GET.
    extra: tuple[str, ...] = PERMISSION_FIELDS if listing and resource is GROUPS else ()
    if resource is COLLECTIONS:
        extra = ("unsigned_manifest_text",)  # the stored manifest, only when selected
    return ("kind", "etag", *COMMON, *resource.fields, *extra)


def _answer(
    access: Access, resource: Resource, item: dict[str, Any], names: list[str] | None = None
) -> dict[str, Any]:
    """``item`` as the caller sees it: a collection's manifest signed for their credential
    (for every answer that carries one), then cut to ``names``."""
    if resource is COLLECTIONS and (names is None or "manifest_text" in names):
        sign_answer(access.request, item, unsigned=names is not None)
    elif resource is COLLECTIONS and names is not None and "unsigned_manifest_text" in names:
        item["unsigned_manifest_text"] = item.get("manifest_text")
    return selected(item, names)


async def _readable(
    access: Access, model: type[Model], query: Select[Any]
) -> tuple[Select[Any], CTE | None]:
    """``query`` cut down to what the caller may read, and the walk that decided it
    (None for an admin, who reads everything)."""
    if access.caller.is_admin:
        return query, None
    roots = await access.remote_roots(model)
    dialect = access.session.get_bind().dialect.name
    down = reachable(access.user_uuid, dialect=dialect, roots=roots)
    return query.where(readable_clause(model, down, access.user_uuid)), down


async def _levels(access: Access, down: CTE | None, uuids: list[str]) -> dict[str, int]:
    """The caller's level on each of ``uuids``, from the same walk as the listing."""
    if down is None:
        return dict.fromkeys(uuids, MANAGE)
    if not uuids:
        return {}
    rows = await access.session.execute(
        select(down.c.uuid, func.max(down.c.level))
        .where(down.c.uuid.in_(uuids))
        .group_by(down.c.uuid)
    )
    return {uuid: int(level) for uuid, level in rows}


async def _pinned_levels(access: Access, filters: list[Any]) -> dict[str, int] | None:
    """The caller's level on each group a groups list's filters pin; None: not pinned."""
    if access.caller.is_admin:
        return None
    pinned = pinned_uuids(filters)
    if pinned is None or len(pinned) > MAX_PINNED:
        return None
    return {uuid: await access.level(uuid, wanted=LEVELS["can_read"]) for uuid in sorted(pinned)}


async def _by_hash(access: Access, pdh: str, names: list[str] | None) -> dict[str, Any]:
    """A readable collection with this portable data hash, as Arvados answers it."""
    plain = without_hints(pdh)
    query, _ = await _readable(
        access, Collection, select(Collection).where(Collection.portable_data_hash == plain)
    )
    row = await access.session.scalar(query.order_by(Collection.modified_at.desc()).limit(1))
    if row is None:
        raise NotFound(f"{pdh} not found")
    item = {
        "kind": COLLECTIONS.kind,
        "uuid": plain,
        "portable_data_hash": plain,
        "manifest_text": row.manifest_text,
    }
    return _answer(access, COLLECTIONS, item, names)


def _parse(resource: Resource, schema: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    inner = body.get(resource.singular)
    if set(body) == {resource.singular} and isinstance(inner, dict):
        body = inner
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        # The one validation error handler renders it as the usual 422 error body.
        raise RequestValidationError(exc.errors(include_context=False)) from None


async def _row(access: Access, resource: Resource, uuid: str) -> Model:
    # The same words as Access.require gives an unreadable object: no existence leak.
    missing = NotFound(f"{uuid} not found")
    if not is_uuid(uuid, type_=resource.uuid_type):
        raise missing
    row = await access.session.scalar(select(resource.model).where(resource.model.uuid == uuid))
    if row is None:
        raise missing
    return row


async def _check_link(access: Access, values: dict[str, Any]) -> None:
    """A permission link is a grant: only who may manage its head may make one."""
    if values.get("link_class") != "permission":
        return
    if values.get("name") not in LEVELS:
        raise Unprocessable("a permission link's name must be can_read, can_write or can_manage")
    tail = values.get("tail_uuid")
    if not tail or uuid_type(tail) not in (USER_TYPE, GROUP_TYPE):
        raise Unprocessable("a permission link's tail_uuid must be a user or a role")
    await access.require(values["head_uuid"], "can_manage")


def _collection_manifest(
    access: Access, values: dict[str, Any], given: str | None, *, stored: str | None = None
) -> None:
    """Checks the manifest's block signatures (unless it is the one ``stored`` already),
    stores it without them, and sets its portable data hash."""
    manifest = values.get("manifest_text") or ""
    plain = stored_manifest(manifest)
    if plain != stored:
        check_signatures(access.request, manifest, is_admin=access.caller.is_admin)
    computed = portable_data_hash(plain)
    if given is not None and without_hints(given) != computed:
        raise Unprocessable(f"portable_data_hash {given} does not match manifest_text")
    values["manifest_text"] = plain
    values["portable_data_hash"] = computed


async def _owns_anything(access: Access, uuid: str) -> bool:
    query = select(
        or_(*(exists().where(model.owner_uuid == uuid) for model in (Group, Collection, Link)))
    )
    return bool(await access.session.scalar(query))


def build_router(resource: Resource) -> APIRouter:
    router = APIRouter(prefix=f"/arvados/v1/{resource.plural}", tags=[resource.plural])
    model = resource.model
    attributes = resource.attributes()

    @router.get("")
    async def list_objects(
        access: AccessDep,
        listing: ListRequestDep,
    ) -> dict[str, Any]:
        params = listing.params
        names = parse_select(listing.select, _selectable(resource, listing=True))
        pinned = await _pinned_levels(access, params.filters) if resource is GROUPS else None
        if pinned is not None:
            readable = [uuid for uuid, level in pinned.items() if level]
            query, down = select(model).where(model.uuid.in_(readable)), None
        else:
            query, down = await _readable(access, model, select(model))
        rows, available = await run_list(access.session, query, params, attributes, model.uuid)
        items = [to_json(resource, row) for row in rows]
        if resource is GROUPS:
            uuids = [item["uuid"] for item in items]
            levels = pinned if pinned is not None else await _levels(access, down, uuids)
            for item in items:
                level = levels.get(item["uuid"], 0)
                item["can_write"] = level >= LEVELS["can_write"]
                item["can_manage"] = level >= MANAGE
        answer: dict[str, Any] = {
            "kind": f"{resource.kind}List",
            "etag": "",
            "self_link": "",
            "items": [_answer(access, resource, item, names) for item in items],
            "offset": params.offset,
            "limit": params.limit,
        }
        if listing.counted:
            answer["items_available"] = available
        return answer

    @router.get("/{uuid}")
    async def get_object(
        uuid: str, access: AccessDep, select_: SelectParam = None
    ) -> dict[str, Any]:
        names = parse_select(select_, _selectable(resource, listing=False))
        if resource is COLLECTIONS and is_portable_data_hash(uuid):
            return await _by_hash(access, uuid, names)
        row = await _row(access, resource, uuid)
        await access.require(uuid, "can_read")
        return _answer(access, resource, to_json(resource, row), names)

    @router.post("")
    async def create_object(
        body: AnyBody,
        access: AccessDep,
        ensure_unique_name: Annotated[bool, Query()] = False,
    ) -> dict[str, Any]:
        data = _parse(resource, resource.create, body)
        access.require_active("create objects")
        values = data.model_dump(exclude=NOT_STORED)
        values["owner_uuid"] = values.get("owner_uuid") or access.user_uuid
        await access.require_owner(values["owner_uuid"])
        if resource is COLLECTIONS:
            _collection_manifest(access, values, getattr(data, "portable_data_hash", None))
        if resource is LINKS:
            await _check_link(access, values)
        values["uuid"] = new_uuid(access.local_id, resource.uuid_type)
        if has_unique_name(model, values):
            row = await insert_uniquely_named(
                access.session,
                model,
                values,
                singular=resource.singular,
                ensure_unique_name=ensure_unique_name,
            )
        else:
            row = model(**values)
            access.session.add(row)
            await access.session.flush()
        return _answer(access, resource, to_json(resource, row))

    async def update_object(uuid: str, body: AnyBody, access: AccessDep) -> dict[str, Any]:
        data = _parse(resource, resource.update, body)
        access.require_active("update objects")
        row = await _row(access, resource, uuid)
        await access.require(uuid, "can_write")
        values = data.model_dump(exclude_unset=True, exclude=NOT_STORED)
        if values.get("owner_uuid") is None:
            values.pop("owner_uuid", None)
        elif values["owner_uuid"] != row.owner_uuid:
            await access.require_owner(values["owner_uuid"])
        if isinstance(row, Link):
            await _check_link(access, {**_link_values(row), **values})
        if isinstance(row, Collection) and (
            "manifest_text" in values or "portable_data_hash" in data.model_fields_set
        ):
            values.setdefault("manifest_text", row.manifest_text)
            given = getattr(data, "portable_data_hash", None)
            _collection_manifest(access, values, given, stored=row.manifest_text)
        for name, value in values.items():
            setattr(row, name, value)
        named, owner = row.name, row.owner_uuid
        try:
            await access.session.flush()
        except IntegrityError:
            # Renamed, or moved, onto a name its (new) owner holds: the only unique rule
            # an update can break. The request's session is rolled back with the error.
            raise name_taken(resource.singular, named, owner) from None
        await access.session.refresh(row)
        return _answer(access, resource, to_json(resource, row))

    # One handler, two routes: Arvados clients update with PUT, others with PATCH, and
    # each route needs its own OpenAPI operation (the discovery document is built from
    # that schema; one route for both methods gives two operations the same ID).
    for method in ("PUT", "PATCH"):
        router.add_api_route(
            "/{uuid}",
            update_object,
            methods=[method],
            operation_id=f"{resource.plural}_update_{method.lower()}",
        )

    @router.delete("/{uuid}")
    async def delete_object(uuid: str, access: AccessDep) -> dict[str, Any]:
        access.require_active("delete objects")
        row = await _row(access, resource, uuid)
        await access.require(uuid, "can_write")
        if isinstance(row, Link):
            await _check_link(access, _link_values(row))
        if isinstance(row, Group) and await _owns_anything(access, uuid):
            raise Unprocessable(f"{uuid} is not empty; move or delete what it holds first")
        await access.session.delete(row)
        await access.session.flush()
        return _answer(access, resource, to_json(resource, row))

    return router


def _link_values(row: Link) -> dict[str, Any]:
    return {
        "link_class": row.link_class,
        "name": row.name,
        "tail_uuid": row.tail_uuid,
        "head_uuid": row.head_uuid,
    }


routers = [build_router(resource) for resource in RESOURCES]
