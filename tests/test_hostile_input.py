"""Hostile client input, in process on both backends: always a 4xx with the SPEC body.

Each case was a 500 once: nesting deep enough to exhaust the recursion limit, integers and
timestamps past what the database or ``datetime`` can hold, strings no store can encode
(lone surrogates; NUL on PostgreSQL), and bodies larger than anyone should make us read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from clusterfed.admin.page import MAX_FORM_BYTES, PAGE
from clusterfed.config import parse_config
from clusterfed.params import MAX_BODY_BYTES
from clusterfed.server.app import create_app
from clusterfed.server.body_limit import MAX_REQUEST_BYTES
from clusterfed.server.testing import Cluster, cluster_config, remote_entry

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

NESTED = "[" * 1100 + "]" * 1100
SURROGATE = "\ud800"
NUL = "\x00"


class Client:
    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: str) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def post(self, path: str, content: Any, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, "Content-Type": "application/json"}
        return await self.client.post(path, content=content, headers=headers, **kwargs)


# One app per backend for the whole file (each test only sends it something hostile and
# reads the refusal): its fixtures and tests share the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(session_databases: DatabaseFactory) -> AsyncIterator[Client]:
    url = session_databases.new_url("home")
    app = create_app(parse_config(cluster_config("qr1hi", url)))
    async with asgi_client(app) as client:
        _, token = await Cluster("qr1hi", 0, url).new_user()
        yield Client(client, token)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def routed(session_databases: DatabaseFactory) -> AsyncIterator[tuple[Any, str]]:
    """The app of a cluster with a remote (nothing listens there), and a user's token."""
    url = session_databases.new_url("router")
    remotes = {"c97qk": remote_entry(1, Proxy=True)}
    app = create_app(parse_config(cluster_config("qr1hi", url, remotes=remotes)))
    async with asgi_client(app):
        _, token = await Cluster("qr1hi", 0, url).new_user()
        yield app, token


