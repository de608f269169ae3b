"""``clusterfed users ...`` and ``clusterfed tokens ...``: the example server's users and
tokens (docs/operating.md#command-line)."""

from __future__ import annotations

import argparse
from typing import Any

from clusterfed.config import ClusterConfig, parse_duration
from clusterfed.tokens import (
    TOKEN_TYPE,
    USER_TYPE,
    CannotResalt,
    MalformedToken,
    is_cluster_id,
    is_uuid,
    parse_token,
    salt,
)

from .common import CommandError, add_config, run, with_session


def add_commands(commands: Any) -> None:
    users = commands.add_parser("users", help="manage local users")
    users_commands = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create_user = users_commands.add_parser("create", help="create a user; prints its UUID")
    add_config(create_user)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--username")
    create_user.add_argument("--uuid")
    create_user.add_argument("--admin", action="store_true")
    create_user.add_argument("--active", action="store_true")
    create_user.set_defaults(handler=cmd_users_create)

    tokens = commands.add_parser("tokens", help="manage tokens")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    create_token = tokens_commands.add_parser("create", help="issue a token; prints it")
    add_config(create_token)
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
    add_config(salt_token)
    salt_token.add_argument("token", help="a v2 token: v2/<token uuid>/<secret>")
    salt_token.add_argument(
        "--remote", required=True, help="the cluster ID the salted copy is for (5 characters)"
    )
    salt_token.set_defaults(handler=cmd_tokens_salt)
    revoke_token = tokens_commands.add_parser(
        "revoke", help="revoke a token issued here, on every cluster that validated it"
    )
    add_config(revoke_token)
    revoke_token.add_argument("uuid", help="token UUID")
    revoke_token.set_defaults(handler=cmd_tokens_revoke)


def cmd_users_create(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.server.users.service import create_user, get_user

    # Any well-formed user UUID: a remote user's UUID pre-creates their mirror
    # (docs/protocol.md#mirroring-remote-users: a pre-created active user stays active).
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

    return run(with_session(config, work, server=True))


def cmd_tokens_create(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.server.users.service import get_user
    from clusterfed.server.users.tokens import create_token, v2_token

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

    return run(with_session(config, work, server=True))


def cmd_tokens_salt(args: argparse.Namespace, _: ClusterConfig) -> int:
    if not is_cluster_id(args.remote):
        raise CommandError("--remote must be a cluster ID (5 characters of [a-z0-9])")
    try:
        print(salt(parse_token(args.token), args.remote).encode())
    except (MalformedToken, CannotResalt) as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.server.users.revocation import revoke_token
    from clusterfed.server.users.tokens import get_token

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

    return run(with_session(config, work, server=True))
