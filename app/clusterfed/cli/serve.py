"""``clusterfed serve`` and ``clusterfed db upgrade`` (docs/operating.md#command-line)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from typing import Any

from clusterfed.config import (
    CONFIG_ENV,
    DEFAULT_MANAGEMENT_TOKEN_FILE,
    DEFAULT_SOURCE,
    ClusterConfig,
    default_config,
)

from .common import CommandError, add_config


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    add_config(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="for every logger; debug writes no secret either (default: info)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=1000,
        metavar="N",
        help="open connections and requests per worker; past it, 503 (default: 1000)",
    )
    serve.set_defaults(handler=cmd_serve, long_running=True)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="alembic upgrade head (clusterfed's tables and the example server's)"
    )
    add_config(upgrade)
    upgrade.add_argument(
        "--federation-only",
        action="store_true",
        help="only clusterfed's own tables: for a host that mounts clusterfed",
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)


def cmd_serve(args: argparse.Namespace, config: ClusterConfig) -> int:
    try:
        import uvicorn
    except ImportError:
        raise CommandError(
            "`clusterfed serve` needs the server extra: pip install 'clusterfed[server]'"
        ) from None
    from clusterfed.server.migrate import upgrade
    from clusterfed.server.serving import freeze_startup_objects, uvicorn_options

    if config.source == DEFAULT_SOURCE:
        config = _with_default_management_token()
    upgrade(config.database_url)
    # Bounded request heads and an access log with no credential in it (serving.py).
    options: dict[str, Any] = uvicorn_options(
        log_level=args.log_level, limit_concurrency=args.limit_concurrency
    )
    if config.tls_certificate:
        options.update(ssl_certfile=config.tls_certificate, ssl_keyfile=config.tls_key)
    if args.workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker counts into one directory (emptied of an earlier run's files):
        # /metrics is the whole server's.
        from clusterfed.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir()
    if args.workers > 1:
        # Worker processes rebuild the app from the environment, so the path must be there.
        if config.source != DEFAULT_SOURCE:
            os.environ[CONFIG_ENV] = os.path.abspath(config.source)
        uvicorn.run(
            "clusterfed.server.main:create_app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            **options,
        )
        # The workers are gone and this process holds nothing else: ending it at once
        # skips the interpreter's teardown of every module it imported, which took a
        # third of a shutdown that must end within 2 s of SIGTERM.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    else:
        from clusterfed.server.app import create_app

        app = create_app(config)
        freeze_startup_objects()
        uvicorn.run(app, host=args.host, port=args.port, **options)
    return 0


def _with_default_management_token() -> ClusterConfig:
    """Without a config file, the health check, metrics and the admin page still need a
    ManagementToken: made on the first run, kept in var/management-token (owner-only),
    and read from there by every later run (and by every worker)."""
    path = DEFAULT_MANAGEMENT_TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another `serve` made it first
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(secrets.token_hex(24) + "\n")
            print(f"clusterfed: made a ManagementToken for this cluster in {path}")
    config = default_config()
    if not config.management_token:
        raise CommandError(f"{path} is empty or unreadable; delete it to have a new one made")
    print(
        f"clusterfed: no config file; ManagementToken in {path} "
        "(health, metrics, the admin API and the admin page at /federation/admin need it)"
    )
    return config


def cmd_db_upgrade(args: argparse.Namespace, config: ClusterConfig) -> int:
    if args.federation_only:
        from clusterfed.storage.migrate import upgrade_database as upgrade
    else:
        from clusterfed.server.migrate import upgrade

    upgrade(config.database_url)
    print(f"database for {config.cluster_id} is at head")
    return 0
