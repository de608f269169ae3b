"""Blocks of ours sent along with a collection that is saved on another cluster.

A client of ours that saves a collection on cluster ``X`` (``arv-put --project-uuid
<a project of X>``) has written its blocks here and holds our signatures for them. ``X``
accepts only its own: so before the create or update is forwarded, each block the
manifest names with a valid signature of ours for the caller is copied to ``X`` with the
caller's credential salted for ``X``, and ``X``'s signed locator takes its place. A
``+R<X>-`` locator (a block of ``X``'s, as we showed it to the client) goes back to its
``+A`` form. Anything else is left for ``X`` to judge. The user never has to know where a
block lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from clusterfed.errors import FederationError, Unprocessable
from clusterfed.tokens import Token

from .locators import Locator, format_locator, parse_locator
from .manifests import iter_locators, map_locators
from .remote_blocks import RemoteBlocks
from .signer import BlobSigner

log = logging.getLogger("clusterfed.keep.copying")

PARALLEL_COPIES = 4


class LocalBlock(Protocol):
    size: int

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class LocalBlocks(Protocol):
    """The host's block store, as the federation reads it."""

    async def open(self, md5: str, size: int | None = None) -> LocalBlock:
        """The block, md5 checked; raises a FederationError (404) when it is not here."""


async def copy_to_remote(
    manifest_text: str,
    *,
    cluster_id: str,
    credential: str,
    token: Token | None,
    signer: BlobSigner,
    local: LocalBlocks,
    remote: RemoteBlocks,
) -> str:
    """``manifest_text`` as ``cluster_id`` will accept it from this caller, after the
    blocks signed here for ``credential`` were copied there."""
    ours: set[tuple[str, int]] = set()
    for locator in iter_locators(manifest_text):
        key = (locator.md5, locator.size or 0)
        if key not in ours and _signed_here(signer, locator, credential):
            ours.add(key)
    copied: dict[tuple[str, int], str] = {}
    if ours:
        limit = asyncio.Semaphore(PARALLEL_COPIES)

        async def copy(key: tuple[str, int]) -> None:
            async with limit:
                copied[key] = await _copy_one(key, cluster_id, token, local, remote)

        tasks = [asyncio.ensure_future(copy(key)) for key in ours]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # The first failure is the answer (not an ExceptionGroup): stop the others.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        log.info("copied %d blocks to cluster %s", len(copied), cluster_id)

    def rewrite(locator: Locator) -> str:
        theirs = copied.get((locator.md5, locator.size or 0))
        if theirs is not None and _signed_here(signer, locator, credential):
            kept = [hint for hint in locator.hints if not hint.startswith(("A", "R", "K@"))]
            return format_locator(locator.md5, locator.size, [*kept, theirs])
        remote_signature = locator.remote_signature
        if remote_signature is not None and remote_signature.cluster_id == cluster_id:
            kept = [hint for hint in locator.hints if hint != remote_signature.hint]
            return format_locator(
                locator.md5, locator.size, [*kept, remote_signature.as_local().hint]
            )
        return str(locator)

    return map_locators(manifest_text, rewrite)


def _signed_here(signer: BlobSigner, locator: Locator, credential: str) -> bool:
    if not signer.key:
        return False
    try:
        signer.verify(locator, credential)
    except ValueError:  # SignatureError
        return False
    return True


async def _copy_one(
    key: tuple[str, int],
    cluster_id: str,
    token: Token | None,
    local: LocalBlocks,
    remote: RemoteBlocks,
) -> str:
    md5, size = key
    try:
        first: LocalBlock | None = await local.open(md5, size)
    except FederationError as exc:
        raise Unprocessable(
            f"block {md5}+{size} is signed by this cluster but cannot be read here to copy "
            f"it to cluster {cluster_id}: {exc.message}"
        ) from None

    async def body() -> AsyncIterator[bytes]:
        nonlocal first
        block, first = first, None
        if block is None:  # another try: read it again
            block = await local.open(md5, size)
        try:
            async for chunk in block.chunks():
                yield chunk
        finally:
            block.close()

    try:
        signed = parse_locator(await remote.put(cluster_id, md5, size, body, token))
    finally:
        if first is not None:
            first.close()
    assert signed.signature is not None  # RemoteBlocks.put answers only a signed locator
    return signed.signature.hint
