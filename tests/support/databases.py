"""Real databases for tests: SQLite files and PostgreSQL databases, each migrated.

Migrating once per session and copying is what keeps the suite fast: a SQLite test
database is a copy of a migrated template file, a PostgreSQL one is
``CREATE DATABASE ... TEMPLATE`` of a migrated template database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from clusterfed.server.migrate import upgrade
from clusterfed.storage.database import Database

PG_ADMIN_DSN = os.environ.get("CLUSTERFED_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


T = TypeVar("T")


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on a fresh thread: safe from sync code and from inside a running loop
    (async fixtures), where ``asyncio.run`` and Alembic's env.py would refuse."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    return run_blocking(asyncio.run, coro)


def postgres_unavailable_reason() -> str | None:
    """None when PostgreSQL answers; else why (the reason a local run skips with)."""

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        run_coroutine(probe())
    except Exception as exc:  # any failure to connect means "not available here"
        return f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {type(exc).__name__}: {exc}"
    return None


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{dbname}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class DatabaseFactory:
    """Hands out fresh, migrated databases of one backend."""

    backend: str  # "sqlite" | "postgresql"
    workdir: Path
    _template: str = ""
    _created: list[str] | None = None

    def __post_init__(self) -> None:
        self._created = []
        if self.backend == "sqlite":
            self._template = str(self.workdir / "template.db")
            run_blocking(upgrade, f"sqlite+aiosqlite:///{self._template}")
        else:
            self._template = f"cf_tmpl_{secrets.token_hex(4)}"
            run_coroutine(_pg_admin(f'CREATE DATABASE "{self._template}"'))
            self._created.append(self._template)
            run_blocking(upgrade, _pg_url(self._template))

    def new_url(self, name: str = "db") -> str:
        if self.backend == "sqlite":
            path = self.workdir / f"{name}-{secrets.token_hex(4)}.db"
            shutil.copyfile(self._template, path)
            return f"sqlite+aiosqlite:///{path}"
        dbname = f"cf_{name}_{secrets.token_hex(4)}"
        run_coroutine(_pg_admin(f'CREATE DATABASE "{dbname}" TEMPLATE "{self._template}"'))
        assert self._created is not None
        self._created.append(dbname)
        return _pg_url(dbname)

    def new_empty_url(self, name: str = "db") -> str:
        """A database with no tables at all: a library host's, before any migration."""
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / f'{name}-{secrets.token_hex(4)}.db'}"
        dbname = f"cf_{name}_{secrets.token_hex(4)}"
        run_coroutine(_pg_admin(f'CREATE DATABASE "{dbname}"'))
        assert self._created is not None
        self._created.append(dbname)
        return _pg_url(dbname)

    def close(self) -> None:
        if self.backend == "postgresql" and self._created:
            drop_in_background(list(reversed(self._created)))


# Dropping a PostgreSQL database takes most of a second on a busy machine, and a run makes
# hundreds (emptying one for reuse measured no cheaper than making a new one): the run
# does not wait for the drops. A detached process makes them after the session ends.
_DROP = """
import asyncio, sys
import asyncpg

async def main(dsn, names):
    conn = await asyncpg.connect(dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


# Held, never waited for: a Popen collected while its process runs warns (ResourceWarning),
# and this one is meant to outlive the run.
_DROPPERS: list[subprocess.Popen[bytes]] = []


def drop_in_background(names: list[str]) -> None:
    dropper = subprocess.Popen(
        [sys.executable, "-c", _DROP, PG_ADMIN_DSN, *names],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _DROPPERS.append(dropper)


@contextlib.asynccontextmanager
async def started(url: str) -> AsyncIterator[Database]:
    """A ``Database`` on ``url``, started as an app's lifespan starts it, then disposed."""
    database = Database(url)
    await database.start()
    try:
        yield database
    finally:
        await database.dispose()
