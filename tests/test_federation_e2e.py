"""Two real clusters on loopback: qr1hi issues tokens, c97qk accepts them (SPEC 3.2)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from clusterfed.server.models import ApiClientAuthorization, User
from clusterfed.server.testing import (
    Cluster,
    issuer_and_acceptor,
)
from clusterfed.storage.models import FederationTokenCache
from clusterfed.tokens import parse_token, salt
from sqlalchemy import delete, func, select, update

from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
TOKEN_CURRENT = "/arvados/v1/api_client_authorizations/current"


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    with issuer_and_acceptor(
        session_databases, tmp_path_factory.mktemp("pair"), login={"RemoteTokenRefresh": "2s"}
    ) as clusters:
        yield clusters


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
        await session.execute(
            delete(ApiClientAuthorization).where(
                ApiClientAuthorization.uuid == parse_token(token).uuid
            )
        )
    assert call(c97qk, USERS_CURRENT, salted).status_code == 200  # still cached
    await asyncio.sleep(2.2)
    assert call(c97qk, USERS_CURRENT, salted).status_code == 401


async def test_deactivation_at_the_issuer_reaches_the_mirror_after_refresh(
    pair: tuple[Cluster, Cluster],
) -> None:
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user()
    assert call(c97qk, USERS_CURRENT, token).json()["is_active"] is True
    async with qr1hi.session() as session:  # what unsetup does on the home cluster
        await session.execute(
            update(User).where(User.uuid == user_uuid).values(is_active=False, is_invited=False)
        )
    await asyncio.sleep(2.2)
    body = call(c97qk, USERS_CURRENT, token).json()
    assert (body["uuid"], body["is_active"], body["is_invited"]) == (user_uuid, False, False)


async def test_foreign_token_scopes_are_enforced(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, c97qk = pair
    user_uuid, _ = await qr1hi.new_user()
    scoped = await qr1hi.new_token(user_uuid, scopes=["GET /arvados/v1/users/current"])
    assert call(c97qk, USERS_CURRENT, scoped).status_code == 200
    assert call(c97qk, TOKEN_CURRENT, scoped).status_code == 200  # always allowed
    refused = call(c97qk, "/arvados/v1/collections", scoped)
    assert refused.status_code == 403
    assert "scopes" in refused.json()["errors"][0]


async def test_token_scoped_to_collections_works_on_another_cluster(
    pair: tuple[Cluster, Cluster],
) -> None:
    # Validation asks the issuer for users/current with remote=c97qk: scopes must not
    # block that call, or a scoped token could never be used away from home.
    qr1hi, c97qk = pair
    user_uuid, _ = await qr1hi.new_user()
    scoped = await qr1hi.new_token(user_uuid, scopes=["GET /arvados/v1/collections"])
    assert call(c97qk, "/arvados/v1/collections", scoped).status_code == 200
    assert call(c97qk, USERS_CURRENT, scoped).status_code == 403  # outside its scopes here


@pytest.fixture(scope="module")
def two_workers(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    with issuer_and_acceptor(
        session_databases, tmp_path_factory.mktemp("workers"), workers=2
    ) as clusters:
        yield clusters


async def test_two_workers_racing_on_one_token_leave_one_row(
    two_workers: tuple[Cluster, Cluster],
) -> None:
    qr1hi, c97qk = two_workers
    user_uuid, token = await qr1hi.new_user()
    headers = {"Authorization": f"Bearer {token}"}
    # Fresh connections per request, so the kernel spreads them over both workers.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=c97qk.base_url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.get(USERS_CURRENT, headers=headers) for _ in range(200))
        )
    assert {r.status_code for r in responses} == {200}
    async with c97qk.session() as session:
        rows = await session.scalar(
            select(func.count())
            .select_from(FederationTokenCache)
            .where(FederationTokenCache.token_uuid == parse_token(token).uuid)
        )
        mirrors = await session.scalar(
            select(func.count()).select_from(User).where(User.uuid == user_uuid)
        )
    assert (rows, mirrors) == (1, 1)
