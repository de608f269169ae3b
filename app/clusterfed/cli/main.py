"""The ``clusterfed`` command line: one module per command group (serve, users and
tokens, cache). ``DESCRIPTION`` is what ``clusterfed --help`` says."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clusterfed.config import ConfigError, load_config, resolve_config_path

from . import cache, serve, users
from .common import CommandError, add_config

DESCRIPTION = (
    "Federation middleware for a cluster's API server, speaking the Arvados federation "
    "protocol: serve the example cluster, migrate its database, create users and tokens, "
    "salt and revoke tokens, inspect and purge the token cache. Documentation: docs/ in "
    "the source tree (make docs builds it)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterfed", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    add_config(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_commands(commands)
    users.add_commands(commands)
    cache.add_commands(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clusterfed")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(resolve_config_path(args.config))
        return args.handler(args, config)
    except (ConfigError, CommandError) as exc:
        print(f"clusterfed: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CommandError) else 2
    except Exception as exc:
        message = _database_error_message(exc)
        if message is None:
            raise
        print(f"clusterfed: error: {message}", file=sys.stderr)
        return 1


def _database_error_message(exc: Exception) -> str | None:
    """A one-line message for a database that is unreachable or not migrated, else None.

    Such a database is an operator's mistake, not a bug: it deserves a message, not a
    traceback. The message never carries the URL (it may hold a password).
    """
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(exc, SQLAlchemyError | OSError):
        return None
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (
        f"database error: {detail[0] if detail else type(exc).__name__} "
        "(is the database reachable, and has `clusterfed db upgrade` been run?)"
    )
