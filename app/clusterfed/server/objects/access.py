"""The access policy of the object endpoints: local graph, admins, and the home cluster.

A caller's level on an object is the best of:
- ``can_manage`` for a local admin;
- the local permission graph (``permissions.permission_level``);
- for a user of cluster X, when the object's owner chain leads to a project on X: what X
  says about that project (asked through ``RemotePermissions``, so cached, and refused
  when X did not issue the caller's token).

An object the caller cannot read does not exist for them (404, no existence leak); one
they can read but not change answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.errors import Forbidden, NotFound
from clusterfed.outbound.permissions import RemotePermissions, request_token
from clusterfed.server.models import Collection, Group, Link
from clusterfed.server.users.auth import Caller
from clusterfed.tokens import GROUP_TYPE, USER_TYPE, is_uuid, uuid_cluster, uuid_type

from .permissions import LEVEL_NAMES, LEVELS, MANAGE, owner_root, permission_level

# Remote projects whose readability one listing asks about, at most. Past this the
# listing shows only what is readable locally rather than make hundreds of calls.
MAX_REMOTE_ROOTS = 50


@dataclass
class Access:
    caller: Caller
    session: AsyncSession
    request: Request
    local_id: str
    remote: RemotePermissions

    @property
    def user_uuid(self) -> str:
        return self.caller.user.uuid

    def require_active(self, action: str) -> None:
        if not self.caller.user.is_active:
            raise Forbidden(f"inactive users may not {action}")

    async def level(self, uuid: str, *, wanted: int) -> int:
        """The caller's level on ``uuid``; asks the home cluster only when it may help."""
        if self.caller.is_admin:
            return MANAGE
        level = await permission_level(self.session, user_uuid=self.user_uuid, target_uuid=uuid)
        if level >= wanted or not self.caller.is_foreign(self.local_id):
            return level
        root = await owner_root(self.session, uuid, local_id=self.local_id)
        if root is None or uuid_cluster(root) != self.caller.issuer:
            return level
        # The level wanted, then can_read: the difference between 403 and 404.
        for permission in dict.fromkeys((LEVEL_NAMES[wanted], "can_read")):
            if LEVELS[permission] > level and await self._remote_allows(root, permission):
                return LEVELS[permission]
        return level

    async def require(self, uuid: str, permission: str) -> None:
        wanted = LEVELS[permission]
        level = await self.level(uuid, wanted=wanted)
        if level < LEVELS["can_read"]:
            raise NotFound(f"{uuid} not found")
        if level < wanted:
            raise Forbidden(f"you need {permission} on {uuid}")

    async def require_owner(self, owner_uuid: str) -> None:
        """May the caller put an object into ``owner_uuid`` (their home, or a project)?"""
        if owner_uuid == self.user_uuid:
            return
        cluster = uuid_cluster(owner_uuid)
        if cluster != self.local_id:
            answer = await self.remote.check(
                issuer_token=request_token(self.request),
                user_uuid=self.user_uuid,
                target_uuid=owner_uuid,
                permission="can_write",
            )
            if not answer.allowed:
                raise Forbidden(
                    f"{cluster} says you may not write to project {owner_uuid}"
                    + (f": {answer.reason}" if answer.reason else "")
                )
            return
        if uuid_type(owner_uuid) not in (GROUP_TYPE, USER_TYPE):
            raise Forbidden(f"owner_uuid {owner_uuid} must be a user or a project")
        if uuid_type(owner_uuid) == GROUP_TYPE:
            group_class = await self.session.scalar(
                select(Group.group_class).where(Group.uuid == owner_uuid)
            )
            if group_class == "role":
                raise Forbidden(f"{owner_uuid} is a role; only projects hold objects")
        if await self.level(owner_uuid, wanted=LEVELS["can_write"]) < LEVELS["can_write"]:
            raise Forbidden(f"you may not write to {owner_uuid}")

    async def remote_roots(self, model: type[Group | Collection | Link]) -> dict[str, int]:
        """Projects of the caller's home cluster that hold objects here and that the home
        cluster says the caller may read: extra starting points for a listing's walk."""
        if not self.caller.is_foreign(self.local_id) or self.caller.is_admin:
            return {}
        prefix = f"{self.caller.issuer}-{GROUP_TYPE}-"
        owners: set[str] = set()
        for table in {model, Group}:
            rows = await self.session.scalars(
                select(table.owner_uuid)
                .distinct()
                .where(table.owner_uuid.like(f"{prefix}%"))
                .limit(MAX_REMOTE_ROOTS)
            )
            owners.update(rows)
        roots: dict[str, int] = {}
        for owner in sorted(owners)[:MAX_REMOTE_ROOTS]:
            if is_uuid(owner) and await self._remote_allows(owner, "can_read"):
                roots[owner] = LEVELS["can_read"]
        return roots

    async def _remote_allows(self, project: str, permission: str) -> bool:
        answer = await self.remote.check(
            issuer_token=request_token(self.request),
            user_uuid=self.user_uuid,
            target_uuid=project,
            permission=permission,
        )
        return answer.allowed
