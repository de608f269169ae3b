"""``RemoteBlockResponse``: pure ASGI, a block of another cluster streamed to our client.

The status and ``Content-Length`` go out as soon as the holding cluster has answered;
the bytes follow as they arrive, the last of them only once the block's md5 is right
(``RemoteBlock.chunks``). When the remote turns out to lie, break off or fall silent
after the answer has started, the answer is left incomplete (the server closes the
connection short of ``Content-Length``): no client can take the bytes for the block.
A client that hangs up stops the read from the remote at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from clusterfed.errors import FederationError

from .remote_blocks import RemoteBlock

log = logging.getLogger("clusterfed.keep.remote")


class RemoteBlockResponse(Response):
    """A Starlette ``Response`` (so a route may return it) that streams ``block``."""

    def __init__(
        self, block: RemoteBlock, *, head: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        """``head``: answer the status and headers only (also when the scope says HEAD)."""
        self.block = block
        self.head = head
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-length", str(block.size).encode()),
            (b"content-type", b"application/octet-stream"),
            *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if self.head or scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            stream = asyncio.ensure_future(self._stream(send))
            hangup = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait((stream, hangup), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stream, hangup):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if stream.done() and not stream.cancelled():
                stream.result()  # an error of our own is not to be swallowed
        finally:
            await self.block.aclose()

    async def _stream(self, send: Send) -> None:
        try:
            async for chunk in self.block.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except FederationError as exc:
            # The status is sent: ending the answer short is the only way left to say it.
            log.warning(
                "block %s from cluster %s abandoned: %s",
                self.block.md5,
                self.block.cluster_id,
                exc.message,
            )
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
