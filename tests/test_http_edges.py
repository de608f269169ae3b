"""HTTP edges on both backends: trailing slashes, HEAD, and a database that went away.

Each was a wrong answer once: a trailing-slash redirect whose Location echoed the Host
header, 405 for HEAD on GET endpoints, a federated list with a trailing slash answering
307 without a Location (merged) or 502 (split), and 500s while PostgreSQL restarted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from clusterfed.config import parse_config
from clusterfed.server.app import create_app
from clusterfed.server.objects.names import turn_key
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    ServerThread,
    cluster_config,
    free_port,
    remote_entry,
)
from clusterfed.storage.db import create_engine
from sqlalchemy import func, select, text

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

COLLECTIONS = "/arvados/v1/collections"


@dataclass
class Site:
    app: object
    client: httpx.AsyncClient
    token: str
    database_url: str


@pytest.fixture
async def site(databases: DatabaseFactory) -> AsyncIterator[Site]:
    url = databases.new_url("edges")
    remotes = {"zdown": remote_entry(free_port())}  # listed, nothing listens
    app = create_app(parse_config(cluster_config("qr1hi", url, remotes=remotes)))
    async with asgi_client(app) as client:
        _, token = await Cluster("qr1hi", 0, url).new_user()
        yield Site(app, client, token, url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_trailing_slash_is_served_not_redirected(site: Site) -> None:
    # (The Host header a redirect used to echo: test_hostile_input.)
    for path in ("/federation/admin/", "/federation/admin//", f"{COLLECTIONS}/"):
        response = await site.client.get(path, headers=bearer(site.token))
        assert "location" not in response.headers, (path, response.headers)
        assert response.status_code in (200, 403), (path, response.status_code)
    listed = await site.client.get(f"{COLLECTIONS}/", headers=bearer(site.token))
    assert listed.status_code == 200 and listed.json()["kind"] == "arvados#collectionList"


async def test_head_answers_as_get_without_a_body(site: Site) -> None:
    for path, token in (
        ("/arvados/v1/users/current", site.token),
        (COLLECTIONS, site.token),
        ("/_health/ping", MANAGEMENT_TOKEN),
        ("/discovery/v1/apis/arvados/v1/rest", site.token),
    ):
        get = await site.client.get(path, headers=bearer(token))
        head = await site.client.head(path, headers=bearer(token))
        assert head.status_code == get.status_code == 200, (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
    refused = await site.client.head("/arvados/v1/users/current")
    assert refused.status_code == 401 and refused.content == b""


@pytest.mark.parametrize("who", ["local token", "foreign token"])
async def test_database_unreachable_is_503_with_retry_after(
    site: Site, databases: DatabaseFactory, who: str
) -> None:
    database = site.app.state.database  # type: ignore[attr-defined]
    await database.dispose()
    if databases.backend == "postgresql":
        database.url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    else:
        database.url = "sqlite+aiosqlite:////proc/clusterfed-nowhere.db"
    await database.start()
    token = site.token if who == "local token" else f"v2/zdown-gj3su-000000000000001/{'s' * 40}x"
    # As uvicorn does: the answer goes out, then the exception is logged (not raised here).
    transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/arvados/v1/users/current", headers=bearer(token))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert set(body) == {"errors", "error_token"} and "database" in body["errors"][0]


@pytest.mark.parametrize("backend", ["postgresql"])  # pg_terminate_backend is PostgreSQL's
async def test_a_connection_cut_mid_request_is_503(site: Site, databases: DatabaseFactory) -> None:
    # What a PostgreSQL restart does to requests in flight: their backend is terminated.
    # A renaming create waits on an advisory lock the test holds, so its backend can be
    # found and cut while the request is inside the database.
    me = await site.client.get("/arvados/v1/users/current", headers=bearer(site.token))
    key = turn_key("collections", me.json()["uuid"], "held")
    transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)  # type: ignore[arg-type]
    engine = create_engine(site.database_url)
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
            engine.connect() as holder,
        ):
            await holder.execute(select(func.pg_advisory_lock(key)))
            create = asyncio.create_task(
                client.post(
                    COLLECTIONS,
                    params={"ensure_unique_name": "true"},
                    json={"name": "held"},
                    headers=bearer(site.token),
                )
            )
            waiting: list[int] = []
            for _ in range(200):
                waiting = list(
                    await holder.scalars(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'advisory' "
                            "AND datname = current_database()"
                        )
                    )
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the create never waited on the lock"
            await holder.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": waiting[0]})
            response = await create
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert set(response.json()) == {"errors", "error_token"}
            await holder.execute(select(func.pg_advisory_unlock(key)))
            # The pool replaces the dead connection: the next request works.
            again = await client.get("/arvados/v1/users/current", headers=bearer(site.token))
            assert again.status_code == 200, again.text
    finally:
        await engine.dispose()


# --- lists across clusters with a trailing slash: two real servers ----------------------


@dataclass
class Mesh:
    qr1hi: Cluster
    c97qk: Cluster


@pytest.fixture
def mesh(databases: DatabaseFactory) -> Iterator[Mesh]:
    ports = {"qr1hi": free_port(), "c97qk": free_port()}
    urls = {cid: databases.new_url(cid) for cid in ports}
    servers = []
    for cid, other in (("qr1hi", "c97qk"), ("c97qk", "qr1hi")):
        remotes = {other: remote_entry(ports[other], Proxy=True, ActivateUsers=True)}
        app = create_app(parse_config(cluster_config(cid, urls[cid], remotes=remotes)))
        servers.append(ServerThread(app, port=ports[cid]).start())
    try:
        yield Mesh(*(Cluster(cid, ports[cid], urls[cid]) for cid in ("qr1hi", "c97qk")))
    finally:
        for server in servers:
            server.stop()


async def test_lists_with_a_trailing_slash_across_clusters(mesh: Mesh) -> None:
    _, token = await mesh.qr1hi.new_user()
    base = mesh.qr1hi.base_url
    async with httpx.AsyncClient(base_url=base, headers=bearer(token), timeout=30) as client:
        here = await client.post(COLLECTIONS, json={"name": "here"})
        there = await client.post(COLLECTIONS, params={"cluster_id": "c97qk"}, json={"name": "x"})
        assert here.status_code == there.status_code == 200, (here.text, there.text)
        uuids = sorted([here.json()["uuid"], there.json()["uuid"]])
        merged = await client.get(f"{COLLECTIONS}/", params={"federated": "true"})
        assert merged.status_code == 200, merged.text
        assert uuids == sorted(item["uuid"] for item in merged.json()["items"])
        split_filter = json.dumps([["uuid", "in", uuids]])
        split = await client.get(f"{COLLECTIONS}/", params={"filters": split_filter})
        assert split.status_code == 200, split.text
        assert uuids == sorted(item["uuid"] for item in split.json()["items"])
        remote = await client.get(f"{COLLECTIONS}/", params={"cluster_id": "c97qk"})
        assert remote.status_code == 200, remote.text
        assert [item["uuid"] for item in remote.json()["items"]] == [there.json()["uuid"]]
