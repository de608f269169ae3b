"""What every ``clusterfed`` command shares: the --config option, errors, sessions."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from clusterfed.config import CONFIG_ENV, ClusterConfig

Handler = Callable[[argparse.Namespace, ClusterConfig], int]


class CommandError(Exception):
    """A command that cannot be carried out; printed without a traceback, exit 1."""


def add_config(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # SUPPRESS on subcommands, so `clusterfed --config X serve` is not undone by the
    # subcommand's own (absent) --config.
    parser.add_argument(
        "--config",
        default=None if top else argparse.SUPPRESS,
        help=f"config file (default: ${CONFIG_ENV}, else built-in)",
    )


def run(coro: Awaitable[int]) -> int:
    import asyncio  # only the commands that touch a database need an event loop

    return asyncio.run(coro)  # type: ignore[arg-type]


async def with_session(
    config: ClusterConfig, work: Callable[[Any], Awaitable[int]], *, server: bool = False
) -> int:
    """Run ``work`` in one committed session on the configured database. ``server``: the
    example server's tables are there too (its built-in users are made sure of)."""
    from clusterfed.storage.db import create_engine, create_sessionmaker, sqlite_file

    # Opening a SQLite file that is not there would make an empty one (and its folder),
    # then fail on the first table: say what is wrong and leave nothing behind.
    path = sqlite_file(config.database_url)
    if path is not None and not path.exists():
        raise CommandError(
            f"no database at {path}: run `clusterfed db upgrade` first, or name the "
            f"cluster's config with --config or ${CONFIG_ENV}"
        )
    engine = create_engine(config.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            if server:
                from clusterfed.server.users.bootstrap import ensure_builtin_users

                await ensure_builtin_users(session, config.cluster_id)
            code = await work(session)
            await session.commit()
            return code
    finally:
        await engine.dispose()
