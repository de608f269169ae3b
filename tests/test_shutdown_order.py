"""Shutdown order: clusterfed's background work stops before its database is disposed.

A purge poll or a touch write still running when the engine was disposed handed its
connection back to the old pool afterwards, where nothing closed it; the garbage
collector found it later, in another test, after that test's event loop had closed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clusterfed.server.app import create_app
from clusterfed.server.testing import local_config

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory


def record_shutdown(app: Any, events: list[str]) -> None:
    federation, database = app.state.federation, app.state.database
    stop_federation, dispose_database = federation.aclose, database.dispose

    async def federation_stopped() -> None:
        await stop_federation()
        events.append("federation stopped")

    async def database_disposed() -> None:
        events.append("database disposed" if database.started else "disposed again")
        await dispose_database()

    federation.aclose = federation_stopped
    database.dispose = database_disposed


async def test_the_example_server_disposes_its_database_last_and_once(
    databases: DatabaseFactory,
) -> None:
    app = create_app(local_config("c97qk", databases.new_url("order")))
    events: list[str] = []
    record_shutdown(app, events)
    async with asgi_client(app) as client:
        assert (await client.get("/arvados/v1/users/current")).status_code == 401
    assert events == ["federation stopped", "database disposed"]


async def test_background_writes_stop_before_the_database_goes(databases: DatabaseFactory) -> None:
    app = create_app(local_config("c97qk", databases.new_url("order")))
    async with asgi_client(app):
        validator = app.state.federation.validator
        # A touch write waits a second before writing: shutdown comes while it waits.
        validator.touch("qr1hi-gj3su-000000000000001", datetime.now(UTC))
        pending = list(validator._background)
        assert pending
    assert all(task.done() for task in pending)
