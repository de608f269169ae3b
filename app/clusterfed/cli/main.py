"""The ``clusterfed`` command line: one module per command group (serve, users and
tokens, cache). ``DESCRIPTION`` is what ``clusterfed --help`` says."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

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
    parser.add_argument(
        "--version", action=_PrintVersion, nargs=0, help="print the version and exit"
    )
    add_config(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_commands(commands)
    users.add_commands(commands)
    cache.add_commands(commands)
    return parser


class _PrintVersion(argparse.Action):
    """argparse's own version action takes the string when the parser is built; this one
    looks it up only when asked (reading the installed metadata costs every command 20 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("clusterfed")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "unknown"
        print(f"{parser.prog} {found}")
        parser.exit()


def main(argv: Sequence[str] | None = None, *, leave_when_done: bool = False) -> int:
    """Run one command; its exit status. ``leave_when_done``: see :func:`run_program`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        config = load_config(resolve_config_path(args.config))
        code = args.handler(args, config)
        if leave_when_done and not getattr(args, "long_running", False):
            _leave(code)
        return code
    except (ConfigError, CommandError) as exc:
        print(f"clusterfed: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CommandError) else 2
    except Exception as exc:
        message = _database_error_message(exc)
        if message is None:
            raise
        print(f"clusterfed: error: {message}", file=sys.stderr)
        return 1


def run_program() -> NoReturn:
    """The ``clusterfed`` program: :func:`main`, leaving as soon as a command is done.

    Tearing the interpreter down after a database command (freeing SQLAlchemy's modules
    object by object) took 0.08-0.1 s, as long as the command's own work. When a short
    command's handler returns, it has committed, closed its database and written its
    output, so the process flushes what it printed and leaves without the teardown.
    ``serve`` (``long_running``) exits the ordinary way: its exit handlers remove the
    metrics directory it made. Errors exit the ordinary way too.
    """
    sys.exit(main(leave_when_done=True))


def _leave(code: int) -> NoReturn:
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `clusterfed cache list | head`: the reader has gone
        code = code or 1
    os._exit(code)


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
