"""The block store: whole blocks on the configured volumes, md5 checked both ways.

Reads check the stored block's md5 (and size). A HEAD, and a GET of a block up to 4 MiB,
check it whole before answering, so a block that fails is a clean 502. A larger block is
checked as it streams, with its last chunk held back until the md5 matches: the check
then costs no time of its own (hashing 64 MiB takes as long as sending it), and a block
that fails is cut short, never delivered whole. Memory stays at a chunk or two whatever
the block's size. Writes stream the body into every writable
volume's temporary file while hashing it, and make it visible only when the md5 matches.
File I/O and hashing run in worker threads (hashlib releases the GIL), one chunk at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
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

log = logging.getLogger("clusterfed.keep")

BLOCK_SIZE = 1 << 26  # 64 MiB, Arvados's largest block
CHUNK = 1 << 20
VERIFY_CHUNK = 4 << 20  # one reused buffer while the stored block's md5 is checked
# Blocks up to this size are checked whole before the first byte is sent; larger ones
# while they stream, with the last chunk held back until the md5 matches.
CHECK_FIRST_MAX = 4 << 20


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block open for reading: ``chunks()`` streams it and closes the file.

    With ``check_md5`` set the block was not checked before: its md5 is computed as it is
    read, and the last chunk is held back until it matches, so a corrupt block never
    reaches a client whole (the stream ends with CorruptBlock instead).
    """

    size: int
    file: BinaryIO
    check_md5: str | None = None

    async def chunks(self, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        """The block, a chunk at a time; the next chunk is read while this one is sent."""
        digest = hashlib.md5() if self.check_md5 is not None else None
        read_so_far = 0

        def read() -> bytes:
            nonlocal read_so_far
            data = self.file.read(chunk_size)
            if digest is not None and data:
                digest.update(data)
            read_so_far += len(data)
            return data

        ahead: asyncio.Future[bytes] | None = None
        try:
            current = await asyncio.to_thread(read)
            ahead = asyncio.ensure_future(asyncio.to_thread(read))
            while current:
                following = await ahead
                ahead = asyncio.ensure_future(asyncio.to_thread(read)) if following else None
                if (
                    not following
                    and digest is not None
                    and (digest.hexdigest() != self.check_md5 or read_so_far != self.size)
                ):
                    log.error("block %s fails its md5 check; the read is cut", self.check_md5)
                    raise CorruptBlock()
                yield current
                current = following
        finally:
            if ahead is not None:
                await asyncio.gather(ahead, return_exceptions=True)
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

    def _stored_copies(self, md5: str) -> Iterator[tuple[BlockVolume, BinaryIO]]:
        """Each volume's copy of the block, opened; volumes without one are skipped."""
        for volume in self.volumes:
            try:
                yield volume, volume.open(md5)
            except FileNotFoundError:
                continue

    def _open_verified(self, md5: str, size: int | None) -> StoredBlock:
        corrupt = False
        for volume, file in self._stored_copies(md5):
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

    def _open_streaming(self, md5: str, size: int | None) -> StoredBlock:
        for _, file in self._stored_copies(md5):
            try:
                length = os.fstat(file.fileno()).st_size
            except (OSError, AttributeError, io.UnsupportedOperation):
                file.close()  # a stream of unknown length: checked whole first
                return self._open_verified(md5, size)
            if size is not None and length != size:
                file.close()
                continue
            if length <= CHECK_FIRST_MAX:
                file.close()
                return self._open_verified(md5, size)
            return StoredBlock(length, file, check_md5=md5)
        raise BlockNotFound()

    async def open_for_streaming(self, md5: str, size: int | None = None) -> StoredBlock:
        """The block to send: checked whole first when small (a failure is a clean
        CorruptBlock), else checked while it streams (see StoredBlock), so the md5 of a
        large block costs no time of its own."""
        return await asyncio.to_thread(self._open_streaming, md5, size)

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

        def hash_batch(chunks: list[bytes]) -> None:
            for chunk in chunks:
                digest.update(chunk)

        def write_batch(chunks: list[bytes]) -> None:
            for writer in writers:
                for chunk in chunks:
                    writer.write(chunk)

        committed = False
        pending: asyncio.Future[list[None]] | None = None
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
                    # Two threads hash and write this batch (both release the GIL) while
                    # the next one arrives; the chunks are handed over as received.
                    pending = asyncio.gather(
                        asyncio.to_thread(hash_batch, batch), asyncio.to_thread(write_batch, batch)
                    )
                    batch, batched = [], 0
            if pending is not None:
                await pending
            if batch:
                await asyncio.gather(
                    asyncio.to_thread(hash_batch, batch), asyncio.to_thread(write_batch, batch)
                )
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
