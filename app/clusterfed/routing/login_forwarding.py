"""``LoginClusterRouter``: pure ASGI; what a satellite defers to its login cluster L
(docs/protocol.md#login-cluster, as Arvados's ``lib/controller/federation/conn.go`` does).

- ``GET /login`` and ``GET /logout``: a 302 to the same page on L, with ``return_to``
  (and ``remote``, only when given);
- ``POST``/``GET /arvados/v1/api_client_authorizations`` (token create and list),
  ``GET /arvados/v1/users`` (the list), ``POST /arvados/v1/users/setup``,
  ``POST /arvados/v1/users/<uuid>/activate`` and ``.../unsetup``: forwarded to L and its
  answer relayed; the users that come back are mirrored here.

The credential sent to L: a token L issued goes unchanged, a third cluster's v2 token
salted for L, a credential that is not a v2 token as presented (only one the middleware
already deferred to L). A token this cluster issued is refused (401): L would call back
here to validate it and refuse the answer, since this cluster cannot vouch for L's users.

Mount it inside ``FederationMiddleware`` (``mount`` does, on a satellite only), so the
credential is validated, and its scopes enforced, before anything is sent to L; a request
without a credential this cluster accepts is answered here (``gate``), never sent to L.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clusterfed.credentials import authorization_header, bearer_credential
from clusterfed.errors import BadGateway, FederationError, Unauthorized, Unprocessable
from clusterfed.identity import RemoteUser, get_identity
from clusterfed.params import header, query_items, serve_locally
from clusterfed.service import Federation
from clusterfed.tokens import (
    USER_TYPE,
    CannotResalt,
    MalformedToken,
    Token,
    anonymous_user_uuid,
    is_uuid,
    parse_token,
    salt,
)
from clusterfed.trust.validator import user_from_record

from .forwarding import relay, remote_json
from .gate import require_accepted
from .inprocess import request_body

log = logging.getLogger("clusterfed.login_forwarding")

TOKENS_PATH = "/arvados/v1/api_client_authorizations"
USERS_PATH = "/arvados/v1/users"
REDIRECTS = frozenset({"/login", "/logout"})
USER_ACTIONS = frozenset({"activate", "unsetup"})
# A user record is mirrored only when it carries these: a list with ``select`` may leave
# attributes out, and an absent email must not erase the mirror's.
MIRRORED_KEYS = frozenset({"uuid", "email", "username", "first_name", "last_name", "is_active"})


class LoginClusterRouter:
    def __init__(self, app: ASGIApp, *, federation: Federation) -> None:
        self.app = app
        self.federation = federation
        self.local_id = federation.cluster_id
        self.login_cluster = federation.config.login_cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A request a peer forwarded, or one marked forwarded_for / bypass_federation, is
        # this cluster's to answer (Arvados's UserList honours BypassFederation too).
        if scope["type"] != "http" or serve_locally(scope):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        response: Response | None = None
        try:
            if path in REDIRECTS and method in ("GET", "HEAD"):
                response = self._redirect(scope, path)
            elif _deferred(method, path):
                response = await self._forward(scope, receive, method, path)
        except FederationError as exc:
            response = exc.response()
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _base_url(self) -> str:
        remote = self.federation.remote.clusters.get(self.login_cluster)
        if remote is None:
            raise BadGateway(f"login cluster {self.login_cluster} has no RemoteClusters entry")
        return remote.base_url

    def _redirect(self, scope: Scope, path: str) -> Response:
        query = dict(query_items(scope))
        params = {"return_to": query.get("return_to", "")}
        if path == "/login" and "remote" in query:
            params["remote"] = query["remote"]
        return RedirectResponse(f"{self._base_url()}{path}?{urlencode(params)}", status_code=302)

    def _token(self, scope: Scope) -> Token | None:
        """The caller's credential as it may be sent to the login cluster."""
        raw = authorization_header(scope)
        credential = bearer_credential(raw) if raw is not None else None
        if credential is None:
            return None
        login = self.login_cluster
        if not credential.startswith("v2/"):
            identity = get_identity(scope)
            if identity is None or identity.issuer != login:
                raise Unauthorized(
                    f"this request is served by login cluster {login}, and this credential "
                    f"is this cluster's own: {login} never sees it; use a token {login} issued"
                )
            return Token(uuid=None, secret=credential)
        try:
            token = parse_token(credential)
        except MalformedToken as exc:
            raise Unauthorized(f"malformed credential: {exc}") from None
        if token.issuer == login:
            return token
        if token.issuer == self.local_id:
            raise Unauthorized(
                f"this request is served by login cluster {login}, and a token issued by "
                f"this cluster ({self.local_id}) is never sent there; use a token {login} issued"
            )
        try:
            return salt(token, login)
        except CannotResalt:
            raise Unprocessable(
                f"this request is served by login cluster {login}, but the token presented "
                "is already salted for this cluster and cannot be salted again; present the "
                "unsalted token"
            ) from None

    async def _forward(self, scope: Scope, receive: Receive, method: str, path: str) -> Response:
        login = self.login_cluster
        token = self._token(scope)
        # A stranger's request is answered here: nothing goes to L on its behalf.
        await require_accepted(scope, self.federation, goes_to=f"login cluster {login}")
        content = (await request_body(scope, receive))[0] if method == "POST" else None
        query = scope["query_string"].decode("latin-1")
        target = f"{path}?{query}" if query else path
        content_type = header(scope, b"content-type")
        headers = {"content-type": content_type} if content and content_type else None
        log.debug("forwarding %s %s to login cluster %s", method, path, login)
        response = await self.federation.remote.request(
            login, method, target, token=token, content=content or None, headers=headers
        )
        if path.startswith(USERS_PATH) and response.status_code == 200:
            await self._mirror(remote_json(response, login))
        return relay(response, login, hints=False)

    async def _mirror(self, body: Any) -> None:
        """Mirror every user record of the login cluster in an answer."""
        if not isinstance(body, dict):
            return
        items = body.get("items")
        records = items if isinstance(items, list) else [body]
        validator = self.federation.validator
        policy = validator._policy(self.login_cluster)
        for record in records:
            remote = _remote_user(record, self.login_cluster)
            if remote is None:
                continue
            try:
                await self.federation.store.mirror_user(remote, policy)
            except Exception as exc:  # the answer stands; the next validation mirrors it
                log.warning("could not mirror user %s: %s", remote.uuid, type(exc).__name__)


def _deferred(method: str, path: str) -> bool:
    if path == TOKENS_PATH:
        return method in ("GET", "POST")
    if path == USERS_PATH:
        return method == "GET"
    if method != "POST" or not path.startswith(USERS_PATH + "/"):
        return False
    parts = path[len(USERS_PATH) + 1 :].split("/")
    if parts == ["setup"]:
        return True
    return len(parts) == 2 and is_uuid(parts[0], type_=USER_TYPE) and parts[1] in USER_ACTIONS


def _remote_user(record: Any, login: str) -> RemoteUser | None:
    if not isinstance(record, dict) or not record.keys() >= MIRRORED_KEYS:
        return None
    uuid = record["uuid"]
    if not is_uuid(uuid, type_=USER_TYPE) or uuid[:5] != login:
        return None
    if uuid == anonymous_user_uuid(login):
        return None

    try:
        return user_from_record(record, uuid, login)
    except Unauthorized:
        return None  # a record no store can hold is not mirrored (as in a validation)
