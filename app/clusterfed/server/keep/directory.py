"""The Directory driver: one file a block, under ``<root>/<first 3 of md5>/<md5>``.

A block is written to a temporary file beside its final name, fsynced, renamed into place
and its directory fsynced: a crash never leaves a partial block under its name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class DirectoryWriter:
    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._temp = Path(temp)
        self._final = final

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view) or 0
            view = view[written:]

    def commit(self) -> None:
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        os.replace(self._temp, self._final)
        directory = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


class DirectoryVolume:
    def __init__(self, uuid: str, root: Path, *, replication: int = 1, writable: bool = True):
        self.uuid = uuid
        self.root = root.resolve()
        self.replication = replication
        self.writable = writable  # the root is made by the first write, not before

    def path(self, md5: str) -> Path:
        return self.root / md5[:3] / md5

    def open(self, md5: str) -> BinaryIO:
        return open(self.path(md5), "rb", buffering=0)

    def create(self, md5: str) -> DirectoryWriter:
        return DirectoryWriter(self.path(md5))

    def exists(self, md5: str) -> bool:
        return self.path(md5).is_file()

    def mtime(self, md5: str) -> float:
        return self.path(md5).stat().st_mtime

    def touch(self, md5: str) -> None:
        os.utime(self.path(md5))
