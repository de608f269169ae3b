"""The example server's database: clusterfed's tables and the server's own, each chain
with its own version table."""

from __future__ import annotations

import asyncio

from clusterfed.storage.migrate import upgrade_chain, upgrade_database

SERVER_CHAIN = "clusterfed.server.migrations"


def upgrade(database_url: str) -> None:
    upgrade_chain(database_url, SERVER_CHAIN)
    upgrade_database(database_url)


async def upgrade_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
