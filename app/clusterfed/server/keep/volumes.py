"""The one small interface a volume offers the block store.

A driver stores whole blocks under their md5. Callers (the store, hence the routes) never
know which driver they talk to: an S3-compatible volume is one more class with these
methods, and one more entry in ``DRIVERS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from clusterfed.config import ClusterConfig


class BlockWriter(Protocol):
    """One block being written: invisible under its name until ``commit``."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self) -> None:
        """Makes the block durable and visible under its name, atomically."""

    def abort(self) -> None:
        """Drops what was written; the block's name is untouched."""


class BlockVolume(Protocol):
    uuid: str
    replication: int
    writable: bool

    def open(self, md5: str) -> BinaryIO:
        """The stored block as a binary stream; FileNotFoundError when it is not here.
        The store reads it twice (md5, then the client): a seekable stream is rewound,
        any other is opened again."""

    def create(self, md5: str) -> BlockWriter: ...

    def exists(self, md5: str) -> bool: ...

    def mtime(self, md5: str) -> float:
        """When the block was last written or touched (unix seconds); FileNotFoundError."""

    def touch(self, md5: str) -> None: ...


def open_volumes(config: ClusterConfig) -> list[BlockVolume]:
    """The configured volumes, sorted by ID (so every worker prefers the same one)."""
    from .directory import DirectoryVolume

    drivers = {"Directory": DirectoryVolume}
    volumes: list[BlockVolume] = []
    for uuid, volume in sorted(config.keep_volumes.items()):
        driver = drivers[volume.driver]
        volumes.append(
            driver(
                uuid,
                Path(volume.root),
                replication=volume.replication,
                writable=not volume.read_only,
            )
        )
    return volumes
