"""A stub peer cluster whose block server misbehaves on purpose (tests only).

It answers ``keep_services/accessible`` (listing itself, or what a test puts in
``services``) and ``GET``/``HEAD /<locator>`` from ``blocks``, in the ``mode`` a test
chooses: honest, slow, wrong bytes, breaking off, silent before or midway, a status,
HTML.
It also stores blocks (``PUT /<md5>``, answering a locator signed with ``STUB_SIGNATURE``)
and records collection creates (``created``), echoing their manifest.
``seen`` records every request: (method, path or locator, Authorization).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STUB_SIGNATURE = "f" * 40 + "@7fffffff"  # what the stub signs every stored block with


@dataclass
class Peer:
    """What the stub c97qk does, and what it was sent."""

    mode: str = "honest"
    services: Any = None  # None: list itself
    blocks: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)  # bodies of collection creates
    port: int = 0
    refused: set[str] = field(default_factory=set)  # Authorization values the list refuses
    list_delay: float = 0.0  # seconds the list of block servers takes to come
    sent: int = 0  # bytes of block bodies sent, all answers together
    streaming: int = 0  # block bodies being sent now
    completed: int = 0  # block bodies sent to their end

    def app(self) -> Starlette:
        async def accessible(request: Request) -> Response:
            auth = request.headers.get("authorization")
            self.seen.append(("GET", request.url.path, auth))
            if self.list_delay:
                await asyncio.sleep(self.list_delay)
            if auth in self.refused:
                return Response("no", 403)
            if self.mode == "garbage-services":
                return Response("<html>maintenance</html>", 200, media_type="text/html")
            items = self.services or [
                {
                    "uuid": "c97qk-bi6l4-000000000000000",
                    "service_host": "127.0.0.1",
                    "service_port": self.port,
                    "service_ssl_flag": False,
                    "service_type": "disk",
                    "read_only": False,
                }
            ]
            return JSONResponse({"items": items, "items_available": len(items)})

        async def block(request: Request) -> Response:
            locator = request.path_params["locator"]
            self.seen.append((request.method, locator, request.headers.get("authorization")))
            data = self.blocks.get(locator.split("+")[0])
            if data is None:
                return Response("not found", 404)
            return await self._misbehave(data)

        async def store(request: Request) -> Response:
            md5 = request.path_params["locator"]
            self.seen.append(("PUT", md5, request.headers.get("authorization")))
            data = await request.body()
            if self.mode == "put-garbage":
                return Response("<html>a proxy's page</html>", 200, media_type="text/html")
            if hashlib.md5(data).hexdigest() != md5:
                return Response("md5 mismatch", 422)
            self.blocks[md5] = data
            return Response(f"{md5}+{len(data)}+A{STUB_SIGNATURE}\n", media_type="text/plain")

        async def create(request: Request) -> Response:
            self.seen.append(("POST", request.url.path, request.headers.get("authorization")))
            body = await request.json()
            self.created.append(body)
            manifest = body["collection"]["manifest_text"]
            return JSONResponse({"uuid": "c97qk-4zz18-000000000000001", "manifest_text": manifest})

        return Starlette(
            routes=[
                Route("/arvados/v1/keep_services/accessible", accessible),
                Route("/arvados/v1/collections", create, methods=["POST"]),
                Route("/{locator}", block, methods=["GET", "HEAD"]),
                Route("/{locator}", store, methods=["PUT"]),
            ]
        )

    async def _misbehave(self, data: bytes) -> Response:
        mode = self.mode
        if mode == "hang-before-answer":
            await asyncio.sleep(30)
        if mode in ("status-500", "status-403", "status-401"):
            return Response("no", int(mode[-3:]))
        if mode == "html":
            return Response("<html>a proxy's page</html>", 200, media_type="text/html")
        if mode == "wrong-bytes":
            data = data[:-1] + bytes([data[-1] ^ 1])
        headers = {"content-length": str(len(data))}

        async def body() -> Any:
            view = memoryview(data)
            self.streaming += 1
            try:
                for start in range(0, len(data), 65536):
                    if mode == "hang-midway" and start >= len(data) // 2:
                        await asyncio.sleep(30)
                    if mode == "short" and start >= len(data) // 2:
                        raise RuntimeError("the stub breaks off on purpose")
                    if mode == "slow":  # about 12 MB/s
                        await asyncio.sleep(0.005)
                    chunk = bytes(view[start : start + 65536])
                    self.sent += len(chunk)
                    yield chunk
                self.completed += 1
            finally:
                self.streaming -= 1

        return StreamingResponse(body(), 200, headers=headers)
