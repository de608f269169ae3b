"""Calling the wrapped ASGI app in process, and replaying a request body we had to read.

The local part of a fan-out is served by the host app itself, through a synthetic scope
that keeps the caller's headers and ``state`` (so the host sees the same caller), with a
``send`` that captures the answer instead of writing it to the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope

from clusterfed.params import PARAMS_KEY, RequestParams, body_too_large, parse_query

# Headers that describe the original body; a synthetic request carries its own.
BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})
# The router reads a create's body to find its target before the host checks any
# credential, so this is what anyone can make it buffer. 8 MiB still holds a manifest of
# some 100,000 files; a host (or a deployment) that needs more raises it here.
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Captured:
    status_code: int
    content: bytes


async def read_body(receive: Receive, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body; 413 (``params.TooLarge``, a FederationError) past ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the client went away; what we have is all there is
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise body_too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


async def request_body(scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
    """The request's body, and a ``receive`` that still yields it to the app: the body
    ``wire.ArvadosRequests`` read (within its caps) when it did, else read now."""
    parsed = scope.get(PARAMS_KEY)
    if parsed is not None and parsed.body is not None:
        return parsed.body, receive
    body = await read_body(receive)
    return body, replay(body, receive)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the real one (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def with_body(scope: Scope, body: bytes, content_type: bytes = b"application/json") -> Scope:
    """``scope`` with headers describing ``body`` instead of the original one."""
    headers = [(name, value) for name, value in scope["headers"] if name not in BODY_HEADERS]
    if body:
        headers += [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    return {**scope, "headers": headers}


async def call_app(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    *,
    method: str,
    path: str,
    query_string: bytes,
    query: list[tuple[str, str]] | None = None,
) -> Captured:
    """``app``'s answer to a body-less ``method path?query_string`` from the same caller.

    ``query``: the parse of ``query_string``, when the caller has it (else it is parsed)."""
    child = with_body(scope, b"")
    child.update(
        method=method,
        path=path,
        raw_path=path.encode(),
        query_string=query_string,
        state=dict(scope.get("state", {})),
    )
    child[PARAMS_KEY] = RequestParams(
        query if query is not None else parse_query(query_string), query_string, b""
    )
    status = 500
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(child, replay(b"", receive), capture)
    return Captured(status, b"".join(chunks))
