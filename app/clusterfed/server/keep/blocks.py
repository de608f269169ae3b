"""The block server at the server's root, as keepstore answers it.

- ``GET``/``HEAD /<locator>``: the block, after its signature was checked for the caller's
  credential (with ``Collections.BlobSigning``) and the credential itself was found still
  valid here (a revoked token stops reading at once; keepstore checks only the signature).
- ``PUT /<md5>``: stores the body (``Content-Length`` required, at most 64 MiB) and answers
  the locator signed for the caller, as plain text, with ``X-Keep-Replicas-Stored`` and
  ``X-Keep-Storage-Classes-Confirmed``.

A locator with a ``+R<cluster>-`` signature and no ``+A`` names a block of another
cluster: it is handed to ``KeepService.remote_reader`` when the host set one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from clusterfed.config import ClusterConfig
from clusterfed.credentials import authorization_header, bearer_credential
from clusterfed.keep.locators import Locator, MalformedLocator, parse_locator
from clusterfed.keep.signer import BlobSigner
from clusterfed.keep.signing import SignatureExpired, SignatureInvalid

from ..head_as_get import is_head
from ..users.auth import Caller, resolve_caller
from .errors import (
    ExpiredSignature,
    InvalidLocator,
    InvalidSignature,
    LengthRequired,
    NoCredential,
    TooLarge,
)
from .store import BLOCK_SIZE, BlockStore
from .volumes import open_volumes

# What keepstore routes as a locator: 32 hex digits, then anything up to the next "/".
LOCATOR_PATH = r"[0-9a-f]{32}[^/]*"
_BLOCK_PATH = re.compile(f"/{LOCATOR_PATH}")
STORAGE_CLASS = "default"

RemoteReader = Callable[[Request, Locator, str], Awaitable[Response]]


class _LocatorConvertor(Convertor[str]):
    regex = LOCATOR_PATH

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("keeplocator", _LocatorConvertor())


@dataclass(slots=True)
class KeepService:
    """What the block routes use, kept at ``app.state.keep``."""

    store: BlockStore
    signer: BlobSigner
    # Reads ``+R<cluster>-`` locators from the cluster that holds the block.
    remote_reader: RemoteReader | None = None

    @classmethod
    def from_config(cls, config: ClusterConfig) -> KeepService:
        return cls(BlockStore(open_volumes(config)), BlobSigner.from_config(config))


def keep_service(request: Request) -> KeepService:
    return request.app.state.keep


def presented_credential(request: Request) -> str | None:
    """The exact string the client presented (what signatures are made for), or None."""
    header = authorization_header(request.scope)
    return bearer_credential(header) if header is not None else None


async def valid_caller(request: Request) -> tuple[Caller, str]:
    """The caller and their credential; 401 when there is none or it is not valid here."""
    credential = presented_credential(request)
    if credential is None:
        raise NoCredential()
    config: ClusterConfig = request.app.state.config
    async with request.app.state.database.sessionmaker() as session:
        caller = await resolve_caller(request, session, config)
    if caller is None:
        raise NoCredential()
    return caller, credential


def _parse(locator: str) -> Locator:
    try:
        return parse_locator(locator, require_size=False)
    except MalformedLocator as exc:
        raise InvalidLocator(str(exc)) from None


router = APIRouter(tags=["keep"], include_in_schema=False)


@router.get("/{locator:keeplocator}")
async def read_block(request: Request, locator: str) -> Response:
    keep = keep_service(request)
    parsed = _parse(locator)
    credential = presented_credential(request)
    if credential is None:
        raise NoCredential()
    if parsed.remote_signature is not None and parsed.signature is None:
        if keep.remote_reader is None:
            raise InvalidLocator("this cluster does not read blocks from other clusters")
        # Nothing leaves this cluster for a credential it does not accept.
        await valid_caller(request)
        return await keep.remote_reader(request, parsed, credential)
    if keep.signer.enforced:
        try:
            keep.signer.verify(parsed, credential)
        except SignatureExpired:
            raise ExpiredSignature() from None
        except SignatureInvalid:
            raise InvalidSignature() from None
    await valid_caller(request)
    if is_head(request.scope):
        block = await keep.store.open(parsed.md5, parsed.size)
        block.close()  # checked whole, as a small block's GET is; nothing to send
        headers = {"Content-Length": str(block.size), "Vary": "X-Keep-Signature"}
        return Response(b"", media_type="application/octet-stream", headers=headers)
    block = await keep.store.open_for_streaming(parsed.md5, parsed.size)
    headers = {"Content-Length": str(block.size), "Vary": "X-Keep-Signature"}
    return StreamingResponse(
        block.chunks(),
        media_type="application/octet-stream",
        headers=headers,
    )


@router.put("/{locator:keeplocator}")
async def write_block(request: Request, locator: str) -> Response:
    keep = keep_service(request)
    parsed = _parse(locator)
    _, credential = await valid_caller(request)
    declared = request.headers.get("content-length")
    if declared is None:
        raise LengthRequired()
    if not declared.isdigit():
        raise InvalidLocator("Content-Length is not a number")
    if int(declared) > BLOCK_SIZE:
        raise TooLarge()
    result = await keep.store.write(parsed.md5, request.stream(), expected_size=int(declared))
    signed = keep.signer.sign(f"{result.md5}+{result.size}", credential)
    return PlainTextResponse(
        f"{signed}\n",
        headers={
            "X-Keep-Replicas-Stored": str(result.replicas),
            "X-Keep-Storage-Classes-Confirmed": f"{STORAGE_CLASS}={result.replicas}",
        },
    )


def block_body_limit(scope: dict[str, Any]) -> int | None:
    """The body cap of a block upload (for ``BodyLimit``); None for every other request."""
    if scope.get("method") == "PUT" and _BLOCK_PATH.fullmatch(scope.get("path", "")):
        return BLOCK_SIZE
    return None
