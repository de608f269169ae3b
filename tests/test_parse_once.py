"""A request's parameters are parsed once, before anything reads them, and every later
reader (the router, the local part of a fan-out, the login router) uses that parse; the
Arvados request shapes still arrive as one. In process, on both backends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from clusterfed import params
from clusterfed.config import parse_config
from clusterfed.params import PARAMS_KEY, RequestParams, query_items
from clusterfed.server.app import create_app
from clusterfed.server.testing import Cluster, cluster_config, remote_entry

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

FORM = "application/x-www-form-urlencoded"
COLLECTIONS = "/arvados/v1/collections"


@pytest.fixture
async def api(databases: DatabaseFactory) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    url = databases.new_url("home")
    # A Proxy remote that nothing answers: a federated list here is a fan-out.
    remotes = {"c97qk": remote_entry(1, Proxy=True)}
    app = create_app(parse_config(cluster_config("qr1hi", url, remotes=remotes)))
    async with asgi_client(app) as client:
        _, token = await Cluster("qr1hi", 0, url).new_user()
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, token


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every query string and form body clusterfed parses, in order."""
    seen: list[bytes] = []
    original = params.parse_query

    def counting(raw: bytes, **kwargs: Any) -> list[tuple[str, str]]:
        seen.append(raw)
        return original(raw, **kwargs)

    original_form = params.decode_form

    def counting_form(body: bytes) -> list[tuple[str, str]]:
        seen.append(body)
        return original_form(body)

    monkeypatch.setattr(params, "decode_form", counting_form)
    monkeypatch.setattr(params, "parse_query", counting)
    monkeypatch.setattr("clusterfed.wire.parse_query", counting)
    monkeypatch.setattr("clusterfed.routing.inprocess.parse_query", counting)
    return seen


async def test_a_list_is_parsed_once(api: tuple[httpx.AsyncClient, str], parses: list) -> None:
    client, _ = api
    query = {"filters": json.dumps([["name", "=", "x"]]), "limit": "5", "cluster_id": ""}
    response = await client.get(COLLECTIONS, params=query)
    assert response.status_code == 200, response.text
    assert len(parses) == 1


async def test_a_get_sent_as_a_form_is_parsed_once(
    api: tuple[httpx.AsyncClient, str], parses: list
) -> None:
    client, _ = api
    body = urlencode({"filters": json.dumps([["name", "=", "x"]]), "limit": "5"})
    for headers, content in (
        ({"X-Http-Method-Override": "GET"}, body),
        ({}, body + "&_method=GET"),
    ):
        parses.clear()
        response = await client.post(
            COLLECTIONS, content=content, headers={"Content-Type": FORM, **headers}
        )
        assert response.status_code == 200, response.text
        assert response.json()["limit"] == 5
        assert len(parses) == 1, parses


async def test_a_federated_list_is_parsed_once(
    api: tuple[httpx.AsyncClient, str], parses: list
) -> None:
    # The remote cannot be reached (a 502), but only after the local part was served:
    # the router and the host's local part read the one parse.
    client, _ = api
    response = await client.get(COLLECTIONS, params={"federated": "true", "limit": "5"})
    assert response.status_code == 502, response.text
    assert len(parses) == 1, parses


async def test_a_form_create_arrives_as_json(api: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = api
    body = urlencode({"cluster_id": "", "collection": json.dumps({"name": "from a form"})})
    response = await client.post(COLLECTIONS, content=body, headers={"Content-Type": FORM})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "from a form"


def test_query_items_reads_the_parse_of_its_own_query_string_only() -> None:
    parsed = RequestParams([("limit", "5")], b"limit=5")
    scope = {"query_string": parsed.query_string, PARAMS_KEY: parsed}
    assert query_items(scope) is parsed.query
    # A scope whose query string was replaced since is parsed anew.
    assert query_items({**scope, "query_string": b"limit=7"}) == [("limit", "7")]
    with pytest.raises(params.TooLarge):
        query_items({"query_string": b"&".join([b"a=1"] * (params.MAX_FIELDS + 1))})


async def test_a_body_the_host_reads_itself_is_capped_while_streamed(
    api: tuple[httpx.AsyncClient, str],
) -> None:
    # A typed route (not /arvados/v1/) reads its body itself: past the cap, 413 with the
    # error body, and the rest is not read.
    client, _ = api
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(4 * params.MAX_BODY_BYTES // 65536):
            read += 65536
            yield b" " * 65536

    headers = {"Content-Type": "application/json"}
    response = await client.post(
        "/federation/v1/permission_checks", content=body(), headers=headers
    )
    assert response.status_code == 413, response.text
    assert set(response.json()) == {"errors", "error_token"}
    assert read <= params.MAX_BODY_BYTES + 2 * 65536


@pytest.mark.parametrize(
    "document",
    [{"name": "bare"}, {"collection": {"name": "wrapped"}}, {"collection": {}, "cluster_id": ""}],
    ids=["bare", "wrapped", "with-parameters"],
)
async def test_a_json_create_is_parsed_once_by_clusterfed(
    api: tuple[httpx.AsyncClient, str], monkeypatch: pytest.MonkeyPatch, document: Any
) -> None:
    loads: list[bytes] = []
    original = params.load_document

    def counting(body: bytes) -> Any:
        loads.append(body)
        return original(body)

    monkeypatch.setattr(params, "load_document", counting)
    monkeypatch.setattr("clusterfed.wire.load_document", counting)
    client, _ = api
    response = await client.post(COLLECTIONS, json=document)
    assert response.status_code == 200, response.text
    assert len(loads) == 1  # the router's look for cluster_id and owner_uuid reads it


async def test_a_json_object_of_too_many_keys_is_refused(
    api: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = api
    document = {f"k{index}": index for index in range(params.MAX_FIELDS + 1)}
    response = await client.post(COLLECTIONS, json=document)
    assert response.status_code == 413, response.text
    assert "parameters" in response.json()["errors"][0]


async def test_a_body_the_router_reads_itself_is_refused_past_its_cap() -> None:
    # Behind a host without the parse layer, the router reads a create's body itself: past
    # its cap it stops reading and answers the same 413 as the parse layer.
    from clusterfed.routing.inprocess import read_body

    chunks = iter([b"x" * 10] * 5)
    read: list[bytes] = []

    async def receive() -> dict[str, Any]:
        read.append(next(chunks))
        return {"type": "http.request", "body": read[-1], "more_body": True}

    with pytest.raises(params.TooLarge) as refused:
        await read_body(receive, limit=25)
    assert refused.value.status_code == 413
    assert str(refused.value) == "request body is larger than 25 bytes"
    assert len(read) == 3  # the rest is never read
