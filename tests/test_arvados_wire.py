"""Requests exactly as Arvados software builds them (SPEC 3.6), on two real clusters.

Each shape is built here the way the Arvados Go code builds it, and each test names the
function it comes from:

- ``lib/controller/rpc/conn.go`` ``(*Conn).requestAndDecode`` marshals the options
  struct (``arvados.CreateOptions``, ``UpdateOptions``, ``ListOptions``, ``GetOptions``)
  to JSON, renames ``attrs`` to the resource's key (``collection``), and sends
  ``Authorization: Bearer -`` when it has no token;
- ``sdk/go/arvados/client.go`` ``anythingToValues`` turns that into form values: strings
  as they are, numbers as text, ``true`` as "true", false and null left out, anything
  else compact JSON; ``RequestAndDecodeContext`` puts them in the query of a GET under
  1000 bytes, else in an ``application/x-www-form-urlencoded`` body, a long GET becoming
  ``POST`` with ``X-Http-Method-Override: GET``;
- ``lib/controller/federation/conn.go`` ``New`` adds ``Via: HTTP/1.1 arvados-controller``
  to every call to a peer; fan-outs (``list.go``, ``CollectionGet`` by PDH) add
  ``forwarded_for=<cluster>-``.

qr1hi is c97qk's Proxy remote; requests are sent to c97qk.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from clusterfed.routing.manifests import portable_data_hash
from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    ServerThread,
    cluster_config,
    local_config,
    remote_entry,
    running_together,
)

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import wait_for_log

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

COLLECTIONS = "/arvados/v1/collections"
FORM = "application/x-www-form-urlencoded"
CONTROLLER_VIA = "HTTP/1.1 arvados-controller"
MANIFEST = ". 37b51d194a7513e45b56f6524f2d51f2+3 0:3:bar.txt\n"


@dataclass
class Pair:
    qr1hi: Cluster
    c97qk: Cluster
    qr1hi_process: ClusterProcess


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir: Path = tmp_path_factory.mktemp("wire")
    home = ClusterProcess(cluster_config("qr1hi", session_databases.new_url("qr1hi")), workdir)
    config = cluster_config(
        "c97qk",
        session_databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(home.port, Proxy=True, ActivateUsers=True)},
    )
    # Both start at once: neither needs the other up to start.
    with running_together(home, ClusterProcess(config, workdir)) as (qr1hi, c97qk):
        yield Pair(qr1hi, c97qk, home)


def go_values(options: dict[str, Any]) -> str:
    """``anythingToValues`` then ``url.Values.Encode`` (keys sorted), as client.go does."""
    values: dict[str, str] = {}
    for key, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            values[key] = "true"
        elif isinstance(value, str):
            values[key] = value
        elif isinstance(value, int):
            values[key] = str(value)
        else:
            values[key] = json.dumps(value, separators=(",", ":"))
    return urlencode(sorted(values.items()))


def create_options(attrs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``arvados.CreateOptions`` as requestAndDecode sends it (attrs renamed)."""
    return {
        "cluster_id": "",
        "ensure_unique_name": False,
        "select": None,
        "collection": attrs,
        "replace_files": None,
        "replace_segments": None,
        **extra,
    }


def list_options(filters: list[Any], **extra: Any) -> dict[str, Any]:
    """``arvados.ListOptions`` with its zero values, as a controller forwards a list."""
    return {
        "cluster_id": "",
        "select": None,
        "filters": filters,
        "where": None,
        "limit": 100,
        "offset": 0,
        "order": None,
        "distinct": False,
        "count": "",
        "include_trash": False,
        "include_old_versions": False,
        "bypass_federation": False,
        "include": None,
        **extra,
    }


def go_request(
    cluster: Cluster,
    method: str,
    path: str,
    token: str | None,
    options: dict[str, Any],
    *,
    via: bool = True,
) -> httpx.Response:
    """``RequestAndDecodeContext``: the query for a short GET, else a form body."""
    values = go_values(options)
    headers = {
        "Authorization": f"Bearer {token or '-'}",
        "Content-Type": FORM,
        "X-Request-Id": f"req-{secrets.token_hex(10)}",
    }
    if via:
        headers["Via"] = CONTROLLER_VIA
    url = f"{cluster.base_url}{path}"
    if method in ("GET", "HEAD") and len(values) < 1000:
        return httpx.request(method, f"{url}?{values}", headers=headers, timeout=30)
    if method in ("GET", "HEAD"):
        headers["X-Http-Method-Override"] = method
        method = "POST"
    return httpx.request(method, url, content=values, headers=headers, timeout=30)


