"""What each object resource is: its table, UUID type, Arvados kind and JSON shape."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import InstrumentedAttribute

from clusterfed.server.models import Collection, Group, Link
from clusterfed.timestamps import wire_time
from clusterfed.tokens import COLLECTION_TYPE, GROUP_TYPE, LINK_TYPE

from . import schemas

Model = Group | Collection | Link
COMMON = ("uuid", "owner_uuid", "created_at", "modified_at")


@dataclass(frozen=True, slots=True)
class Resource:
    plural: str  # the URL segment: /arvados/v1/<plural>
    singular: str  # the key Arvados clients wrap bodies in: {"collection": {...}}
    kind: str
    model: type[Model]
    uuid_type: str
    fields: tuple[str, ...]
    filterable: tuple[str, ...]
    create: type[BaseModel]
    update: type[BaseModel]

    def attributes(self) -> dict[str, InstrumentedAttribute[Any]]:
        return {name: getattr(self.model, name) for name in COMMON + self.filterable}


GROUPS = Resource(
    "groups",
    "group",
    "arvados#group",
    Group,
    GROUP_TYPE,
    ("name", "group_class", "description", "properties"),
    ("name", "group_class", "description"),
    schemas.GroupCreate,
    schemas.GroupUpdate,
)
COLLECTIONS = Resource(
    "collections",
    "collection",
    "arvados#collection",
    Collection,
    COLLECTION_TYPE,
    ("name", "description", "manifest_text", "portable_data_hash", "properties"),
    ("name", "description", "portable_data_hash"),
    schemas.CollectionCreate,
    schemas.CollectionUpdate,
)
LINKS = Resource(
    "links",
    "link",
    "arvados#link",
    Link,
    LINK_TYPE,
    ("link_class", "name", "tail_uuid", "head_uuid", "properties"),
    ("link_class", "name", "tail_uuid", "head_uuid"),
    schemas.LinkCreate,
    schemas.LinkUpdate,
)
RESOURCES = (GROUPS, COLLECTIONS, LINKS)


def to_json(resource: Resource, row: Model) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": resource.kind,
        "uuid": row.uuid,
        # Cheap and changes on every update: enough for a client's If-Match.
        "etag": hashlib.sha1(f"{row.uuid}{row.modified_at.isoformat()}".encode()).hexdigest()[:25],
        "owner_uuid": row.owner_uuid,
        "created_at": wire_time(row.created_at),
        "modified_at": wire_time(row.modified_at),
    }
    for name in resource.fields:
        body[name] = getattr(row, name)
    if resource is COLLECTIONS:
        body.update(COLLECTION_CONSTANTS)
    return body


# What Arvados clients read from every collection record and this server does not vary:
# nothing is ever trashed here (arv-put reads trash_at), and every block has the
# cluster's default replication in its one storage class.
COLLECTION_CONSTANTS: dict[str, Any] = {
    "trash_at": None,
    "delete_at": None,
    "is_trashed": False,
    "replication_desired": None,
    "storage_classes_desired": ["default"],
}
