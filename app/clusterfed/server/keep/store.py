"""The block store: whole blocks on the configured volumes, md5 checked both ways.

Reads verify the stored block's md5 (and size) before the first byte is served, then
stream it from the same open file: a block that fails is a 502, never served, and memory
stays at one chunk whatever the block's size. Writes stream the body into every writable
volume's temporary file while hashing it, and make it visible only when the md5 matches.
File I/O and hashing run in worker threads (hashlib releases the GIL), one chunk at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .errors import (
    BlockNotFound,
    ChecksumMismatch,
    CorruptBlock,
    NoWritableVolume,
    SizeMismatch,
    TooLarge,
)
from .volumes import BlockVolume, BlockWriter

BLOCK_SIZE = 1 << 26  # 64 MiB, Arvados's largest block
CHUNK = 1 << 20
VERIFY_CHUNK = 4 << 20  # one reused buffer while the stored block's md5 is checked


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A verified block, open for reading: ``chunks()`` streams it and closes the file."""

    size: int
    file: BinaryIO

    async def chunks(self, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        try:
            while True:
                data = await asyncio.to_thread(self.file.read, chunk_size)
                if not data:
                    return
                yield data
        finally:
            self.file.close()

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True, slots=True)
class WriteResult:
    md5: str
    size: int
    replicas: int


def _md5_of(file: BinaryIO) -> tuple[str, int]:
    digest = hashlib.md5()
    size = 0
    buffer = bytearray(VERIFY_CHUNK)
    view = memoryview(buffer)
    while count := file.readinto(buffer):  # type: ignore[attr-defined]
        digest.update(view[:count])
        size += count
    return digest.hexdigest(), size


class BlockStore:
    def __init__(self, volumes: Sequence[BlockVolume]) -> None:
        self.volumes = list(volumes)

    @property
    def replication(self) -> int:
        """Copies a write makes: the sum of the writable volumes' replication."""
        return sum(volume.replication for volume in self.volumes if volume.writable)

    def _open_verified(self, md5: str, size: int | None) -> StoredBlock:
        corrupt = False
        for volume in self.volumes:
            try:
                file = volume.open(md5)
            except FileNotFoundError:
                continue
            try:
                actual, length = _md5_of(file)
                if actual != md5:
                    corrupt = True
                    file.close()
                    continue
                if size is not None and length != size:
                    file.close()
                    continue  # the block with this md5 exists, but not with this size
                if file.seekable():
                    file.seek(0)
                else:  # a stream that cannot rewind (an object store's) is opened again
                    file.close()
                    file = volume.open(md5)
            except BaseException:
                file.close()
                raise
            return StoredBlock(length, file)
        if corrupt:
            raise CorruptBlock()
        raise BlockNotFound()

    async def open(self, md5: str, size: int | None = None) -> StoredBlock:
        """The verified block; BlockNotFound, or CorruptBlock when every stored copy fails."""
        return await asyncio.to_thread(self._open_verified, md5, size)

    async def exists(self, md5: str) -> bool:
        return any([await asyncio.to_thread(volume.exists, md5) for volume in self.volumes])

    async def write(
        self, md5: str, body: AsyncIterable[bytes], *, expected_size: int | None = None
    ) -> WriteResult:
        """Stores ``body`` as block ``md5`` on every writable volume.

        Raises TooLarge past BLOCK_SIZE (as soon as it is passed), SizeMismatch when the
        body is not ``expected_size`` long, ChecksumMismatch when its md5 is not ``md5``;
        nothing is stored then.
        """
        targets = [volume for volume in self.volumes if volume.writable]
        if not targets:
            raise NoWritableVolume()
        writers: list[BlockWriter] = await asyncio.to_thread(
            lambda: [volume.create(md5) for volume in targets]
        )
        digest = hashlib.md5()

        def absorb(chunks: list[bytes]) -> None:
            for chunk in chunks:
                digest.update(chunk)
                for writer in writers:
                    writer.write(chunk)

        committed = False
        pending: asyncio.Future[None] | None = None
        try:
            size = 0
            batch: list[bytes] = []
            batched = 0
            async for chunk in body:
                size += len(chunk)
                if size > BLOCK_SIZE:
                    raise TooLarge()
                batch.append(chunk)
                batched += len(chunk)
                if batched >= CHUNK:
                    if pending is not None:
                        await pending
                    # A thread hashes and writes this batch while the next one arrives;
                    # the chunks are handed over as received, never copied.
                    pending = asyncio.ensure_future(asyncio.to_thread(absorb, batch))
                    batch, batched = [], 0
            if pending is not None:
                await pending
            if batch:
                await asyncio.to_thread(absorb, batch)
            if expected_size is not None and size != expected_size:
                raise SizeMismatch()
            if digest.hexdigest() != md5:
                raise ChecksumMismatch()
            await asyncio.to_thread(lambda: [writer.commit() for writer in writers])
            committed = True
        finally:
            if not committed:
                if pending is not None and not pending.done():
                    await asyncio.gather(pending, return_exceptions=True)
                await asyncio.to_thread(lambda: [writer.abort() for writer in writers])
        return WriteResult(md5, size, sum(volume.replication for volume in targets))
