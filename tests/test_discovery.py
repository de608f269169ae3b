"""The discovery document: what it promises, and that googleapiclient can build from it."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import httplib2
import httpx
import pytest
from clusterfed import FederatedRouter, Federation, FederationMiddleware
from clusterfed.routing.lists import ROUTING_PARAMS
from clusterfed.server.app import create_app
from clusterfed.server.ops import discovery
from clusterfed.server.testing import local_config
from clusterfed.server.users.service import users_table
from clusterfed.storage.database import Database
from clusterfed.storage.store import SqlFederationStore
from fastapi import APIRouter, FastAPI, Query
from googleapiclient.discovery import build_from_document

CONFIG = local_config("qr1hi", "sqlite+aiosqlite:///unused.db")


def partial_app() -> FastAPI:
    """Serves only a collection get and a list that reads filters and limit."""
    objects = APIRouter(prefix="/arvados/v1/collections")

    @objects.get("")
    async def list_collections(
        filters: Annotated[str | None, Query()] = None,
        limit: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        return {}

    @objects.get("/{uuid}")
    async def get_collection(uuid: str) -> dict[str, Any]:
        return {}

    app = FastAPI()
    app.state.config = CONFIG
    app.include_router(discovery.router)
    app.include_router(objects)
    return app


async def fetch(app: FastAPI, base_url: str, **headers: str) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        response = await client.get(discovery.DISCOVERY_PATH, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_only_served_methods_and_parameters_are_described() -> None:
    doc = await fetch(partial_app(), "http://testserver")
    assert list(doc["resources"]) == ["collections"]
    methods = doc["resources"]["collections"]["methods"]
    assert sorted(methods) == ["get", "list"]
    assert sorted(methods["list"]["parameters"]) == ["filters", "limit"]
    assert methods["get"]["path"] == "collections/{uuid}"
    assert methods["get"]["parameters"]["uuid"]["location"] == "path"
    assert sorted(doc["schemas"]) == ["Collection", "CollectionList"]


@pytest.mark.parametrize("base_url", ["https://api.example.org:8443", "http://127.0.0.1:8000"])
async def test_root_url_is_where_the_client_called(base_url: str) -> None:
    doc = await fetch(partial_app(), base_url, authorization="Bearer anything")
    assert doc["rootUrl"] == f"{base_url}/"
    assert doc["servicePath"] == "arvados/v1/"
    assert doc["uuidPrefix"] == "qr1hi"


def full_document(app: FastAPI) -> dict[str, Any]:
    with warnings.catch_warnings():
        # FastAPI warns about PUT and PATCH sharing one handler; not this test's business.
        warnings.simplefilter("ignore", UserWarning)
        openapi = app.openapi()
    return discovery.discovery_document(
        cluster_id="qr1hi",
        root_url="https://qr1hi.example/",
        openapi=openapi,
        routed=discovery.routed_resources(app),
    )


def test_googleapiclient_builds_the_full_server_document() -> None:
    doc = full_document(create_app(CONFIG))
    client = build_from_document(doc, http=httplib2.Http())
    request = client.collections().list(filters='[["name","=","x"]]', limit=5)
    assert request.uri.startswith("https://qr1hi.example/arvados/v1/collections?")
    assert request.method == "GET"
    update = client.collections().update(uuid="qr1hi-4zz18-000000000000000", body={})
    assert (update.method, update.uri.split("?")[0]) == (
        "PUT",
        "https://qr1hi.example/arvados/v1/collections/qr1hi-4zz18-000000000000000",
    )
    assert client.users().current().method == "GET"
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        client.collections().list(no_such_parameter=1)


async def test_the_middleware_lets_the_document_through() -> None:
    # Never started: these credentials are refused before the store or a remote is used.
    federation = Federation(CONFIG, SqlFederationStore(Database(CONFIG.database_url), users_table))
    app = partial_app()
    app.add_middleware(FederationMiddleware, federation=federation)
    refused_elsewhere = [
        f"v2/zzzzz-gj3su-{'0' * 15}/{'x' * 50}",  # an issuer not in RemoteClusters
        "v2/zzzzz-gj3su-short/secret",  # malformed
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for token in refused_elsewhere:
            headers = {"Authorization": f"Bearer {token}"}
            listed = await client.get("/arvados/v1/collections", headers=headers)
            assert listed.status_code == 401, listed.text
            document = await client.get(discovery.DISCOVERY_PATH, headers=headers)
            assert document.status_code == 200, document.text
            assert document.json()["uuidPrefix"] == "qr1hi"


def test_the_routers_parameters_are_described_where_it_is_mounted() -> None:
    # Everything the router reads from a list's query, and nothing else, is described.
    assert set(discovery.ROUTER_PARAMETERS["list"]) == ROUTING_PARAMS
    doc = full_document(create_app(CONFIG))
    resources = doc["resources"]
    for name in ("collections", "groups", "links"):
        methods = resources[name]["methods"]
        listing = methods["list"]["parameters"]
        assert {"cluster_id", "federated", "next_page"} <= set(listing), name
        assert listing["federated"]["type"] == "boolean"
        assert "cluster_id" in methods["create"]["parameters"], name
        # The host serves this one: it shows up because the create route reads it.
        assert methods["create"]["parameters"]["ensure_unique_name"]["type"] == "boolean"
        assert "cluster_id" not in methods["update"]["parameters"], name
        schema = name.removesuffix("s").capitalize()
        assert doc["schemas"][f"{schema}List"]["properties"]["next_page"] == {"type": "string"}
    # users are not routed: their list stays the host's alone.
    for method in resources["users"]["methods"].values():
        assert not set(method["parameters"]) & ROUTING_PARAMS
    assert "next_page" not in doc["schemas"]["UserList"]["properties"]

    client = build_from_document(doc, http=httplib2.Http())
    request = client.collections().list(federated=True, next_page="abc", cluster_id="c97qk")
    assert "federated=true" in request.uri and "next_page=abc" in request.uri
    assert "cluster_id=c97qk" in request.uri
    created = client.groups().create(cluster_id="c97qk", body={"group": {}})
    assert created.uri.endswith("/arvados/v1/groups?cluster_id=c97qk&alt=json")


async def test_without_the_router_its_parameters_are_not_described() -> None:
    doc = await fetch(partial_app(), "http://testserver")
    assert sorted(doc["resources"]["collections"]["methods"]["list"]["parameters"]) == [
        "filters",
        "limit",
    ]
    assert "next_page" not in doc["schemas"]["CollectionList"]["properties"]


async def test_only_the_resources_the_router_serves_get_its_parameters() -> None:
    # Never started: the router only reads the federation's configuration when built.
    federation = Federation(CONFIG, SqlFederationStore(Database(CONFIG.database_url), users_table))
    app = partial_app()
    app.add_middleware(FederatedRouter, federation=federation, resources=("groups",))
    assert discovery.routed_resources(app) == {"groups"}
    doc = await fetch(app, "http://testserver")
    assert "federated" not in doc["resources"]["collections"]["methods"]["list"]["parameters"]

    app = partial_app()
    app.add_middleware(FederatedRouter, federation=federation)
    doc = await fetch(app, "http://testserver")
    listing = doc["resources"]["collections"]["methods"]["list"]["parameters"]
    assert sorted(listing) == ["cluster_id", "federated", "filters", "limit", "next_page"]
