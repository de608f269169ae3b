"""The calling side of remote permission checks (docs/protocol.md#remote-permission-checks).

    answer = await federation.permissions.check(
        issuer_token=token, user_uuid=user, target_uuid=project, permission="can_write"
    )
    if not answer.allowed: ...

A cluster asks cluster X about a user only when X issued the user's token and the
target is X's: the token goes to X in the form X already knows (``tokens.for_issuer``),
so no cluster learns a credential it could replay elsewhere. Anything else is refused
with 422 before a byte leaves this process.

The question is asked in the form every Arvados cluster answers, so a real Arvados home
works as well as a clusterfed one: ``GET /arvados/v1/groups?remote=<us>&filters=[["uuid",
"=",X]]&select=["uuid","can_write","can_manage"]``. No item: the user cannot read X (or
it does not exist, or is not a project); an item: ``can_read``, and its ``can_write`` /
``can_manage`` decide the rest. (``/federation/v1/permission_checks`` stays, served by
every clusterfed cluster, as the explicit form of the same question.)

Answers, allowed and denied alike, are cached for ``PermissionCacheTTL`` keyed by
(user, target, permission): a permission revoked at home takes effect here within
that time. Failures are not cached, and they fail closed: a home cluster that cannot
answer makes the check raise ``BadGateway``/``GatewayTimeout``, never "allowed".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Annotated, Any

from cachetools import TTLCache
from fastapi import Depends
from starlette.requests import Request

from clusterfed.config import ClusterConfig
from clusterfed.credentials import parse_authorization
from clusterfed.errors import BadGateway, Unauthorized, Unprocessable
from clusterfed.flights import Flights
from clusterfed.tokens import MalformedToken, Token, for_issuer, is_uuid, uuid_cluster

from .remote import RemoteClient
from .statuses import permission_check_error

GROUPS_PATH = "/arvados/v1/groups"
SELECT = json.dumps(["uuid", "can_write", "can_manage"])
PERMISSIONS = ("can_read", "can_write", "can_manage")
CACHE_SIZE = 10_000
UNREADABLE = "target does not exist, is not a project, or the user cannot read it"
THIRD_CLUSTER_REASON = (
    "forwarding a token salted for us to a third cluster would hand that cluster the "
    "user's identity here"
)


@dataclass(frozen=True, slots=True)
class PermissionAnswer:
    allowed: bool
    user_uuid: str
    target_uuid: str
    permission: str
    reason: str
    cluster_id: str  # the cluster that answered
    cached: bool = False


class RemotePermissions:
    def __init__(self, config: ClusterConfig, remote: RemoteClient) -> None:
        self.local_id = config.cluster_id
        self.remote = remote
        ttl = config.federation.permission_cache_ttl
        # A TTL of 0 turns caching off; TTLCache would otherwise keep entries for 0 s
        # only by accident of timing.
        self.cache: TTLCache[tuple[str, str, str], PermissionAnswer] | None = (
            TTLCache(maxsize=CACHE_SIZE, ttl=ttl) if ttl > 0 else None
        )
        self._inflight: Flights[tuple[str, str, str], PermissionAnswer] = Flights()

    async def check(
        self, *, issuer_token: Token, user_uuid: str, target_uuid: str, permission: str
    ) -> PermissionAnswer:
        home = self._home_to_ask(issuer_token, user_uuid, target_uuid, permission)
        key = (user_uuid, target_uuid, permission)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return replace(hit, cached=True)
        # Concurrent identical checks share one call to the home cluster (flights.py).
        return await self._inflight.join(
            key,
            lambda: self._ask_and_cache(
                key, home, issuer_token, user_uuid, target_uuid, permission
            ),
        )

    async def _ask_and_cache(
        self,
        key: tuple[str, str, str],
        home: str,
        token: Token,
        user_uuid: str,
        target_uuid: str,
        permission: str,
    ) -> PermissionAnswer:
        answer = await self._ask(home, token, user_uuid, target_uuid, permission)
        if self.cache is not None:  # answers only: failures raise before this
            self.cache[key] = answer
        return answer

    def _home_to_ask(self, token: Token, user_uuid: str, target_uuid: str, permission: str) -> str:
        if permission not in PERMISSIONS:
            raise Unprocessable(f"permission must be one of {', '.join(PERMISSIONS)}")
        if not is_uuid(target_uuid):
            raise Unprocessable("target is not a well-formed UUID")
        target_cluster = uuid_cluster(target_uuid)
        if target_cluster == self.local_id:
            raise Unprocessable(f"{target_uuid} is on this cluster; it is decided here")
        if token.issuer != target_cluster or uuid_cluster(user_uuid) != target_cluster:
            issuer = token.issuer or "this cluster"
            raise Unprocessable(
                f"cannot ask {target_cluster} whether {user_uuid} may use {target_uuid}: "
                f"only the user's home cluster is asked, and this user's token was issued "
                f"by {issuer}; {THIRD_CLUSTER_REASON}"
            )
        return target_cluster

    async def _ask(
        self, home: str, token: Token, user_uuid: str, target_uuid: str, permission: str
    ) -> PermissionAnswer:
        answer = await self.remote.request(
            home,
            "GET",
            GROUPS_PATH,
            token=for_issuer(token, self.local_id),
            params={
                "remote": self.local_id,
                "filters": json.dumps([["uuid", "=", target_uuid]]),
                "select": SELECT,
            },
        )
        failure = permission_check_error(home, answer.status_code)
        if failure is not None:
            raise failure
        allowed, reason = _decide(answer.json_object(), target_uuid, permission)
        if allowed is None:
            raise BadGateway(f"{home} gave an invalid answer to a permission check: {reason}")
        return PermissionAnswer(
            allowed=allowed,
            user_uuid=user_uuid,
            target_uuid=target_uuid,
            permission=permission,
            reason=reason,
            cluster_id=home,
        )


def _decide(
    body: dict[str, Any] | None, target_uuid: str, permission: str
) -> tuple[bool | None, str]:
    """(allowed, reason) from a groups list answer; allowed None when it is not one.

    The answer must be about the question asked: an item for another UUID, or flags that
    are not booleans, come from a broken or confused home, and a confused "yes" must not
    count.
    """
    items = body.get("items") if body is not None else None
    if not isinstance(items, list) or len(items) > 1:
        return None, "not a list of at most one group"
    if not items:
        return False, UNREADABLE
    item = items[0]
    if not isinstance(item, dict) or item.get("uuid") != target_uuid:
        return None, "the group listed is not the one asked about"
    flags = {name: item.get(name) for name in ("can_write", "can_manage")}
    if not all(isinstance(flag, bool) for flag in flags.values()):
        return None, "the group carries no boolean can_write and can_manage"
    best = next((name for name, flag in reversed(flags.items()) if flag), "can_read")
    allowed = PERMISSIONS.index(best) >= PERMISSIONS.index(permission)
    return allowed, f"the user has {best}" if allowed else f"the user has only {best}"


def request_token(request: Request) -> Token:
    """The request's token, re-read from its Authorization header.

    The middleware keeps no token in the identity (its cache must not hold tokens), so
    the calling side reads it again here when it needs to present it to the issuer.
    """
    try:
        token = parse_authorization(request.headers.get("authorization"))
    except MalformedToken as exc:
        raise Unauthorized(f"malformed credential: {exc}") from None
    if token is None:
        raise Unauthorized("this request needs a token (Authorization: Bearer <token>)")
    return token


async def get_remote_permissions(request: Request) -> RemotePermissions:
    """FastAPI dependency: the checker of the ``Federation`` at ``app.state.federation``.

    Async although it does no I/O: FastAPI would run a plain ``def`` in a worker thread."""
    federation = getattr(request.app.state, "federation", None)
    permissions = getattr(federation, "permissions", None)
    if not isinstance(permissions, RemotePermissions):
        raise RuntimeError("app.state.federation must be the app's Federation")
    return permissions


RemotePermissionsDep = Annotated[RemotePermissions, Depends(get_remote_permissions)]
