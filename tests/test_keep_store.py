"""The block store over its volumes, without a server: md5 checked both ways, atomic
writes, bounded reads, and a volume that is not a directory."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import pytest
from clusterfed.server.keep.directory import DirectoryVolume
from clusterfed.server.keep.errors import (
    BlockNotFound,
    ChecksumMismatch,
    CorruptBlock,
    NoWritableVolume,
    SizeMismatch,
    TooLarge,
)
from clusterfed.server.keep.store import BLOCK_SIZE, CHUNK, BlockStore

DATA = os.urandom(3 * CHUNK + 123)
MD5 = hashlib.md5(DATA).hexdigest()


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: BlockStore, md5: str, size: int | None = None) -> bytes:
    block = await store.open(md5, size)
    parts = [chunk async for chunk in block.chunks()]
    assert all(len(part) <= CHUNK for part in parts)
    return b"".join(parts)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_write_then_read(tmp_path: Path) -> None:
    volume = DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "v")
    store = BlockStore([volume])
    result = await store.write(MD5, chunks(DATA), expected_size=len(DATA))
    assert (result.md5, result.size, result.replicas) == (MD5, len(DATA), 1)
    assert files(tmp_path / "v") == [f"{MD5[:3]}/{MD5}"]
    assert await read_all(store, MD5) == DATA
    assert await read_all(store, MD5, len(DATA)) == DATA
    assert await store.exists(MD5) and volume.exists(MD5) and volume.mtime(MD5) > 0
    with pytest.raises(BlockNotFound):
        await store.open(MD5, len(DATA) + 1)
    with pytest.raises(BlockNotFound):
        await store.open("0" * 32)


@pytest.mark.parametrize(
    ("md5", "body", "expected", "error"),
    [
        ("0" * 32, DATA, len(DATA), ChecksumMismatch),
        (MD5, DATA, len(DATA) + 1, SizeMismatch),
        (MD5, DATA[:-1], len(DATA), SizeMismatch),
    ],
    # Named, not numbered by their random content: pytest-xdist workers must collect alike.
    ids=["wrong-checksum", "one-byte-short", "one-byte-long"],
)
async def test_a_failed_write_leaves_nothing(
    tmp_path: Path, md5: str, body: bytes, expected: int, error: type[Exception]
) -> None:
    store = BlockStore([DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "v")])
    with pytest.raises(error):
        await store.write(md5, chunks(body), expected_size=expected)
    assert files(tmp_path / "v") == []


async def test_too_large_is_refused_as_soon_as_it_is(tmp_path: Path) -> None:
    store = BlockStore([DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "v")])
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"\0" * CHUNK
        while True:
            sent += len(chunk)
            yield chunk

    with pytest.raises(TooLarge):
        await store.write("0" * 32, endless())
    assert sent == BLOCK_SIZE + CHUNK
    assert files(tmp_path / "v") == []


async def test_a_corrupt_copy_is_skipped_and_alone_is_502(tmp_path: Path) -> None:
    first = DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "a")
    second = DirectoryVolume("zzzzz-nyw5e-000000000000001", tmp_path / "b", replication=2)
    store = BlockStore([first, second])
    assert store.replication == 3
    assert (await store.write(MD5, chunks(DATA))).replicas == 3
    first.path(MD5).write_bytes(b"x" * len(DATA))
    assert await read_all(store, MD5) == DATA  # the good copy
    second.path(MD5).write_bytes(DATA[:-1] + b"!")
    with pytest.raises(CorruptBlock):
        await store.open(MD5)


async def test_read_only_volumes_are_not_written(tmp_path: Path) -> None:
    volume = DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "v", writable=False)
    with pytest.raises(NoWritableVolume):
        await BlockStore([volume]).write(MD5, chunks(DATA))


class StreamVolume:
    """A volume whose blocks come as streams that cannot rewind (as an object store's)."""

    uuid = "zzzzz-nyw5e-000000000000002"
    replication = 1
    writable = False

    def __init__(self, blocks: dict[str, bytes]) -> None:
        self.blocks = blocks
        self.opened = 0

    def open(self, md5: str) -> BinaryIO:
        if md5 not in self.blocks:
            raise FileNotFoundError(md5)
        self.opened += 1
        stream = io.BufferedReader(io.BytesIO(self.blocks[md5]))  # type: ignore[arg-type]
        stream.seekable = lambda: False  # type: ignore[method-assign]
        return stream

    def create(self, md5: str):  # pragma: no cover - read-only
        raise NotImplementedError

    def exists(self, md5: str) -> bool:
        return md5 in self.blocks

    def mtime(self, md5: str) -> float:
        return 0.0

    def touch(self, md5: str) -> None:
        pass


async def test_another_kind_of_volume_needs_no_change_in_the_store() -> None:
    volume = StreamVolume({MD5: DATA})
    store = BlockStore([volume])
    assert await read_all(store, MD5) == DATA
    assert volume.opened == 2  # once to check the md5, once to serve


async def test_a_large_block_is_checked_as_it_streams(tmp_path: Path) -> None:
    from clusterfed.server.keep.store import CHECK_FIRST_MAX

    data = os.urandom(CHECK_FIRST_MAX + 3 * CHUNK + 5)
    md5 = hashlib.md5(data).hexdigest()
    volume = DirectoryVolume("zzzzz-nyw5e-000000000000000", tmp_path / "v")
    store = BlockStore([volume])
    await store.write(md5, chunks(data))
    block = await store.open_for_streaming(md5)
    assert block.check_md5 == md5  # not read before streaming
    assert b"".join([chunk async for chunk in block.chunks()]) == data
    # Corrupt: every chunk but the last is sent, then the stream fails.
    volume.path(md5).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    block = await store.open_for_streaming(md5)
    received = b""
    with pytest.raises(CorruptBlock):
        async for chunk in block.chunks():
            received += chunk
    assert len(received) < len(data) and data.startswith(received)
    # Short: the same.
    volume.path(md5).write_bytes(data[:-1])
    with pytest.raises(BlockNotFound):
        await store.open_for_streaming(md5, len(data))
    block = await store.open_for_streaming(md5)
    with pytest.raises(CorruptBlock):
        async for _ in block.chunks():
            pass
    # A small block is checked whole first, as before.
    small = await store.write(MD5, chunks(DATA))
    volume.path(MD5).write_bytes(b"\0" * small.size)
    with pytest.raises(CorruptBlock):
        await store.open_for_streaming(MD5)