def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, timeout=30, **kwargs)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"}, body
    assert all(word in body["errors"][0] for word in words), body["errors"][0]


async def test_create_update_list_get_delete_as_a_controller_sends_them(pair: Pair) -> None:
    _, token = await pair.c97qk.new_user()
    tag = secrets.token_hex(4)
    # rpc.(*Conn).CollectionCreate: POST, CreateOptions as a form body.
    made = ok(
        go_request(
            pair.c97qk,
            "POST",
            COLLECTIONS,
            token,
            create_options({"name": f"wire-{tag}", "manifest_text": MANIFEST}),
        )
    )
    assert made["uuid"].startswith("c97qk-4zz18-") and made["name"] == f"wire-{tag}"
    assert made["portable_data_hash"] == portable_data_hash(MANIFEST)
    # The same name again with ensure_unique_name=true: renamed, not refused.
    again = ok(
        go_request(
            pair.c97qk,
            "POST",
            COLLECTIONS,
            token,
            create_options({"name": f"wire-{tag}"}, ensure_unique_name=True),
        )
    )
    assert again["name"].startswith(f"wire-{tag} (")

    # rpc.(*Conn).CollectionUpdate: PATCH, UpdateOptions (uuid moved into the path).
    update = {"collection": {"name": f"renamed-{tag}"}, "select": None, "bypass_federation": False}
    path = f"{COLLECTIONS}/{made['uuid']}"
    assert ok(go_request(pair.c97qk, "PATCH", path, token, update))["name"] == f"renamed-{tag}"

    # rpc.(*Conn).CollectionList: a short GET, every zero value of ListOptions included.
    filters = [["name", "like", f"renamed-{tag}%"]]
    listed = ok(go_request(pair.c97qk, "GET", COLLECTIONS, token, list_options(filters)))
    assert [item["uuid"] for item in listed["items"]] == [made["uuid"]]
    assert listed["items_available"] == 1
    # count=none (the split list.go makes) and select: no count, only those attributes.
    lean = ok(
        go_request(
            pair.c97qk,
            "GET",
            COLLECTIONS,
            token,
            list_options(filters, count="none", select=["uuid", "name"]),
        )
    )
    assert "items_available" not in lean
    expected = {"kind": "arvados#collection", "uuid": made["uuid"], "name": f"renamed-{tag}"}
    assert lean["items"] == [expected]

    # rpc.(*Conn).CollectionGet: GetOptions with nothing set is an empty query.
    assert ok(go_request(pair.c97qk, "GET", path, token, {"select": None}))["uuid"] == made["uuid"]
    # rpc.(*Conn).CollectionDelete: DELETE with an empty form body.
    assert ok(go_request(pair.c97qk, "DELETE", path, token, {}))["uuid"] == made["uuid"]
    refused(go_request(pair.c97qk, "GET", path, token, {}), 404)


async def test_a_long_list_comes_as_post_with_the_override(pair: Pair) -> None:
    _, token = await pair.c97qk.new_user()
    mine = [
        ok(go_request(pair.c97qk, "POST", COLLECTIONS, token, create_options({})))["uuid"]
        for _ in range(3)
    ]
    # Enough UUIDs that the parameters pass 1000 bytes: client.go sends them in the body.
    filler = [f"c97qk-4zz18-{secrets.token_hex(8)[:15]}" for _ in range(40)]
    options = list_options([["uuid", "in", mine + filler]], limit=1000)
    assert len(go_values(options)) >= 1000
    listed = ok(go_request(pair.c97qk, "GET", COLLECTIONS, token, options))
    assert sorted(item["uuid"] for item in listed["items"]) == sorted(mine)
    # _method=GET in the form is the same override (Rails honours it; so do we).
    values = go_values({**options, "_method": "GET"})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FORM}
    again = send("POST", f"{pair.c97qk.base_url}{COLLECTIONS}", content=values, headers=headers)
    assert sorted(item["uuid"] for item in ok(again)["items"]) == sorted(mine)


