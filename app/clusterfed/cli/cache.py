"""`clusterfed cache ...`: inspect and purge the federation token cache.

Works on the database directly, through the same service as the admin API. A purge
from here is logged like any other, so every running worker drops its L1 entries
within the poll interval; this process has no L1 of its own to clear.
Output never contains a secret or a digest: the service does not read them.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from clusterfed.config import ClusterConfig
from clusterfed.timestamps import wire_time
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, is_cluster_id, is_uuid

from .common import CommandError, add_config, run, with_session

LIST_LIMIT = 1000
TABLE_COLUMNS = ("token_uuid", "user_uuid", "cluster_id", "state", "expires_at", "last_used_at")


def add_commands(commands: Any) -> None:
    cache = commands.add_parser("cache", help="inspect and purge the federation token cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")

    listing = cache_commands.add_parser("list", help="list cached foreign tokens")
    add_config(listing)
    listing.add_argument("--cluster", help="only tokens issued by this cluster ID")
    listing.add_argument("--user", help="only tokens of this user UUID")
    listing.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    listing.set_defaults(handler=cmd_cache_list)

    show = cache_commands.add_parser("show", help="show one cached token")
    add_config(show)
    show.add_argument("uuid", help="token UUID")
    show.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    show.set_defaults(handler=cmd_cache_show)

    purge = cache_commands.add_parser(
        "purge", help="drop cached tokens in every worker (one, by cluster, by user, or all)"
    )
    add_config(purge)
    purge.add_argument("uuid", nargs="?", help="token UUID")
    purge.add_argument("--cluster", help="every token issued by this cluster ID")
    purge.add_argument("--user", help="every token of this user UUID")
    purge.add_argument("--all", action="store_true", help="everything")
    purge.set_defaults(handler=cmd_cache_purge)


def _check_filters(args: argparse.Namespace) -> None:
    if args.cluster is not None and not is_cluster_id(args.cluster):
        raise CommandError("--cluster must be a cluster ID (5 characters of [a-z0-9])")
    if args.user is not None and not is_uuid(args.user, type_=USER_TYPE):
        raise CommandError(f"--user must be a user UUID (xxxxx-{USER_TYPE}-...)")


def _check_token_uuid(uuid: str) -> None:
    if not is_uuid(uuid, type_=TOKEN_TYPE):
        raise CommandError(f"{uuid!r} is not a token UUID (xxxxx-{TOKEN_TYPE}-...)")


def _as_dict(entry: Any) -> dict[str, Any]:
    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return wire_time(v)
        return list(v) if isinstance(v, tuple) else v

    return {name: value(getattr(entry, name)) for name in entry.__dataclass_fields__}


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [list(TABLE_COLUMNS)] + [
        ["" if row[c] is None else str(row[c]) for c in TABLE_COLUMNS] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def cmd_cache_list(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.admin.token_cache import list_entries

    _check_filters(args)

    async def work(session: Any) -> int:
        entries, available = await list_entries(
            session, cluster_id=args.cluster, user_uuid=args.user, limit=LIST_LIMIT
        )
        rows = [_as_dict(entry) for entry in entries]
        if args.json:
            print(json.dumps({"items": rows, "items_available": available}, indent=2))
        else:
            print(_table(rows))
            if available > len(rows):
                print(f"({len(rows)} of {available} shown; narrow with --cluster or --user)")
        return 0

    return run(with_session(config, work))


def cmd_cache_show(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.admin.token_cache import get_entry

    _check_token_uuid(args.uuid)

    async def work(session: Any) -> int:
        entry = await get_entry(session, token_uuid=args.uuid)
        if entry is None:
            raise CommandError(f"no cached token {args.uuid}")
        row = _as_dict(entry)
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            width = max(len(name) for name in row)
            for name, value in row.items():
                shown = ", ".join(value) if isinstance(value, list) else value
                print(f"{name.ljust(width)}  {'' if shown is None else shown}")
        return 0

    return run(with_session(config, work))


def cmd_cache_purge(args: argparse.Namespace, config: ClusterConfig) -> int:
    from clusterfed.admin.token_cache import get_entry, purge

    targets = [
        ("token", args.uuid),
        ("cluster", args.cluster),
        ("user", args.user),
        ("all", None if not args.all else ""),
    ]
    chosen = [(kind, value) for kind, value in targets if value is not None]
    if len(chosen) != 1:
        raise CommandError("give exactly one of: a token UUID, --cluster ID, --user UUID, --all")
    kind, value = chosen[0]
    if kind == "token":
        _check_token_uuid(value)
    else:
        _check_filters(args)

    async def work(session: Any) -> int:
        if kind == "token" and await get_entry(session, token_uuid=value) is None:
            raise CommandError(f"no cached token {value}")
        purged = await purge(session, kind=kind, value=value or None)  # type: ignore[arg-type]
        print(f"purged {purged} cached token{'' if purged == 1 else 's'}")
        return 0

    return run(with_session(config, work))
