"""The discovery document: what it promises, and that googleapiclient can build from it."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import httplib2
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from googleapiclient.discovery import build_from_document

from app.cluster.app import create_app
from app.cluster.routers import discovery
from app.federation.middleware import PUBLIC_PATHS
from tests.support.servers import local_config

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


def test_googleapiclient_builds_the_full_server_document() -> None:
    app = create_app(CONFIG)
    with warnings.catch_warnings():
        # FastAPI warns about PUT and PATCH sharing one handler; not this test's business.
        warnings.simplefilter("ignore", UserWarning)
        openapi = app.openapi()
    doc = discovery.discovery_document(
        cluster_id="qr1hi", root_url="https://qr1hi.example/", openapi=openapi
    )
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


def test_the_middleware_lets_the_document_through() -> None:
    assert discovery.DISCOVERY_PATH in PUBLIC_PATHS
