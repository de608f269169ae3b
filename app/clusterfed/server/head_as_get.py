"""``HeadAsGet``: a ``HEAD`` is answered as the ``GET`` of the same URL, without the body.

FastAPI routes declared for GET answer HEAD with 405; HTTP says HEAD is GET without the
body (RFC 9110 9.3.2), and a GET scope allows it. Outermost, so every layer
(scopes, the router, the host) sees a GET; the status and headers are the GET's.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEAD_KEY = "clusterfed.head"


def is_head(scope: Scope) -> bool:
    """Whether this GET is a HEAD in disguise: the body will be dropped."""
    return bool(scope.get(HEAD_KEY))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # HEAD_KEY lets a route skip producing a body nobody will see (a 64 MiB block).
        await self.app({**scope, "method": "GET", HEAD_KEY: True}, receive, without_body)
