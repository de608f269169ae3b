"""Running Alembic from code: ``clusterfed db upgrade``, ``serve``, hosts and tests.

clusterfed's chain lives in the package (``clusterfed.migrations``: the repository's
top-level ``migrations/`` folder, shipped in the wheel) and records its revision in
its own version table, so it runs beside a host's chain in the same database. A chain's
package names its version table (``VERSION_TABLE`` in its ``__init__``).

A database already at head is told apart without Alembic: every start of ``serve`` and
every ``db upgrade`` asks, and loading Alembic and every migration script to learn that
nothing is to be done took 0.2 s of each.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

from .db import create_engine, ensure_sqlite_dir

if TYPE_CHECKING:
    from alembic.config import Config

FEDERATION_CHAIN = "clusterfed.migrations"
FEDERATION_VERSION_TABLE = importlib.import_module(FEDERATION_CHAIN).VERSION_TABLE

# What Alembic's script template writes at the top level of every revision file.
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*(.+)$", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def chain_heads(versions: Traversable) -> frozenset[str] | None:
    """The head revisions of a chain, read off the revision files in ``versions``; None
    where a file does not read as Alembic's template writes it (Alembic then decides)."""
    revisions: set[str] = set()
    below: set[str] = set()
    for script in versions.iterdir():
        if not script.name.endswith(".py") or script.name == "__init__.py":
            continue
        text = script.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        named = _QUOTED.fullmatch(revision[0].strip()) if len(revision) == 1 else None
        if named is None or len(down) != 1:
            return None
        revisions.add(named.group(1))
        below.update(_QUOTED.findall(down[0]))
    heads = revisions - below
    return frozenset(heads) if heads and below <= revisions else None


async def _recorded_revisions(database_url: str, version_table: str) -> frozenset[str] | None:
    """The revisions the database records for a chain; None where it cannot say (no
    version table yet, or no answer: Alembic, run next, reports any real trouble)."""
    from sqlalchemy import text

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text(f'SELECT version_num FROM "{version_table}"'))
            return frozenset(str(row[0]) for row in rows)
    except Exception:
        return None
    finally:
        await engine.dispose()


def at_head(database_url: str, package: str) -> bool:
    """Whether the database records exactly the head revisions of the chain in ``package``."""
    heads = chain_heads(files(package).joinpath("versions"))
    table = getattr(importlib.import_module(package), "VERSION_TABLE", None)
    if heads is None or not isinstance(table, str):  # a chain that does not say: Alembic's
        return False
    return asyncio.run(_recorded_revisions(database_url, table)) == heads


def alembic_config(database_url: str, script_location: Path) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation: a literal % in a URL (an escaped password) must be doubled.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_chain(database_url: str, package: str) -> None:
    """``alembic upgrade head`` for the chain in ``package``. Call from sync code (Alembic's
    env.py runs its own event loop); from async code use :func:`upgrade_database_async`."""
    if database_url.startswith("sqlite"):
        ensure_sqlite_dir(database_url)
    if at_head(database_url, package):
        return
    from alembic import command

    with as_file(files(package)) as location:
        command.upgrade(alembic_config(database_url, location), "head")


def upgrade_database(database_url: str) -> None:
    """Create or upgrade clusterfed's own tables in the database at ``database_url``."""
    upgrade_chain(database_url, FEDERATION_CHAIN)


async def upgrade_database_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_database, database_url)
