"""``ArvadosRequests``: pure ASGI; every request's parameters parsed once, in the one shape
the endpoints read, within the caps.

    app.add_middleware(FederatedRouter, federation=federation)
    app.add_middleware(FederationMiddleware, federation=federation)
    app.add_middleware(ArvadosRequests)  # outside both: they see the canonical request

On an API path (``/arvados/``, ``/federation/``, ``/login``... : ``API_PATHS``) it reads
the request's parameters before anything else does, and leaves the parse in the scope
(``params.RequestParams``) for every later reader (``params.query_items``):

- at most ``MAX_FIELDS`` fields (query and body together) and ``MAX_BODY_BYTES`` of body;
  more is 413, decided while reading: a declared ``Content-Length`` over the cap before
  any of the body is read, a streamed one as soon as it passes the cap, a form body as
  soon as its ``&`` separators pass the field cap. What was not read is never read.
- for ``/arvados/v1/`` it applies ``params.canonical_request``: a method override becomes
  the method it names, a form body becomes query parameters plus a JSON body, an empty
  ``cluster_id=`` disappears.

Other paths (a host's own routes, Keep's block paths with their large bodies) pass through
untouched. For every request, ``Authorization: Bearer -`` (what an Arvados controller sends
for an anonymous call) is removed: no token. A body it cannot read as what it claims to be
is answered 400 with the usual error body.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .credentials import bearer_credential
from .errors import FederationError, error_response
from .params import (
    API_PREFIX,
    FORM_TYPE,
    JSON_TYPE,
    MAX_BODY_BYTES,
    MAX_FIELDS,
    OVERRIDE_HEADER,
    PARAMS_KEY,
    UNREAD,
    QueryItems,
    RequestParams,
    body_too_large,
    canonical_request,
    encode_query,
    header,
    load_document,
    needs_body,
    parse_query,
    too_many_fields,
    with_params,
)
from .routing.inprocess import replay, with_body

AUTHORIZATION = b"authorization"
CONTENT_LENGTH = b"content-length"
ANONYMOUS_CREDENTIAL = "-"
# Nobody reads the body of these: it is left unread, whatever it is.
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})
# The paths whose requests are Arvados API calls (and clusterfed's own): capped here.
API_PATHS = (
    "/arvados/",
    "/federation/",
    "/discovery/",
    "/login",
    "/logout",
    "/auth/",
    "/_health/",
    "/metrics",
)


class BodyOverCap(HTTPException):
    """Raised from ``receive`` when a body the app reads itself passes the cap: an
    ``HTTPException``, so a FastAPI route reading its body re-raises it unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large(limit).message)


class ArvadosRequests:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_fields: int = MAX_FIELDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        api_paths: tuple[str, ...] = API_PATHS,
    ) -> None:
        self.app = app
        self.max_fields = max_fields
        self.max_body_bytes = max_body_bytes
        self.api_paths = api_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _without_anonymous_credential(scope)
        if not scope["path"].startswith(self.api_paths):
            await self.app(scope, receive, send)
            return
        read = needs_body(scope)
        try:
            if _declared_length(scope) > self.max_body_bytes:
                raise body_too_large(self.max_body_bytes)
            raw_query = scope["query_string"]
            query = parse_query(raw_query, max_fields=self.max_fields) if raw_query else []
            if read or (query and scope["path"].startswith(API_PREFIX)):
                scope = await self._canonical(scope, receive, query, read=read)
            else:
                scope[PARAMS_KEY] = RequestParams(query, raw_query)
        except FederationError as exc:
            await exc.response()(scope, receive, send)
            return
        if read:
            await self.app(scope, replay(scope[PARAMS_KEY].body, receive), send)
        elif scope["method"] in BODILESS:
            await self.app(scope, receive, send)
        else:
            await self._capped(scope, receive, send)

    async def _canonical(
        self, scope: Scope, receive: Receive, query: QueryItems, *, read: bool
    ) -> Scope:
        content_type = header(scope, b"content-type")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        fields_left = self.max_fields - len(query)
        body = b""
        document = UNREAD
        if read:
            body = await self._read(receive, form=media == FORM_TYPE, fields_left=fields_left)
            if body and media in ("", JSON_TYPE):
                document = load_document(body)  # the one parse of a JSON body
                if isinstance(document, dict) and len(document) > fields_left:
                    raise too_many_fields(self.max_fields)  # its keys are fields too
        canonical = canonical_request(
            method=scope["method"],
            path=scope["path"],
            query=query,
            content_type=content_type,
            override=header(scope, OVERRIDE_HEADER),
            body=body,
            document=document,
        )
        kept = body if read else None  # a GET's body is left unread: nobody reads it
        if canonical is None:
            parsed = RequestParams(query, scope["query_string"], kept, document)
            return {**scope, PARAMS_KEY: parsed}
        if len(canonical.query) > self.max_fields:  # a JSON body's top-level parameters
            raise too_many_fields(self.max_fields)
        if canonical.content_type is not None and read:
            scope = with_body(scope, canonical.body, canonical.content_type.encode())
            kept = canonical.body
        scope = {**scope, "method": canonical.method}
        query_string = encode_query(canonical.query)
        return with_params(scope, canonical.query, query_string, kept, canonical.document)

    async def _read(self, receive: Receive, *, form: bool, fields_left: int) -> bytes:
        """The body, refused as soon as it passes a cap: nothing past that point is read."""
        body = bytearray()
        separators = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return bytes(body)  # the client went away; what we have is all there is
            chunk = message.get("body", b"")
            body.extend(chunk)
            if len(body) > self.max_body_bytes:
                raise body_too_large(self.max_body_bytes)
            if form:
                separators += chunk.count(b"&")
                if separators + 1 > fields_left:
                    raise too_many_fields(self.max_fields)
            if not message.get("more_body", False):
                return bytes(body)

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app reads the body itself (a typed route, the admin page): no more than the cap."""
        await call_with_body_cap(self.app, scope, receive, send, limit=self.max_body_bytes)


async def call_with_body_cap(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, limit: int
) -> None:
    """Runs ``app`` with a ``receive`` that raises :class:`BodyOverCap` once the body passes
    ``limit`` bytes, and answers 413 for it unless the answer has begun. The one counting
    receive for every body cap (this layer's on API paths, a host's everywhere else)."""
    received = 0
    started = False

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyOverCap(limit)
        return message

    async def tracked_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, capped_receive, tracked_send)
    except BodyOverCap as exc:
        if started:
            raise  # too late to answer: the server closes the connection
        await error_response(413, str(exc.detail))(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    value = header(scope, CONTENT_LENGTH)
    if value is None:
        return 0
    value = value.strip()
    return int(value) if value.isdigit() else 0


def _without_anonymous_credential(scope: Scope) -> Scope:
    value = header(scope, AUTHORIZATION)
    if value is None or bearer_credential(value) != ANONYMOUS_CREDENTIAL:
        return scope
    headers = [(name, raw) for name, raw in scope["headers"] if name != AUTHORIZATION]
    return {**scope, "headers": headers}
