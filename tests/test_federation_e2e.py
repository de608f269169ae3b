"""Two real clusters on loopback: qr1hi issues tokens, c97qk accepts them (SPEC 3.2)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.federation.tokens import parse_token, salt
from tests.support.databases import DatabaseFactory
from tests.support.servers import Cluster, ClusterProcess, cluster_config, remote_entry, running

USERS_CURRENT = "/arvados/v1/users/current"
TOKEN_CURRENT = "/arvados/v1/api_client_authorizations/current"


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    workdir: Path = tmp_path_factory.mktemp("pair")
    home = ClusterProcess(cluster_config("qr1hi", session_databases.new_url("qr1hi")), workdir)
    with running(home) as qr1hi:
        config = cluster_config(
            "c97qk",
            session_databases.new_url("c97qk"),
            remotes={"qr1hi": remote_entry(qr1hi.port, ActivateUsers=True)},
            login={"RemoteTokenRefresh": "2s"},
        )
        with running(ClusterProcess(config, workdir)) as c97qk:
            yield qr1hi, c97qk


def call(cluster: Cluster, path: str, token: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{cluster.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
    )


def salted_for(token: str, remote: str) -> str:
    return salt(parse_token(token), remote).encode()


async def test_foreign_user_gets_a_local_mirror(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user(email="ann@qr1hi.example", first_name="Ann")
    response = call(c97qk, USERS_CURRENT, salted_for(token, "c97qk"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["uuid"], body["email"], body["first_name"]) == (
        user_uuid,
        "ann@qr1hi.example",
        "Ann",
    )
    assert body["is_active"] is True and body["is_admin"] is False
    current = call(c97qk, TOKEN_CURRENT, salted_for(token, "c97qk")).json()
    assert current["uuid"] == parse_token(token).uuid and current["owner_uuid"] == user_uuid


async def test_unsalted_foreign_token_is_accepted_too(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user()
    assert call(c97qk, USERS_CURRENT, token).json()["uuid"] == user_uuid


async def test_revoked_token_is_trusted_until_refresh(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, c97qk = pair
    _, token = await qr1hi.new_user()
    salted = salted_for(token, "c97qk")
    assert call(c97qk, USERS_CURRENT, salted).status_code == 200
    async with qr1hi.session() as session:
        from sqlalchemy import delete

        from app.cluster.models import ApiClientAuthorization

        await session.execute(
            delete(ApiClientAuthorization).where(
                ApiClientAuthorization.uuid == parse_token(token).uuid
            )
        )
    assert call(c97qk, USERS_CURRENT, salted).status_code == 200  # still cached
    await asyncio.sleep(2.2)
    assert call(c97qk, USERS_CURRENT, salted).status_code == 401
