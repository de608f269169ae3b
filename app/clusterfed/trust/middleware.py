"""``FederationMiddleware``: pure ASGI; accepts foreign tokens before the host app runs.

For a request with a foreign v2 token it validates the token (``Federation.identify``),
enforces the token's scopes (403), and leaves the identity in
``scope["state"]["federation_identity"]`` for the host. Local tokens and anonymous
requests pass through untouched. Only credentials that claim to be v2 tokens are the
middleware's business (a malformed one is refused here, 401); any other credential (a v1
secret, the ManagementToken) is the host's to accept or refuse, except on a satellite of
a login cluster, where one the host does not know is validated there (SPEC 3.8).
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

from clusterfed.credentials import authorization_header, bearer_credential
from clusterfed.errors import FederationError, Forbidden, Unauthorized
from clusterfed.exported import CONFIG_PATH
from clusterfed.identity import STATE_KEY, Identity
from clusterfed.service import Federation
from clusterfed.tokens import MalformedToken, parse_token, scope_allows

V2_PREFIX = "v2/"
# Served to anyone, as Arvados does. Clients send their token with every request,
# including for the discovery document and the exported config they start from;
# validating it here would let a scoped token or an issuer outage stop a client from
# being built at all.
PUBLIC_PATHS = frozenset({"/discovery/v1/apis/arvados/v1/rest", CONFIG_PATH})


class FederationMiddleware:
    def __init__(self, app: ASGIApp, *, federation: Federation) -> None:
        self.app = app
        self.federation = federation
        self.local_id = federation.cluster_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = authorization_header(scope)
        credential = bearer_credential(header) if header is not None else None
        if credential is None:
            await self.app(scope, receive, send)
            return
        if not credential.startswith(V2_PREFIX):
            # SPEC 3.8: on a satellite, a credential of another shape that the host does
            # not know is the login cluster's to validate; otherwise it is the host's.
            login = self.federation.login
            if not login.is_satellite or not await login.defers(credential):
                await self.app(scope, receive, send)
                return
            await self._accept(login.identify(credential), scope, receive, send)
            return
        try:
            token = parse_token(credential)
        except MalformedToken as exc:
            await Unauthorized(f"malformed credential: {exc}").response()(scope, receive, send)
            return
        if token.issuer == self.local_id:
            await self.app(scope, receive, send)
            return
        await self._accept(self.federation.identify(token), scope, receive, send)

    async def _accept(
        self, identifying: Awaitable[Identity], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            identity = await identifying
            method, path = scope["method"], scope["path"]
            if not scope_allows(identity.scopes, method, path):
                raise Forbidden(f"token scopes do not allow {method} {path}")
        except FederationError as exc:
            await exc.response()(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = identity
        await self.app(scope, receive, send)
