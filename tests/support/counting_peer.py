"""A peer cluster that counts every request it gets, for tests of what a cluster sends out.

Run it with ``ServerThread``. It answers any list (``GET /arvados/v1/<resource>``, or a
POST with the GET override) with an empty list, anything else 404, or every request with
``status`` when a test sets one (a peer answering 503, say). ``requests`` holds (method,
path) of each request in arrival order, whatever it was.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


class CountingPeer:
    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.requests: list[tuple[str, str]] = []
        self.status: int | None = None  # answer every request with this, when set
        self.app = Starlette(routes=[Route("/{path:path}", self._any, methods=METHODS)])

    @property
    def count(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        self.requests.clear()
        self.status = None

    async def _any(self, request: Request) -> Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if self.status is not None:
            return JSONResponse({"errors": ["scripted"]}, status_code=self.status)
        override = request.headers.get("x-http-method-override", "")
        listing = request.method == "GET" or override.upper() == "GET"
        parts = path.strip("/").split("/")
        if listing and len(parts) == 3 and parts[:2] == ["arvados", "v1"]:
            kind = f"arvados#{parts[2].removesuffix('s')}List"
            return JSONResponse({"kind": kind, "items": [], "items_available": 0})
        return JSONResponse({"errors": [f"{path} not found"]}, status_code=404)
