"""Running Alembic from code: ``clusterfed db upgrade``, ``serve``, hosts and tests.

clusterfed's chain lives in the package (``clusterfed.migrations``: the repository's
top-level ``migrations/`` folder, shipped in the wheel) and records its revision in
its own version table, so it runs beside a host's chain in the same database.
"""

from __future__ import annotations

import asyncio
from importlib.resources import as_file, files
from pathlib import Path

from alembic import command
from alembic.config import Config

from .db import ensure_sqlite_dir

FEDERATION_VERSION_TABLE = "clusterfed_alembic_version"
FEDERATION_CHAIN = "clusterfed.migrations"


def alembic_config(database_url: str, script_location: Path) -> Config:
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
    with as_file(files(package)) as location:
        command.upgrade(alembic_config(database_url, location), "head")


def upgrade_database(database_url: str) -> None:
    """Create or upgrade clusterfed's own tables in the database at ``database_url``."""
    upgrade_chain(database_url, FEDERATION_CHAIN)


async def upgrade_database_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_database, database_url)
