"""Request bodies of the object endpoints, validated at the edge.

Unknown attributes are refused (422) rather than dropped: a misspelt ``owner_uuid``
silently ignored would leave an object somewhere its owner did not intend.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from clusterfed.jsonbody import check_document, check_text

# Every client string that is stored: NUL or a lone surrogate would fail at the database.
SafeStr = Annotated[str, AfterValidator(check_text)]
# Properties are stored as JSON: keys and string values alike, and bounded in depth.
Properties = Annotated[dict[str, Any], AfterValidator(check_document)]
Uuid = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}$")]
Name = Annotated[SafeStr, StringConstraints(max_length=255)]
ProjectName = Annotated[SafeStr, StringConstraints(min_length=1, max_length=255)]
Permission = Literal["can_read", "can_write", "can_manage"]


def _cluster_default(value: Any) -> None:
    if value is not None:
        raise ValueError(
            "this cluster stores no blocks (it runs no Keep), so there is nothing to replicate; "
            "only null, the cluster default, is accepted"
        )


# Arvados clients send it: Collection.save_new always does, null unless told otherwise.
Replication = Annotated[None, BeforeValidator(_cluster_default)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupCreate(_Body):
    name: ProjectName
    group_class: Literal["project", "role"]
    owner_uuid: Uuid | None = None
    description: SafeStr | None = None
    properties: Properties = Field(default_factory=dict)


class GroupUpdate(_Body):
    name: ProjectName | None = None
    owner_uuid: Uuid | None = None
    description: SafeStr | None = None
    properties: Properties | None = None


class CollectionCreate(_Body):
    name: Name | None = None
    owner_uuid: Uuid | None = None
    description: SafeStr | None = None
    manifest_text: SafeStr = ""
    portable_data_hash: SafeStr | None = None  # checked against manifest_text if given
    properties: Properties = Field(default_factory=dict)
    replication_desired: Replication = None


class CollectionUpdate(_Body):
    name: Name | None = None
    owner_uuid: Uuid | None = None
    description: SafeStr | None = None
    manifest_text: SafeStr | None = None
    portable_data_hash: SafeStr | None = None
    properties: Properties | None = None
    replication_desired: Replication = None


class LinkCreate(_Body):
    link_class: Annotated[SafeStr, StringConstraints(min_length=1, max_length=64)]
    name: Name | None = None
    tail_uuid: Uuid | None = None
    head_uuid: Uuid
    owner_uuid: Uuid | None = None
    properties: Properties = Field(default_factory=dict)


class LinkUpdate(_Body):
    name: Name | None = None
    owner_uuid: Uuid | None = None
    properties: Properties | None = None


class PermissionCheck(_Body):
    target_uuid: Uuid
    permission: Permission
