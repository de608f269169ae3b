"""The ``clusterfed`` command line (SPEC section 6)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .federation.config import CONFIG_ENV, ClusterConfig, ConfigError, load_config, parse_duration
from .federation.tokens import (
    TOKEN_TYPE,
    USER_TYPE,
    CannotResalt,
    MalformedToken,
    is_cluster_id,
    is_uuid,
    parse_token,
    salt,
)

Handler = Callable[[argparse.Namespace, ClusterConfig], int]


class CommandError(Exception):
    """A command that cannot be carried out; printed without a traceback, exit 1."""


def _add_config(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # SUPPRESS on subcommands, so `clusterfed --config X serve` is not undone by the
    # subcommand's own (absent) --config.
    parser.add_argument(
        "--config",
        default=None if top else argparse.SUPPRESS,
        help=f"config file (default: ${CONFIG_ENV}, else built-in)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterfed", description=__doc__)
    _add_config(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    _add_config(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="alembic upgrade head")
    _add_config(upgrade)
    upgrade.set_defaults(handler=cmd_db_upgrade)

    users = commands.add_parser("users", help="manage local users")
    users_commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create_user = users_commands.add_parser("create", help="create a user; prints its UUID")
    _add_config(create_user)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--username")
    create_user.add_argument("--uuid")
    create_user.add_argument("--admin", action="store_true")
    create_user.add_argument("--active", action="store_true")
    create_user.set_defaults(handler=cmd_users_create)

    tokens = commands.add_parser("tokens", help="manage tokens")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    create_token = tokens_commands.add_parser("create", help="issue a token; prints it")
    _add_config(create_token)
    create_token.add_argument("--user", required=True, help="user UUID")
    create_token.add_argument("--expires-in", help="duration, e.g. 1h")
    create_token.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help='e.g. "GET /arvados/v1/users/" (repeatable; default all)',
    )
    create_token.set_defaults(handler=cmd_tokens_create)
    salt_token = tokens_commands.add_parser("salt", help="print TOKEN salted for a remote")
    _add_config(salt_token)
    salt_token.add_argument("token")
    salt_token.add_argument("--remote", required=True)
    salt_token.set_defaults(handler=cmd_tokens_salt)
    revoke_token = tokens_commands.add_parser(
        "revoke", help="revoke a token issued here, on every cluster that validated it"
    )
    _add_config(revoke_token)
    revoke_token.add_argument("uuid", help="token UUID")
    revoke_token.set_defaults(handler=cmd_tokens_revoke)

    from .cache_cli import add_cache_commands

    add_cache_commands(commands, _add_config)
    return parser


def _run(coro: Awaitable[int]) -> int:
    return asyncio.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace, config: ClusterConfig) -> int:
    import uvicorn

    from .migrate import upgrade

    upgrade(config.database_url)
    tls: dict[str, str] = {}
    if config.tls_certificate:
        tls = {"ssl_certfile": config.tls_certificate, "ssl_keyfile": config.tls_key}
    if args.workers > 1:
        # Worker processes rebuild the app from the environment, so the path must be there.
        if config.source != "<built-in default>":
            os.environ[CONFIG_ENV] = os.path.abspath(config.source)
        uvicorn.run(
            "app.cluster.main:create_app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
            **tls,
        )
    else:
        from .cluster.app import create_app

        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="info", **tls)
    return 0


def cmd_db_upgrade(_: argparse.Namespace, config: ClusterConfig) -> int:
    from .migrate import upgrade

    upgrade(config.database_url)
    print(f"database for {config.cluster_id} is at head")
    return 0


async def _with_session(config: ClusterConfig, work: Callable[[Any], Awaitable[int]]) -> int:
    from .cluster.bootstrap import ensure_builtin_users
    from .cluster.db import create_engine, create_sessionmaker

    engine = create_engine(config.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await ensure_builtin_users(session, config.cluster_id)
            code = await work(session)
            await session.commit()
            return code
    finally:
        await engine.dispose()


def cmd_users_create(args: argparse.Namespace, config: ClusterConfig) -> int:
    from .cluster.services.users import create_user, get_user

    # Any well-formed user UUID: a remote user's UUID pre-creates their mirror (SPEC 5,
    # "a remote user that a local admin pre-created as active").
    if args.uuid and not is_uuid(args.uuid, type_=USER_TYPE):
        raise CommandError("--uuid must be a user UUID (<cluster>-tpzed-<15 of [a-z0-9]>)")

    async def work(session: Any) -> int:
        if args.uuid and await get_user(session, uuid=args.uuid) is not None:
            raise CommandError(f"user {args.uuid} already exists")
        user = await create_user(
            session,
            cluster_id=config.cluster_id,
            email=args.email,
            username=args.username,
            uuid=args.uuid,
            is_admin=args.admin,
            is_active=args.active,
        )
        print(user.uuid)
        return 0

    return _run(_with_session(config, work))


def cmd_tokens_create(args: argparse.Namespace, config: ClusterConfig) -> int:
    from .cluster.services.tokens import create_token, v2_token
    from .cluster.services.users import get_user

    try:
        expires_in = parse_duration(args.expires_in) if args.expires_in is not None else None
    except ValueError as exc:
        raise CommandError(f"--expires-in: {exc}") from None
    if expires_in is not None and expires_in <= 0:
        # Zero would otherwise read as "no expiry" further down: a token that never expires.
        raise CommandError("--expires-in must be greater than zero (omit it for no expiry)")

    async def work(session: Any) -> int:
        if await get_user(session, uuid=args.user) is None:
            raise CommandError(f"no user {args.user} on this cluster")
        token = await create_token(
            session,
            cluster_id=config.cluster_id,
            user_uuid=args.user,
            expires_in=expires_in,
            scopes=args.scopes,
        )
        print(v2_token(token))
        return 0

    return _run(_with_session(config, work))


def cmd_tokens_salt(args: argparse.Namespace, _: ClusterConfig) -> int:
    if not is_cluster_id(args.remote):
        raise CommandError("--remote must be a cluster ID (5 characters of [a-z0-9])")
    try:
        print(salt(parse_token(args.token), args.remote).encode())
    except (MalformedToken, CannotResalt) as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, config: ClusterConfig) -> int:
    from .cluster.services.revocation import revoke_token
    from .cluster.services.tokens import get_token

    if not is_uuid(args.uuid, type_=TOKEN_TYPE):
        raise CommandError(f"{args.uuid!r} is not a token UUID (<cluster>-{TOKEN_TYPE}-...)")
    if args.uuid[:5] != config.cluster_id:
        raise CommandError(
            f"{args.uuid} was issued by cluster {args.uuid[:5]}; revoke it there "
            "(or through this cluster's API, which sends the request to its issuer)"
        )

    async def work(session: Any) -> int:
        record = await get_token(session, uuid=args.uuid)
        if record is None:
            raise CommandError(f"no token {args.uuid} on this cluster")
        queued = await revoke_token(session, record, config=config)
        # The running servers' outboxes send the notices; they look every half second.
        notified = ", ".join(queued) if queued else "none (no remote validated it)"
        print(f"revoked {args.uuid}; notices queued for: {notified}")
        return 0

    return _run(_with_session(config, work))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        from .federation.config import resolve_config_path

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
