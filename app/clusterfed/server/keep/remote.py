"""Blocks of other clusters, through this block server (``KeepService.remote_reader``).

``GET /<md5>+<size>+R<X>-<sig>@<exp>`` is read from cluster ``X`` by the federation's
remote block reader and streamed to the client, md5 checked on the way. With
``X-Keep-Signature: local, <time>`` (what the Python SDK sends, as a HEAD, before it
saves a collection holding blocks of another cluster) the block is stored here first and
the answer carries ``X-Keep-Locator``: the same block signed by this cluster, which the
SDK puts in the manifest it saves here.

The caller's credential must be valid here before anything is sent to ``X``.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from clusterfed.errors import Unauthorized
from clusterfed.keep.block_response import RemoteBlockResponse
from clusterfed.keep.locators import Locator
from clusterfed.service import Federation
from clusterfed.tokens import MalformedToken, parse_token

from ..head_as_get import is_head
from .blocks import keep_service

LOCAL_COPY = "local"  # X-Keep-Signature: local, <time>


async def read_remote_block(request: Request, locator: Locator, credential: str) -> Response:
    """Called by ``read_block`` once the caller's credential was found valid here."""
    try:
        token = parse_token(credential)
    except MalformedToken as exc:
        raise Unauthorized(f"malformed credential: {exc}") from None
    federation: Federation = request.app.state.federation
    head = is_head(request.scope)
    wanted = request.headers.get("x-keep-signature", "")
    if wanted.split(",")[0].strip().lower() != LOCAL_COPY:
        block = await federation.remote_blocks.open(
            locator, token, method="HEAD" if head else "GET"
        )
        return RemoteBlockResponse(block, head=head)
    block = await federation.remote_blocks.open(locator, token)
    keep = keep_service(request)
    try:
        # The store checks the md5 again before the block gets its name here.
        result = await keep.store.write(block.md5, block.chunks(), expected_size=block.size)
    finally:
        await block.aclose()
    headers = {
        "Content-Length": str(result.size),
        "X-Keep-Locator": keep.signer.sign(f"{result.md5}+{result.size}", credential),
    }
    if head:  # what the SDK sends: the new locator is all it wants
        return Response(b"", media_type="application/octet-stream", headers=headers)
    stored = await keep.store.open(result.md5, result.size)
    return StreamingResponse(
        stored.chunks(), media_type="application/octet-stream", headers=headers
    )
