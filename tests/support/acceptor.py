"""c97qk in process, accepting the tokens of a scripted qr1hi (``StubIssuer`` on a real
loopback port): the pair most trust tests drive."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from clusterfed.server.app import create_app
from clusterfed.server.testing import local_config, remote_entry
from fastapi import FastAPI

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory


@contextlib.asynccontextmanager
async def c97qk(
    databases: DatabaseFactory, port: int, *, refresh: str = "5m", **federation: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app and a client; ``refresh`` is RemoteTokenRefresh, ``federation`` the
    config's Federation section."""
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(port)},
        login={"RemoteTokenRefresh": refresh},
        federation=federation,
    )
    app = create_app(config)
    async with asgi_client(app) as client:
        yield client, app


async def users_current(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(
        "/arvados/v1/users/current", headers={"Authorization": f"Bearer {token}"}
    )
