"""SPEC 3.4: the token-cache admin API, in process against a real issuer cluster.

c97qk runs in process (a fresh database per test); qr1hi is a real server process, so
foreign callers are really validated. L2 rows with chosen timestamps are written
straight into the table to pin down the ``state`` rule.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    ClusterProcess,
    cluster_config,
    local_config,
    remote_entry,
    running,
)
from clusterfed.server.users.service import create_user
from clusterfed.server.users.tokens import create_token, v2_token
from clusterfed.storage.models import FederationPurge, FederationTokenCache
from clusterfed.tokens import parse_token
from fastapi import FastAPI
from sqlalchemy import select

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

API = "/federation/v1"
ITEM_FIELDS = {
    "token_uuid",
    "user_uuid",
    "cluster_id",
    "scopes",
    "expires_at",
    "refreshes_at",
    "validated_at",
    "last_used_at",
    "state",
}
MANAGEMENT = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}


@pytest.fixture(scope="module")
def qr1hi(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir: Path = tmp_path_factory.mktemp("admin-issuer")
    with running(
        ClusterProcess(cluster_config("qr1hi", session_databases.new_url()), workdir)
    ) as c:
        yield c


def _app(qr1hi: Cluster, databases: DatabaseFactory, **login: str) -> FastAPI:
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(qr1hi.port, ActivateUsers=True)},
        login={"RemoteTokenRefresh": "1h", **login},
    )
    return create_app(config)


@pytest.fixture
async def c97qk(
    qr1hi: Cluster, session_databases: DatabaseFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = _app(qr1hi, session_databases)
    async for client in asgi_client(app):
        yield client, app


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fake_uuid(cluster: str, type_: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return f"{cluster}-{type_}-" + "".join(secrets.choice(alphabet) for _ in range(15))


async def local_user(app: FastAPI, *, is_admin: bool, is_active: bool = True) -> tuple[str, str]:
    async with app.state.database.sessionmaker() as session:
        user = await create_user(
            session,
            cluster_id="c97qk",
            email=f"{secrets.token_hex(4)}@c97qk.example",
            is_admin=is_admin,
            is_active=is_active,
        )
        if not is_active:
            user.is_active = False
        token = await create_token(session, cluster_id="c97qk", user_uuid=user.uuid)
        await session.commit()
        return user.uuid, v2_token(token)


async def seed(
    app: FastAPI,
    *,
    cluster_id: str = "qr1hi",
    user_uuid: str | None = None,
    refreshes_in: float = 3600,
    expires_in: float | None = None,
    validated_ago: float = 0,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "token_uuid": fake_uuid(cluster_id, "gj3su"),
        "user_uuid": user_uuid or fake_uuid(cluster_id, "tpzed"),
        "cluster_id": cluster_id,
        "secret_digest": secrets.token_hex(32),
        "scopes": ["all"],
        "expires_at": now + timedelta(seconds=expires_in) if expires_in is not None else None,
        "refreshes_at": now + timedelta(seconds=refreshes_in),
        "validated_at": now - timedelta(seconds=validated_ago),
        "last_used_at": now,
    }
    async with app.state.database.sessionmaker() as session:
        session.add(FederationTokenCache(**row))
        await session.commit()
    return row


async def purge_log(app: FastAPI) -> list[tuple[str, str | None]]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.scalars(select(FederationPurge).order_by(FederationPurge.id))
        return [(row.kind, row.value) for row in rows]


async def test_list_shows_exact_fields_and_states_never_a_digest(c97qk: Any) -> None:
    client, app = c97qk
    fresh = await seed(app, validated_ago=1)
    due = await seed(app, refreshes_in=-5, expires_in=3600, validated_ago=2)
    expired = await seed(app, refreshes_in=-10, expires_in=-1, validated_ago=3)
    response = await client.get(f"{API}/token_cache", headers=MANAGEMENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items_available"] == 3
    states = {item["token_uuid"]: item["state"] for item in body["items"]}
    assert states == {
        fresh["token_uuid"]: "fresh",
        due["token_uuid"]: "refresh_due",
        expired["token_uuid"]: "expired",
    }
    assert [item["token_uuid"] for item in body["items"]] == [
        fresh["token_uuid"],
        due["token_uuid"],
        expired["token_uuid"],
    ], "newest validation first"
    for item in body["items"]:
        assert set(item) == ITEM_FIELDS
    for row in (fresh, due, expired):
        assert row["secret_digest"] not in response.text
    for state, row in (("fresh", fresh), ("refresh_due", due), ("expired", expired)):
        only = await client.get(f"{API}/token_cache", params={"state": state}, headers=MANAGEMENT)
        assert [i["token_uuid"] for i in only.json()["items"]] == [row["token_uuid"]]
        assert only.json()["items_available"] == 1


async def test_filters_and_paging(c97qk: Any) -> None:
    client, app = c97qk
    user = fake_uuid("qr1hi", "tpzed")
    mine = [await seed(app, user_uuid=user, validated_ago=i) for i in range(3)]
    await seed(app, cluster_id="zzzzz")
    by_user = await client.get(f"{API}/token_cache", params={"user_uuid": user}, headers=MANAGEMENT)
    assert by_user.json()["items_available"] == 3
    assert {i["user_uuid"] for i in by_user.json()["items"]} == {user}
    by_cluster = await client.get(
        f"{API}/token_cache", params={"cluster_id": "zzzzz"}, headers=MANAGEMENT
    )
    assert [i["cluster_id"] for i in by_cluster.json()["items"]] == ["zzzzz"]
    page = await client.get(
        f"{API}/token_cache",
        params={"user_uuid": user, "limit": 1, "offset": 1},
        headers=MANAGEMENT,
    )
    assert page.json()["items_available"] == 3
    assert [i["token_uuid"] for i in page.json()["items"]] == [mine[1]["token_uuid"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "99999999999999999999"},
        {"state": "stale"},
        {"cluster_id": "QR1HI"},
        {"cluster_id": "qr1hi2"},
        {"user_uuid": "qr1hi-gj3su-000000000000000"},
        {"user_uuid": "'; drop table users; --"},
    ],
)
async def test_bad_query_parameters_are_422(c97qk: Any, params: dict[str, str]) -> None:
    client, _ = c97qk
    response = await client.get(f"{API}/token_cache", params=params, headers=MANAGEMENT)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"errors", "error_token"}


async def test_show_delete_and_404(c97qk: Any) -> None:
    client, app = c97qk
    row = await seed(app)
    uuid = row["token_uuid"]
    shown = await client.get(f"{API}/token_cache/{uuid}", headers=MANAGEMENT)
    assert shown.status_code == 200 and set(shown.json()) == ITEM_FIELDS
    assert row["secret_digest"] not in shown.text
    assert (await client.delete(f"{API}/token_cache/{uuid}", headers=MANAGEMENT)).json() == {
        "purged": 1
    }
    assert await purge_log(app) == [("token", uuid)]
    for method in ("GET", "DELETE"):
        gone = await client.request(method, f"{API}/token_cache/{uuid}", headers=MANAGEMENT)
        assert gone.status_code == 404 and set(gone.json()) == {"errors", "error_token"}
    bad = await client.get(f"{API}/token_cache/not-a-uuid", headers=MANAGEMENT)
    assert bad.status_code == 422


async def test_purge_by_cluster_user_and_all_deletes_rows_and_logs_once(c97qk: Any) -> None:
    client, app = c97qk
    user = fake_uuid("qr1hi", "tpzed")
    await seed(app, user_uuid=user)
    await seed(app, user_uuid=user)
    await seed(app)
    await seed(app, cluster_id="zzzzz")
    await seed(app, cluster_id="yyyyy")

    async def purge(body: dict[str, Any]) -> int:
        response = await client.post(f"{API}/token_cache/purge", json=body, headers=MANAGEMENT)
        assert response.status_code == 200, response.text
        return response.json()["purged"]

    assert await purge({"user_uuid": user}) == 2
    assert await purge({"cluster_id": "zzzzz"}) == 1
    assert await purge({"cluster_id": "zzzzz"}) == 0
    assert await purge({"all": True}) == 2
    assert (await client.get(f"{API}/token_cache", headers=MANAGEMENT)).json()[
        "items_available"
    ] == 0
    assert await purge_log(app) == [
        ("user", user),
        ("cluster", "zzzzz"),
        ("cluster", "zzzzz"),
        ("all", None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"all": False},
        {"all": "yes"},
        {"cluster_id": "qr1hi", "all": True},
        {"cluster_id": "qr1hi", "user_uuid": "qr1hi-tpzed-000000000000000"},
        {"cluster_id": "QR1HI"},
        {"cluster_id": 12345},
        {"user_uuid": "qr1hi-gj3su-000000000000000"},
        {"token_uuid": "qr1hi-gj3su-000000000000000"},
        [],
        "all",
    ],
)
async def test_bad_purge_bodies_are_422_and_purge_nothing(c97qk: Any, body: Any) -> None:
    client, app = c97qk
    await seed(app)
    response = await client.post(f"{API}/token_cache/purge", json=body, headers=MANAGEMENT)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"errors", "error_token"}
    assert await purge_log(app) == []
    listed = await client.get(f"{API}/token_cache", headers=MANAGEMENT)
    assert listed.json()["items_available"] == 1


async def test_purge_body_that_is_not_json_is_refused(c97qk: Any) -> None:
    client, _ = c97qk
    response = await client.post(
        f"{API}/token_cache/purge",
        content=b"all=true",
        headers={**MANAGEMENT, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422) and set(response.json()) == {"errors", "error_token"}


async def test_purge_drops_this_workers_l1_at_once(c97qk: Any, qr1hi: Cluster) -> None:
    client, app = c97qk
    _, token = await qr1hi.new_user()
    assert (await client.get("/arvados/v1/users/current", headers=auth(token))).status_code == 200
    assert len(app.state.federation.validator.cache) == 1
    uuid = parse_token(token).uuid
    response = await client.delete(f"{API}/token_cache/{uuid}", headers=MANAGEMENT)
    assert response.json() == {"purged": 1}
    # Not after a poll: the handling worker cleared its own L1 before answering.
    assert len(app.state.federation.validator.cache) == 0


async def test_remote_clusters_reports_reachability_and_counts(c97qk: Any, qr1hi: Cluster) -> None:
    client, _ = c97qk
    before = (await client.get(f"{API}/remote_clusters", headers=MANAGEMENT)).json()["items"]
    assert [(r["cluster_id"], r["host"], r["reachable"], r["cached_tokens"]) for r in before] == [
        ("qr1hi", qr1hi.host, None, 0)
    ]
    _, token = await qr1hi.new_user()
    assert (await client.get("/arvados/v1/users/current", headers=auth(token))).status_code == 200
    (after,) = (await client.get(f"{API}/remote_clusters", headers=MANAGEMENT)).json()["items"]
    assert after["reachable"] is True and after["last_success"] is not None
    assert after["circuit_state"] == "closed" and after["cached_tokens"] == 1
    assert after["last_error"] is None


# -- who may use it -------------------------------------------------------------------


def _walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves, through included routers of any depth."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from _walk(original.routes, prefix + route.include_context.prefix)
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                yield method, prefix + route.path


ADMIN_PREFIXES = (
    "/federation/v1/token_cache",
    "/federation/v1/remote_clusters",
    "/federation/admin",
)
LOGIN = "/federation/admin/login"


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = sorted({r for r in _walk(app.routes) if r[1].startswith(ADMIN_PREFIXES)})
    example = fake_uuid("qr1hi", "gj3su")
    return [(m, p.replace("{token_uuid}", example)) for m, p in routes]


async def call_as(client: httpx.AsyncClient, method: str, path: str, token: str | None) -> Any:
    headers = auth(token) if token else {}
    if path == LOGIN:  # the login form takes its credential in the form, not a header
        # Its CSRF token is bound to the nonce cookie the form's page sets.
        form = await client.get("/federation/admin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        try:
            return await client.post(path, data={"credential": token or "", "csrf": csrf[1]})
        finally:
            client.cookies.clear()
    body = {"all": True} if path.endswith("/purge") and path.startswith(API) else None
    data = {"kind": "all"} if path == "/federation/admin/purge" else None
    return await client.request(method, path, headers=headers, json=body, data=data)


async def test_every_admin_route_refuses_anyone_but_an_admin(c97qk: Any, qr1hi: Cluster) -> None:
    client, app = c97qk
    row = await seed(app)
    routes = admin_routes(app)
    assert len(routes) >= 9, routes  # 5 API routes, the page, login, logout, purge
    _, plain = await local_user(app, is_admin=False)
    _, inactive_admin = await local_user(app, is_admin=True, is_active=False)
    # An admin at qr1hi is not an admin here: qr1hi is a peer, not the login cluster.
    _, remote_admin = await qr1hi.new_user(is_admin=True)
    _, remote_plain = await qr1hi.new_user()
    refused = {
        None: 401,
        "v2/c97qk-gj3su-000000000000000/notthesecret": 401,
        "garbage token": 401,
        plain: 403,
        inactive_admin: 403,
        remote_admin: 403,
        remote_plain: 403,
    }
    for method, path in routes:
        for token, status in refused.items():
            response = await call_as(client, method, path, token)
            assert response.status_code == status, (method, path, token, response.text)
            assert "clusterfed_admin" not in response.headers.get("set-cookie", "")
    # Nothing was purged by any of them.
    assert await purge_log(app) == []
    shown = await client.get(f"{API}/token_cache/{row['token_uuid']}", headers=MANAGEMENT)
    assert shown.status_code == 200


async def test_admins_are_let_in(c97qk: Any, qr1hi: Cluster) -> None:
    client, app = c97qk
    _, admin = await local_user(app, is_admin=True)
    for token in (admin, MANAGEMENT_TOKEN):
        for path in (f"{API}/token_cache", f"{API}/remote_clusters", "/federation/admin"):
            response = await client.get(path, headers=auth(token))
            assert response.status_code == 200, (path, response.text)
        purge = await client.post(
            f"{API}/token_cache/purge", json={"all": True}, headers=auth(token)
        )
        assert purge.status_code == 200


async def test_an_admin_of_the_login_cluster_is_admin(
    qr1hi: Cluster, session_databases: DatabaseFactory
) -> None:
    app = _app(qr1hi, session_databases, LoginCluster="qr1hi")
    _, remote_admin = await qr1hi.new_user(is_admin=True)
    _, remote_plain = await qr1hi.new_user()
    async for client in asgi_client(app):
        ok = await client.get(f"{API}/token_cache", headers=auth(remote_admin))
        assert ok.status_code == 200, ok.text
        assert ok.json()["items_available"] == 1  # its own token, cached by that request
        refused = await client.get(f"{API}/token_cache", headers=auth(remote_plain))
        assert refused.status_code == 403


async def test_a_page_session_of_a_login_cluster_admin_ends_with_its_cache_entry(
    qr1hi: Cluster, session_databases: DatabaseFactory
) -> None:
    # The session holds no secret, so it cannot ask the login cluster again: it lasts
    # while the token's cache entry is fresh, and a purge (or a revocation) ends it.
    app = _app(qr1hi, session_databases, LoginCluster="qr1hi")
    _, remote_admin = await qr1hi.new_user(is_admin=True)
    async for client in asgi_client(app):
        form = await client.get("/federation/admin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        login = await client.post(LOGIN, data={"credential": remote_admin, "csrf": csrf[1]})
        assert login.status_code == 303, login.text
        assert remote_admin.rsplit("/", 1)[-1] not in client.cookies["clusterfed_admin"]
        assert (await client.get("/federation/admin")).status_code == 200
        token_uuid = parse_token(remote_admin).uuid
        purged = await client.delete(f"{API}/token_cache/{token_uuid}", headers=MANAGEMENT)
        assert purged.status_code == 200, purged.text
        assert (await client.get("/federation/admin")).status_code == 401