async def test_bearer_dash_is_no_token(pair: Pair) -> None:
    # rpc.(*Conn).requestAndDecode with no token: "Bearer -", an anonymous request.
    anonymous = go_request(pair.c97qk, "GET", COLLECTIONS, None, list_options([]))
    refused(anonymous, 401, "needs a token")
    assert "malformed" not in anonymous.text
    dash = {"Authorization": "Bearer -"}
    config = send("GET", f"{pair.c97qk.base_url}/arvados/v1/config", headers=dash)
    assert ok(config)["ClusterID"] == "c97qk"


async def test_the_controllers_via_is_answered_here_never_forwarded(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    on_home = ok(go_request(pair.qr1hi, "POST", COLLECTIONS, token, create_options({}), via=False))[
        "uuid"
    ]
    path = f"{COLLECTIONS}/{on_home}"
    # Without the marks, c97qk forwards to qr1hi (which logs it).
    assert ok(go_request(pair.c97qk, "GET", path, token, {}, via=False))["uuid"] == on_home
    wait_for_log(pair.qr1hi_process, f"GET {path}")
    # A controller's Via, forwarded_for, bypass_federation: served by c97qk alone.
    for options, via in (
        ({}, True),
        ({"forwarded_for": "zzzzz-"}, False),
        ({"bypass_federation": True}, False),
    ):
        refused(go_request(pair.c97qk, "GET", path, token, options, via=via), 404)
    await asyncio.sleep(0.5)  # qr1hi's log is written by another process
    assert pair.qr1hi_process.log().count(f"GET {path}") == 1  # never forwarded again
    uuid_filter = [["uuid", "in", [on_home]]]
    for options, via in (
        (list_options(uuid_filter), True),
        (list_options(uuid_filter, forwarded_for="zzzzz-"), False),
        (list_options(uuid_filter, bypass_federation=True), False),
    ):
        listed = ok(go_request(pair.c97qk, "GET", COLLECTIONS, token, options, via=via))
        assert listed["items"] == [], options
    # A create naming qr1hi with the controller's Via is made here.
    options = create_options({}, cluster_id="qr1hi")
    made = ok(go_request(pair.c97qk, "POST", COLLECTIONS, token, options))
    assert made["uuid"].startswith("c97qk-")


async def test_what_c97qk_sends_carries_the_marks_arvados_honours(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    on_home = ok(go_request(pair.qr1hi, "POST", COLLECTIONS, token, create_options({}), via=False))
    filters = [["uuid", "in", [on_home["uuid"], "c97qk-4zz18-000000000000000"]]]
    listed = ok(go_request(pair.c97qk, "GET", COLLECTIONS, token, list_options(filters), via=False))
    assert [item["uuid"] for item in listed["items"]] == [on_home["uuid"]]
    # qr1hi's access log: the part of the fan-out it was asked says forwarded_for=c97qk-.
    wait_for_log(pair.qr1hi_process, "forwarded_for=c97qk-")
    # A part with 1000 bytes of parameters goes as client.go sends it: POST + override.
    posts = pair.qr1hi_process.log().count(f"POST {COLLECTIONS} ")
    filler = [f"qr1hi-4zz18-{secrets.token_hex(8)[:15]}" for _ in range(40)]
    filters = [["uuid", "in", [on_home["uuid"], *filler, "c97qk-4zz18-000000000000000"]]]
    listed = ok(go_request(pair.c97qk, "GET", COLLECTIONS, token, list_options(filters), via=False))
    assert [item["uuid"] for item in listed["items"]] == [on_home["uuid"]]
    await asyncio.sleep(0.5)  # qr1hi's log is written by another process
    assert pair.qr1hi_process.log().count(f"POST {COLLECTIONS} ") == posts + 1


async def test_a_collection_by_portable_data_hash_is_found_on_a_remote(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    manifest = f". {secrets.token_hex(16)}+5 0:5:{secrets.token_hex(4)}.txt\n"
    pdh = portable_data_hash(manifest)
    attrs = {"manifest_text": manifest}
    ok(go_request(pair.qr1hi, "POST", COLLECTIONS, token, create_options(attrs), via=False))
    found = ok(go_request(pair.c97qk, "GET", f"{COLLECTIONS}/{pdh}", token, {}, via=False))
    assert found["portable_data_hash"] == pdh and found["uuid"] == pdh
    assert found["manifest_text"] == manifest.replace("+5 ", "+5+K@qr1hi ")
    # With a hint on the hash, too (only <md5>+<size> must match).
    hinted = ok(go_request(pair.c97qk, "GET", f"{COLLECTIONS}/{pdh}+K@qr1hi", token, {}, via=False))
    assert hinted["portable_data_hash"] == pdh
    # A local one is answered here; an unknown one nowhere; forwarded_for: here only.
    _, local_token = await pair.c97qk.new_user()
    attrs = {"manifest_text": MANIFEST}
    ok(go_request(pair.c97qk, "POST", COLLECTIONS, local_token, create_options(attrs)))
    local_path = f"{COLLECTIONS}/{portable_data_hash(MANIFEST)}"
    here = ok(go_request(pair.c97qk, "GET", local_path, local_token, {}))
    assert here["manifest_text"] == MANIFEST
    unknown = portable_data_hash(f". {secrets.token_hex(16)}+1 0:1:x\n")
    refused(go_request(pair.c97qk, "GET", f"{COLLECTIONS}/{unknown}", token, {}, via=False), 404)
    local_only = {"forwarded_for": "zzzzz-"}
    path = f"{COLLECTIONS}/{pdh}"
    refused(go_request(pair.c97qk, "GET", path, token, local_only, via=False), 404)


async def test_bad_wire_input_is_a_4xx_with_the_spec_body(pair: Pair) -> None:
    _, token = await pair.c97qk.new_user()
    url = f"{pair.c97qk.base_url}{COLLECTIONS}"
    auth = {"Authorization": f"Bearer {token}"}
    form = {**auth, "Content-Type": FORM}
    cases = [
        # Not a form: a field without "=", bytes that are not ASCII, bad UTF-8 once decoded.
        (form, b"cluster_id&&collection", 400, "malformed form body"),
        (form, 'collection={"name":"é"}'.encode(), 400, "malformed form body"),
        (form, b"collection=%ff%fe", 400, "malformed form body"),
        # Attributes that are not JSON, or not an object.
        (form, b"collection=%7Bnot+json", 400, "collection"),
        (form, b"collection=%5B1%5D", 400, "collection must be a JSON object"),
        # An override to anything but GET or HEAD.
        ({**form, "X-Http-Method-Override": "DELETE"}, b"", 400, "override"),
        (form, b"_method=PUT", 400, "override"),
        # A filter that does not parse, sent in an overridden GET.
        ({**form, "X-Http-Method-Override": "GET"}, b"filters=%5Boops", 422, "filters"),
        # select naming something a collection does not have.
        ({**form, "X-Http-Method-Override": "GET"}, b"select=%5B%22nope%22%5D", 422, "nope"),
    ]
    for headers, body, status, words in cases:
        refused(send("POST", url, content=body, headers=headers), status, words)
    refused(send("GET", url, params={"count": "maybe"}, headers=auth), 422, "count")


async def test_a_peer_answering_another_manifest_for_a_hash_is_a_502(
    databases: DatabaseFactory,
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def liar(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "arvados#collection", "manifest_text": MANIFEST})

    stub = Starlette(routes=[Route("/arvados/v1/collections/{pdh}", liar)])
    with ServerThread(stub) as peer:
        config = local_config(
            "c97qk",
            databases.new_url("c97qk"),
            remotes={"zliar": remote_entry(peer.port, Proxy=True)},
        )
        async with asgi_client(create_app(config)) as client:
            cluster = Cluster("c97qk", 0, config.database_url)
            _, token = await cluster.new_user()
            wanted = portable_data_hash(". d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n")
            auth = {"Authorization": f"Bearer {token}"}
            answer = await client.get(f"{COLLECTIONS}/{wanted}", headers=auth)
    assert answer.status_code == 502, answer.text
    assert "zliar" in answer.json()["errors"][0] and "another hash" in answer.json()["errors"][0]
