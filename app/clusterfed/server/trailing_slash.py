"""``StripTrailingSlash``: ``/arvados/v1/collections/`` is ``/arvados/v1/collections``.

FastAPI's own answer to a trailing slash is a redirect built from the request's ``Host``
header (``Host: evil.example`` became ``Location: http://evil.example/...``), and a
federated list with the slash went to the remotes as such: their redirect came back as a
307 without a Location, or a 502. The app is built with ``redirect_slashes=False`` and
this middleware, outermost, serves the path without its trailing slashes instead: no
redirect, no Host in any Location.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class StripTrailingSlash:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
            raw_path = scope.get("raw_path")
            if raw_path:
                scope["raw_path"] = raw_path.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
