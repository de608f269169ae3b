"""``clusterfed serve`` and ``clusterfed db upgrade`` (SPEC 6)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from clusterfed.config import CONFIG_ENV, ClusterConfig

from .common import CommandError, add_config


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    add_config(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve)

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

    upgrade(config.database_url)
    # Bounded request heads and an access log with no credential in it (serving.py).
    options: dict[str, Any] = uvicorn_options()
    if config.tls_certificate:
        options.update(ssl_certfile=config.tls_certificate, ssl_keyfile=config.tls_key)
    if args.workers > 1:
        # Worker processes rebuild the app from the environment, so the path must be there.
        if config.source != "<built-in default>":
            os.environ[CONFIG_ENV] = os.path.abspath(config.source)
        uvicorn.run(
            "clusterfed.server.main:create_app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
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
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", **options)
    return 0


def cmd_db_upgrade(args: argparse.Namespace, config: ClusterConfig) -> int:
    if args.federation_only:
        from clusterfed.storage.migrate import upgrade_database as upgrade
    else:
        from clusterfed.server.migrate import upgrade

    upgrade(config.database_url)
    print(f"database for {config.cluster_id} is at head")
    return 0
