"""``ArvadosRequests``: pure ASGI; every request in the one shape the endpoints read.

    app.add_middleware(FederatedRouter, federation=federation)
    app.add_middleware(FederationMiddleware, federation=federation)
    app.add_middleware(ArvadosRequests)  # outside both: they see the canonical request

For ``/arvados/v1/`` requests it applies ``params.canonical_request``: a method override
becomes the method it names, a form body becomes query parameters plus a JSON body, an
empty ``cluster_id=`` disappears. For every request, ``Authorization: Bearer -`` (what an
Arvados controller sends for an anonymous call) is removed: no token. A body it cannot
read as what it claims to be is answered 400 with the JSON error body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .credentials import bearer_credential
from .errors import FederationError
from .params import (
    API_PREFIX,
    OVERRIDE_HEADER,
    canonical_request,
    encode_query,
    header,
    needs_body,
    query_items,
)
from .routing.inprocess import BodyTooLarge, read_body, replay, with_body

AUTHORIZATION = b"authorization"
ANONYMOUS_CREDENTIAL = "-"


class ArvadosRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _without_anonymous_credential(scope)
        read = needs_body(scope)
        if not scope["path"].startswith(API_PREFIX) or not (read or scope["query_string"]):
            # Nothing to bring into shape: the common GET without parameters costs nothing.
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive) if read else b""
            canonical = canonical_request(
                method=scope["method"],
                path=scope["path"],
                query=query_items(scope),
                content_type=header(scope, b"content-type"),
                override=header(scope, OVERRIDE_HEADER),
                body=body,
            )
        except BodyTooLarge as exc:
            await FederationError(str(exc), status_code=413).response()(scope, receive, send)
            return
        except FederationError as exc:
            await exc.response()(scope, receive, send)
            return
        if canonical is not None:
            if canonical.content_type is not None:
                scope = with_body(scope, canonical.body, canonical.content_type.encode())
                body = canonical.body
            scope = {
                **scope,
                "method": canonical.method,
                "query_string": encode_query(canonical.query),
            }
        if read:
            receive = replay(body, receive)
        await self.app(scope, receive, send)


def _without_anonymous_credential(scope: Scope) -> Scope:
    value = header(scope, AUTHORIZATION)
    if value is None or bearer_credential(value) != ANONYMOUS_CREDENTIAL:
        return scope
    headers = [(name, raw) for name, raw in scope["headers"] if name != AUTHORIZATION]
    return {**scope, "headers": headers}