async def raw_get(
    app: Any, path: str, query: bytes, token: str, *, method: str = "GET"
) -> httpx.Response:
    """A request with ``query`` exactly as sent (``curl -g``): httpx would refuse to build it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    started: dict[str, Any] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    headers = [(key.decode(), value.decode()) for key, value in started["headers"]]
    return httpx.Response(started["status"], headers=headers, content=bytes(body))


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"}, body
    assert isinstance(body["errors"][0], str) and body["errors"][0] and body["error_token"]


def raw_json(document: Any) -> bytes:
    # ensure_ascii keeps a lone surrogate as the \ud800 escape a hostile client would send.
    return json.dumps(document).encode()


@pytest.mark.parametrize("name", ["filters", "order"])
@pytest.mark.parametrize("federated", ["false", "true"])
async def test_deeply_nested_list_parameters(api: Client, name: str, federated: str) -> None:
    response = await api.get("/arvados/v1/collections", **{name: NESTED, "federated": federated})
    assert_error(response, 422)


async def test_deeply_nested_cursor(api: Client) -> None:
    cursor = base64.urlsafe_b64encode(NESTED.encode()).rstrip(b"=").decode()
    response = await api.get("/arvados/v1/collections", federated="true", next_page=cursor)
    assert_error(response, 422)


async def test_deeply_nested_bodies(api: Client) -> None:
    # The router reads create bodies itself; the host's typed routes parse their own.
    assert_error(await api.post("/arvados/v1/collections", NESTED), 400)
    assert_error(await api.post("/federation/v1/permission_checks", NESTED), 400)
    nested_property = '{"properties": {"a": ' + NESTED + "}}"
    assert_error(await api.post("/arvados/v1/collections", nested_property), 400)


async def test_moderately_nested_properties_are_refused_before_storing(api: Client) -> None:
    # Parses, but deep enough to fail later in a deeper stack (serializing, listing).
    deep = "[" * 500 + "]" * 500
    response = await api.post("/arvados/v1/collections", '{"properties": {"a": ' + deep + "}}")
    assert_error(response, 422)


@pytest.mark.parametrize("offset", [str(2**63), str(10**30)])
async def test_huge_offset(api: Client, offset: str) -> None:
    assert_error(await api.get("/arvados/v1/collections", offset=offset), 422)


@pytest.mark.parametrize("moment", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:30:00+14:00"])
async def test_timestamp_past_datetime_range(api: Client, moment: str) -> None:
    filters = json.dumps([["created_at", ">", moment]])
    assert_error(await api.get("/arvados/v1/collections", filters=filters), 422)


@pytest.mark.parametrize("text", [SURROGATE, NUL])
async def test_unstorable_text_in_filters(api: Client, text: str) -> None:
    for filters in ([["name", "=", text]], [["name", "in", ["a", text]]], [[text, "=", "a"]]):
        response = await api.get("/arvados/v1/collections", filters=json.dumps(filters))
        assert_error(response, 422)


@pytest.mark.parametrize("text", [SURROGATE, NUL])
@pytest.mark.parametrize(
    ("resource", "body"),
    [
        ("collections", {"manifest_text": "{}"}),
        ("collections", {"name": "{}"}),
        ("collections", {"description": "{}"}),
        ("collections", {"portable_data_hash": "{}"}),
        ("collections", {"properties": {"{}": 1}}),
        ("collections", {"properties": {"a": ["ok", {"b": "{}"}]}}),
        ("groups", {"name": "{}", "group_class": "project"}),
    ],
)
async def test_unstorable_text_in_objects(
    api: Client, text: str, resource: str, body: dict[str, Any]
) -> None:
    hostile = json.loads(json.dumps(body).replace("{}", json.dumps(text)[1:-1]))
    response = await api.post(f"/arvados/v1/{resource}", raw_json(hostile))
    assert_error(response, 422)


async def test_manifest_of_reasonable_size_is_accepted(api: Client) -> None:
    # Some 14,000 files: as large as a body on an API path may be (the cap), and no larger.
    line = ". d41d8cd98f00b204e9800998ecf8427e+0 " + "0:0:f{:06d}.txt " * 1 + "\n"
    manifest = "".join(line.format(i).replace(". ", f"./d{i} ", 1) for i in range(14_000))
    body = raw_json({"manifest_text": manifest})
    assert 800_000 < len(body) <= MAX_BODY_BYTES
    response = await api.post("/arvados/v1/collections", body)
    assert response.status_code == 200, response.text[:500]
    larger = raw_json({"manifest_text": manifest + manifest[: MAX_BODY_BYTES // 4]})
    assert_error(await api.post("/arvados/v1/collections", larger), 413)


async def _chunks(total: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
@pytest.mark.parametrize("path", ["/arvados/v1/collections", "/federation/v1/permission_checks"])
async def test_oversized_json_bodies(api: Client, path: str, declared: bool) -> None:
    size = MAX_REQUEST_BYTES + 1
    content: Any = b" " * size if declared else _chunks(size)
    assert_error(await api.post(path, content), 413)


async def test_oversized_body_is_refused_before_authentication(api: Client) -> None:
    response = await api.client.post(
        "/arvados/v1/collections", content=_chunks(MAX_REQUEST_BYTES + 1)
    )
    assert_error(response, 413)


async def test_oversized_admin_form_is_not_read_to_the_end(api: Client) -> None:
    # The login form needs no credential: reading stops at the cap, not at the body's end.
    chunk, read = 4096, 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(MAX_REQUEST_BYTES // chunk):
            read += chunk
            yield b"a" * chunk

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await api.client.post(f"{PAGE}/login", content=body(), headers=headers)
    assert response.status_code == 413, response.text
    assert read <= MAX_FORM_BYTES + 2 * chunk


REMOTE_COLLECTION = "c97qk-4zz18-000000000000001"
QUOTES = b'"' * 30_000  # 30,000 raw quotes, 90,000 characters re-encoded
MANY_UUIDS = json.dumps(
    [["uuid", "in", [f"c97qk-4zz18-{index:015d}" for index in range(2164)]]]
).encode()


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        (f"/arvados/v1/collections/{REMOTE_COLLECTION}", b"select=" + QUOTES, 502),
        ("/arvados/v1/collections", b"cluster_id=c97qk&filters=" + QUOTES, 502),
        ("/arvados/v1/collections", b"filters=" + MANY_UUIDS, 502),
        # The local part of the fan-out judges the select first.
        ("/arvados/v1/collections", b"federated=true&select=" + QUOTES, 422),
    ],
    ids=["object", "cluster_id", "uuid-in", "federated"],
)
async def test_a_long_get_goes_to_the_remote_in_a_form_body(
    routed: tuple[Any, str], path: str, query: bytes, status: int
) -> None:
    # Too long for a URL once re-encoded (httpx.InvalidURL, once a 500): sent as Arvados's
    # client sends a long GET, a POST with the override and a form body. Nothing listens
    # at the remote's port, so the answer is the fail-closed 502, never a 500.
    app, token = routed
    response = await raw_get(app, path, query, token)
    assert_error(response, status)


async def test_query_too_long_to_forward(routed: tuple[Any, str]) -> None:
    # A request that is not a GET keeps its query in the URL: one too long to send is a
    # 4xx that says so, decided before any connection.
    app, token = routed
    path = f"/arvados/v1/collections/{REMOTE_COLLECTION}"
    response = await raw_get(app, path, b"select=" + QUOTES, token, method="DELETE")
    assert_error(response, 414)
    assert "c97qk" in response.json()["errors"][0] and "65536" in response.json()["errors"][0]


@pytest.mark.parametrize(
    "path", ["/federation/admin/", "/arvados/v1/collections/", "/_health/ping/"]
)
async def test_host_header_is_never_reflected(api: Client, path: str) -> None:
    # A trailing-slash redirect built its Location from Host: an open redirect, and a
    # poisoned link for any cache in front.
    headers = {**api.headers, "Host": "evil.example"}
    response = await api.client.get(path, headers=headers)
    assert "evil.example" not in response.headers.get("location", "")
    assert "evil.example" not in response.text
    assert response.status_code < 500
