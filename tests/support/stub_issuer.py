"""A stub issuer cluster that answers the two validation calls however a test says.

It is a real HTTP server (run it with ``serving()``) so the middleware's client,
timeouts and parsing are exercised for real; only the answers are scripted. Use the real
cluster (``ClusterProcess``) for well-behaved issuers and this one to misbehave on
purpose: error statuses, HTML, wrong prefixes, hangs.

It also answers ``GET /arvados/v1/groups`` as an Arvados home does (and nothing of
clusterfed's own), for the permission checks a cluster asks in Arvados's form: a test
sets ``grants[project][user] = (can_write, can_manage)``; a project missing there, or
without the user, is one the user cannot read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clusterfed.server.testing import ServerThread
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid, parse_token
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

TOKEN_PATH = "/arvados/v1/api_client_authorizations/current"
USER_PATH = "/arvados/v1/users/current"
GROUPS_PATH = "/arvados/v1/groups"
CONFIG_PATH = "/arvados/v1/config"


@dataclass
class Answer:
    """What the stub says for one path: a JSON body with a status, raw HTML, or a hang."""

    status: int = 200
    json: Any = None
    html: str | None = None
    hang: float = 0.0
    raw: bytes | None = None  # sent as is, with ``headers``
    headers: dict[str, str] | None = None


async def _hang(request: Request, seconds: float) -> None:
    """``seconds`` without an answer, or until the caller gives up and hangs up: a handler
    still sleeping for a caller long gone would hold the server's shutdown for its
    graceful timeout (and end in an error log that it cancelled the handlers)."""

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hung_up(), seconds)


@dataclass
class StubUser:
    uuid: str
    fields: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"kind": "arvados#user", "uuid": self.uuid, **self.fields}


class StubIssuer:
    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.calls: Counter[str] = Counter()
        self.tokens: dict[str, StubUser] = {}  # token uuid -> its user
        self.overrides: dict[str, Answer] = {}  # path -> scripted answer
        self.grants: dict[str, dict[str, tuple[bool, bool]]] = {}
        self.group_requests: list[tuple[str, dict[str, str]]] = []  # (credential, query)
        self.seen: list[tuple[str, dict[str, str], str]] = []  # (path, query, authorization)
        # What GET /arvados/v1/config exports (None: 404), e.g. a LoginCluster it claims.
        self.exported: dict[str, Any] | None = None
        self.port = 0  # where serving() listens
        self.app = Starlette(
            routes=[
                Route(TOKEN_PATH, self._token),
                Route(USER_PATH, self._user),
                Route(GROUPS_PATH, self._groups),
                Route(CONFIG_PATH, self._config),
            ]
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[ServerThread]:
        """The stub on a free loopback port (``port``) until the block ends."""
        with ServerThread(self.app) as server:
            self.port = server.port
            yield server

    def issue(self, **user_fields: Any) -> tuple[str, StubUser]:
        """A new token for a new user with the given fields; returns (v2 token, user)."""
        user = StubUser(new_uuid(self.cluster_id, USER_TYPE), user_fields)
        return self.issue_for(user), user

    def issue_for(self, user: StubUser) -> str:
        token_uuid = new_uuid(self.cluster_id, TOKEN_TYPE)
        self.tokens[token_uuid] = user
        return f"v2/{token_uuid}/{new_secret()}"

    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _record(self, request: Request) -> None:
        query = dict(request.query_params)
        self.seen.append((request.url.path, query, request.headers.get("authorization", "")))

    async def _scripted(self, path: str, request: Request) -> Response | None:
        answer = self.overrides.get(path)
        if answer is None:
            return None
        if answer.hang:
            await _hang(request, answer.hang)
        if answer.raw is not None:
            return Response(answer.raw, status_code=answer.status, headers=answer.headers)
        if answer.html is not None:
            return HTMLResponse(answer.html, status_code=answer.status)
        return JSONResponse(
            answer.json if answer.json is not None else {"errors": ["scripted"]},
            status_code=answer.status,
        )

    def _presented(self, request: Request) -> tuple[str, StubUser] | None:
        header = request.headers.get("authorization", "")
        try:
            token = parse_token(header.removeprefix("Bearer "))
        except ValueError:
            return None
        user = self.tokens.get(token.uuid or "")
        return (token.uuid, user) if token.uuid and user else None

    async def _token(self, request: Request) -> Response:
        self.calls[TOKEN_PATH] += 1
        self._record(request)
        scripted = await self._scripted(TOKEN_PATH, request)
        if scripted is not None:
            return scripted
        presented = self._presented(request)
        if presented is None:
            return JSONResponse({"errors": ["unknown token"]}, status_code=401)
        token_uuid, user = presented
        return JSONResponse(
            {
                "kind": "arvados#apiClientAuthorization",
                "uuid": token_uuid,
                "owner_uuid": user.uuid,
                "expires_at": None,
                "scopes": ["all"],
            }
        )

    async def _user(self, request: Request) -> Response:
        self.calls[USER_PATH] += 1
        self._record(request)
        scripted = await self._scripted(USER_PATH, request)
        if scripted is not None:
            return scripted
        presented = self._presented(request)
        if presented is None:
            return JSONResponse({"errors": ["unknown token"]}, status_code=401)
        return JSONResponse(presented[1].record())

    async def _config(self, request: Request) -> Response:
        self.calls[CONFIG_PATH] += 1
        if self.exported is None:
            return JSONResponse({"errors": ["no config here"]}, status_code=404)
        return JSONResponse(self.exported)

    async def _groups(self, request: Request) -> Response:
        self.calls[GROUPS_PATH] += 1
        credential = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.group_requests.append((credential, dict(request.query_params)))
        presented = self._presented(request)
        if presented is None:
            return JSONResponse({"errors": ["unknown token"]}, status_code=401)
        user = presented[1]
        items = []
        for name, operator, operand in json.loads(request.query_params.get("filters", "[]")):
            grant = self.grants.get(operand, {}).get(user.uuid)
            if (name, operator) == ("uuid", "=") and grant is not None:
                items.append({"uuid": operand, "can_write": grant[0], "can_manage": grant[1]})
        return JSONResponse({"kind": "arvados#groupList", "items": items})
