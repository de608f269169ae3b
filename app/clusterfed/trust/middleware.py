"""``FederationMiddleware``: pure ASGI; accepts foreign tokens before the host app runs.

For a request with a foreign v2 token it validates the token (``Federation.identify``),
enforces the token's scopes (403), and leaves the identity in
``scope["state"]["federation_identity"]`` for the host. Local tokens and anonymous
requests pass through untouched. Only credentials that claim to be v2 tokens are the
middleware's business (a malformed one is refused here, 401); any other credential (a v1
secret, the ManagementToken) is the host's to accept or refuse, except on a satellite of
a login cluster, where one the host does not know is validated there.

An ``Authorization`` header longer than ``MAX_AUTHORIZATION_BYTES`` is refused first, for
every request (431): no credential is that long (tokens over 4 kB are refused anyway),
and neither the token grammar nor the host's own lookups should ever see it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

from clusterfed.credentials import (
    MAX_AUTHORIZATION_BYTES,
    authorization_header,
    bearer_credential,
    oversized_authorization,
)
from clusterfed.errors import FederationError, Forbidden, Unauthorized, error_response
from clusterfed.exported import CONFIG_PATH
from clusterfed.identity import STATE_KEY, Identity
from clusterfed.service import Federation
from clusterfed.tokens import MalformedToken, Token, parse_token, scope_allows

from .throttle import client_address, parse_networks

V2_PREFIX = "v2/"
HEADER_TOO_LARGE = 431
# Served to anyone, as Arvados does. Clients send their token with every request,
# including for the discovery document and the exported config they start from;
# validating it here would let a scoped token or an issuer outage stop a client from
# being built at all.
PUBLIC_PATHS = frozenset({"/discovery/v1/apis/arvados/v1/rest", CONFIG_PATH})
TOKEN_RECORDS = "/arvados/v1/api_client_authorizations/"


class FederationMiddleware:
    def __init__(self, app: ASGIApp, *, federation: Federation) -> None:
        self.app = app
        self.federation = federation
        self.local_id = federation.cluster_id
        self.trusted_proxies = parse_networks(federation.config.federation.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if oversized_authorization(scope):
            message = f"Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes"
            await error_response(HEADER_TOO_LARGE, message)(scope, receive, send)
            return
        if scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = authorization_header(scope)
        credential = bearer_credential(header) if header is not None else None
        if credential is None:
            await self.app(scope, receive, send)
            return
        if not credential.startswith(V2_PREFIX):
            # On a satellite, a credential of another shape that the host does
            # not know is the login cluster's to validate; otherwise it is the host's.
            login = self.federation.login
            if not login.is_satellite or not await login.defers(credential):
                await self.app(scope, receive, send)
                return
            client = client_address(scope, self.trusted_proxies)
            await self._accept(
                login.identify(credential, client=client), None, scope, receive, send
            )
            return
        try:
            token = parse_token(credential)
        except MalformedToken as exc:
            await Unauthorized(f"malformed credential: {exc}").response()(scope, receive, send)
            return
        if token.issuer == self.local_id:
            await self.app(scope, receive, send)
            return
        client = client_address(scope, self.trusted_proxies)
        identifying = self.federation.identify(token, client=client)
        await self._accept(identifying, token, scope, receive, send)

    async def _accept(
        self,
        identifying: Awaitable[Identity],
        token: Token | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            identity = await identifying
            method, path = scope["method"], scope["path"]
            ends_itself = token is not None and _ends_itself(token, scope)
            if not (scope_allows(identity.scopes, method, path) or ends_itself):
                raise Forbidden(f"token scopes do not allow {method} {path}")
        except FederationError as exc:
            await exc.response()(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = identity
        await self.app(scope, receive, send)


def _ends_itself(token: Token, scope: Scope) -> bool:
    """A holder may always revoke their own token, whatever its scopes."""
    return scope["method"] == "DELETE" and scope["path"] == f"{TOKEN_RECORDS}{token.uuid}"
