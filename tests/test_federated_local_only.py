"""``federated=true`` on a cluster none of whose remotes has ``Proxy: true``: the list is
this cluster's alone, and the answer and the log say so (in process)."""

from __future__ import annotations

import logging
import secrets

import pytest
from clusterfed.routing.router import WARNING_HEADER
from clusterfed.server.app import create_app
from clusterfed.server.testing import free_port, local_config, remote_entry
from clusterfed.server.users.service import create_user
from clusterfed.server.users.tokens import create_token, v2_token
from fastapi import FastAPI

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

COLLECTIONS = "/arvados/v1/collections"


async def local_token(app: FastAPI) -> str:
    async with app.state.database.sessionmaker() as session:
        user = await create_user(
            session, cluster_id="c97qk", email=f"{secrets.token_hex(4)}@c97qk.example"
        )
        user.is_active = True
        token = await create_token(session, cluster_id="c97qk", user_uuid=user.uuid)
        await session.commit()
        return v2_token(token)


async def test_federated_list_without_a_proxy_remote_says_it_searched_only_here(
    databases: DatabaseFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # qr1hi is a remote (its tokens are accepted) but not a Proxy: lists never go there.
    config = local_config(
        "c97qk", databases.new_url("c97qk"), remotes={"qr1hi": remote_entry(free_port())}
    )
    app = create_app(config)
    async with asgi_client(app) as client:
        headers = {"Authorization": f"Bearer {await local_token(app)}"}
        caplog.set_level(logging.WARNING, logger="clusterfed.routing")
        federated = await client.get(COLLECTIONS, params={"federated": "true"}, headers=headers)
        assert federated.status_code == 200, federated.text
        assert federated.json()["clusters"] == ["c97qk"]
        warning = federated.headers[WARNING_HEADER]
        assert "only c97qk" in warning and "Proxy: true" in warning
        said = [r for r in caplog.records if "Proxy: true" in r.getMessage()]
        assert len(said) == 1  # once per request
        assert "c97qk" in said[0].getMessage()

        caplog.clear()
        plain = await client.get(COLLECTIONS, headers=headers)
        assert plain.status_code == 200 and WARNING_HEADER not in plain.headers
        assert not [r for r in caplog.records if "Proxy: true" in r.getMessage()]
