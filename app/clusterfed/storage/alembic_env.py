"""The body of an Alembic ``env.py`` (async template), shared by every chain.

clusterfed's chain (``clusterfed.migrations``) and the example server's each have an
``env.py`` of three lines that calls :func:`run_migrations` with its own metadata and
version table, so two chains can live in one database side by side.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from clusterfed.config import load_config, resolve_config_path

from .db import create_engine


def run_migrations(metadata: MetaData, *, version_table: str) -> None:
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = (
        config.get_main_option("sqlalchemy.url")
        or load_config(resolve_config_path(None)).database_url
    )

    def configure(**kwargs: object) -> None:
        context.configure(target_metadata=metadata, version_table=version_table, **kwargs)

    if context.is_offline_mode():
        configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return

    def run_sync(connection: Connection) -> None:
        configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(run_sync)
        await engine.dispose()

    asyncio.run(run_async())
