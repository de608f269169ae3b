"""``BodyLimit``: a cap on request bodies, before anything reads or authenticates them.

FastAPI 0.165 has ``max_body_size``, but a body that overflows while a middleware reads
it (the federated router reads POST bodies) is answered by Starlette's plain-text 413,
and a declared length by a response swapped in after the route ran. This middleware
answers every overflow with the JSON error body, and a declared ``Content-Length`` over
the cap before the app runs at all: an unauthenticated client cannot make the server
buffer more than the cap, whichever route it picks.

The overflow is counted by the library's one capped ``receive``
(``clusterfed.wire.call_with_body_cap``): it raises an ``HTTPException``, so a FastAPI
route reading its body re-raises it unchanged (any other exception there becomes a 400).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from clusterfed.errors import error_response
from clusterfed.params import body_too_large
from clusterfed.routing.inprocess import MAX_BODY_BYTES
from clusterfed.wire import call_with_body_cap

# The router reads create bodies up to MAX_BODY_BYTES before the host sees them: the same
# cap everywhere, so an update may be as large as a create.
MAX_REQUEST_BYTES = MAX_BODY_BYTES


class BodyLimit:
    """``limit_for(scope)``: another cap for some requests (a block upload may be 64 MiB),
    or None for ``max_bytes``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int = MAX_REQUEST_BYTES,
        limit_for: Callable[[Scope], int | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        if self.limit_for is not None:
            max_bytes = self.limit_for(scope) or max_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            message = body_too_large(max_bytes).message
            await error_response(413, message)(scope, receive, send)
            return
        await call_with_body_cap(self.app, scope, receive, send, limit=max_bytes)
