"""Federated routing (SPEC 3.6) on three real clusters that list each other as Proxy remotes.

A qr1hi user talks only to qr1hi; objects on c97qk and zbbbb are reached through it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from clusterfed.outbound.remote import HOP_HEADER
from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    free_port,
    local_config,
    remote_entry,
    running_together,
)
from clusterfed.tokens import parse_token, salt

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

IDS = ("qr1hi", "c97qk", "zbbbb")
A = "acbd18db4cc2f85cedef654fccc4a4d8+3"
B = "37b51d194a7513e45b56f6524f2d51f2+3"
MANIFEST = f". {A} {B}+K@zbbbb 0:3:foo.txt 3:3:{A}\n"
COLLECTIONS = "/arvados/v1/collections"
GROUPS = "/arvados/v1/groups"


@dataclass
class Trio:
    qr1hi: Cluster
    c97qk: Cluster
    zbbbb: Cluster

    def __getitem__(self, cluster_id: str) -> Cluster:
        return getattr(self, cluster_id)


@pytest.fixture(scope="module")
def trio(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trio]:
    workdir: Path = tmp_path_factory.mktemp("routing")
    # Every cluster must know the others' ports, and a ClusterProcess picks its port when
    # built: build all three, then rewrite each config with the full mesh.
    procs = {
        cid: ClusterProcess(cluster_config(cid, session_databases.new_url(cid)), workdir)
        for cid in IDS
    }
    for cid, proc in procs.items():
        remotes = {
            other: remote_entry(procs[other].port, Proxy=True, ActivateUsers=True)
            for other in IDS
            if other != cid
        }
        config = cluster_config(cid, proc.cluster.database_url, remotes=remotes)
        proc.config_path.write_text(yaml.safe_dump(config))
    # All start at once: none needs the others up to start.
    with running_together(*procs.values()) as started:
        yield Trio(**dict(zip(procs, started, strict=True)))


def api(
    cluster: Cluster,
    method: str,
    path: str,
    token: str | None,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method,
        f"{cluster.base_url}{path}",
        params=params,
        json=body,
        headers=all_headers,
        timeout=30,
    )


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def salted(token: str, remote: str) -> str:
    return salt(parse_token(token), remote).encode()


def create_collection(
    trio: Trio, token: str, *, cluster_id: str, name: str, manifest: str = ""
) -> dict[str, Any]:
    body = {"collection": {"name": name, "manifest_text": manifest}}
    params = {"cluster_id": cluster_id}
    return ok(api(trio.qr1hi, "POST", COLLECTIONS, token, params=params, body=body))


async def test_get_update_delete_a_collection_on_another_cluster(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    made = create_collection(trio, token, cluster_id="c97qk", name="remote", manifest=MANIFEST)
    uuid = made["uuid"]
    assert uuid.startswith("c97qk-4zz18-")

    fetched = ok(api(trio.qr1hi, "GET", f"{COLLECTIONS}/{uuid}", token))
    assert fetched["uuid"] == uuid and fetched["name"] == "remote"
    assert fetched["manifest_text"] == f". {A}+K@c97qk {B}+K@zbbbb 0:3:foo.txt 3:3:{A}\n"
    # c97qk itself stores and serves the manifest without our hints.
    direct = ok(api(trio.c97qk, "GET", f"{COLLECTIONS}/{uuid}", salted(token, "c97qk")))
    assert direct["manifest_text"] == MANIFEST

    patched = ok(api(trio.qr1hi, "PATCH", f"{COLLECTIONS}/{uuid}", token, body={"name": "new"}))
    assert patched["name"] == "new" and "+K@c97qk" in patched["manifest_text"]
    put = ok(api(trio.qr1hi, "PUT", f"{COLLECTIONS}/{uuid}", token, body={"collection": {}}))
    assert put["name"] == "new"
    assert (
        ok(api(trio.c97qk, "GET", f"{COLLECTIONS}/{uuid}", salted(token, "c97qk")))["name"] == "new"
    )

    ok(api(trio.qr1hi, "DELETE", f"{COLLECTIONS}/{uuid}", token))
    assert (
        api(trio.c97qk, "GET", f"{COLLECTIONS}/{uuid}", salted(token, "c97qk")).status_code == 404
    )
    gone = api(trio.qr1hi, "GET", f"{COLLECTIONS}/{uuid}", token)
    assert gone.status_code == 404 and gone.json()["errors"]


async def test_remote_refusals_come_back_as_they_are(trio: Trio) -> None:
    _, owner = await trio.qr1hi.new_user()
    _, stranger = await trio.qr1hi.new_user()
    uuid = create_collection(trio, owner, cluster_id="zbbbb", name="private")["uuid"]
    assert uuid.startswith("zbbbb-4zz18-")
    refused = api(trio.qr1hi, "GET", f"{COLLECTIONS}/{uuid}", stranger)
    assert refused.status_code == 404 and refused.json()["errors"]  # zbbbb's own words
    bad = api(trio.qr1hi, "PATCH", f"{COLLECTIONS}/{uuid}", owner, body={"nonsense": 1})
    assert bad.status_code == 422


async def test_create_by_owner_uuid_of_a_remote_project(trio: Trio) -> None:
    user_uuid, token = await trio.qr1hi.new_user()
    project = ok(
        api(
            trio.qr1hi,
            "POST",
            GROUPS,
            token,
            params={"cluster_id": "c97qk"},
            body={"group": {"name": "remote project", "group_class": "project"}},
        )
    )
    assert project["uuid"].startswith("c97qk-j7d0g-") and project["owner_uuid"] == user_uuid
    # Wrapped (as the SDK sends it) and bare bodies alike.
    wrapped = {"name": "wrapped", "owner_uuid": project["uuid"], "manifest_text": MANIFEST}
    for body in ({"collection": wrapped}, {"name": "bare", "owner_uuid": project["uuid"]}):
        made = ok(api(trio.qr1hi, "POST", COLLECTIONS, token, body=body))
        assert made["uuid"].startswith("c97qk-4zz18-") and made["owner_uuid"] == project["uuid"]
        if made["name"] == "wrapped":  # the created record comes back hinted too
            assert made["manifest_text"].startswith(f". {A}+K@c97qk ")
    listed = ok(
        api(
            trio.c97qk,
            "GET",
            COLLECTIONS,
            salted(token, "c97qk"),
            params={"filters": f'[["owner_uuid", "=", "{project["uuid"]}"]]', "order": "name"},
        )
    )
    assert [item["name"] for item in listed["items"]] == ["bare", "wrapped"]


async def test_create_with_cluster_id_in_the_body_or_naming_ourselves(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    in_body = {"cluster_id": "zbbbb", "collection": {"name": "via body"}}
    made = ok(api(trio.qr1hi, "POST", COLLECTIONS, token, body=in_body))
    assert made["uuid"].startswith("zbbbb-4zz18-")
    local = ok(api(trio.qr1hi, "POST", COLLECTIONS, token, body={**in_body, "cluster_id": "qr1hi"}))
    assert local["uuid"].startswith("qr1hi-4zz18-") and local["name"] == "via body"
    # Not forwarded: the host still gets the body, unchanged.
    plain = ok(api(trio.qr1hi, "POST", COLLECTIONS, token, body={"name": "plain"}))
    assert plain["uuid"].startswith("qr1hi-4zz18-") and plain["name"] == "plain"
    refused = api(trio.qr1hi, "POST", COLLECTIONS, token, body={"name": "x", "bogus": 1})
    assert refused.status_code == 422


async def test_list_with_cluster_id_goes_to_that_cluster(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    made = create_collection(trio, token, cluster_id="c97qk", name="listed", manifest=MANIFEST)
    create_collection(trio, token, cluster_id="qr1hi", name="local one")
    listed = ok(api(trio.qr1hi, "GET", COLLECTIONS, token, params={"cluster_id": "c97qk"}))
    assert [item["uuid"] for item in listed["items"]] == [made["uuid"]]
    assert listed["items"][0]["manifest_text"].startswith(f". {A}+K@c97qk ")
    here = ok(api(trio.qr1hi, "GET", COLLECTIONS, token, params={"cluster_id": "qr1hi"}))
    assert [item["name"] for item in here["items"]] == ["local one"]


async def test_federated_list_pages_through_three_clusters_in_order(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    tag = secrets.token_hex(4)
    # Names interleave the clusters, so a correct merge has to alternate between them.
    made = []
    for number, cluster_id in zip(range(14), itertools.cycle(("zbbbb", "qr1hi", "c97qk", "c97qk"))):
        made.append(
            create_collection(
                trio,
                token,
                cluster_id=cluster_id,
                name=f"pager-{tag}-{number:02d}",
                manifest=MANIFEST,
            )
        )
    assert {item["uuid"][:5] for item in made} == set(IDS)
    filters = f'[["name", "like", "pager-{tag}-%"]]'

    for order, expected in (
        ("name asc", made),
        (None, list(reversed(made))),  # modified_at desc: newest first
        ('["name desc"]', list(reversed(made))),
    ):
        params: dict[str, Any] = {"federated": "true", "filters": filters, "limit": 4}
        if order is not None:
            params["order"] = order
        seen: list[dict[str, Any]] = []
        for _ in range(10):
            answer = api(trio.qr1hi, "GET", COLLECTIONS, token, params=params)
            assert "x-clusterfed-warning" not in answer.headers  # the remotes are Proxy
            page = ok(answer)
            assert page["items_available"] == 14 and len(page["items"]) <= 4
            seen += page["items"]
            if page["next_page"] is None:
                break
            params["next_page"] = page["next_page"]
        assert [item["uuid"] for item in seen] == [item["uuid"] for item in expected], order
        for item in seen:
            hinted = item["uuid"][:5] != "qr1hi"
            assert ("+K@" + item["uuid"][:5] in item["manifest_text"]) == hinted


async def test_federated_list_with_offset_and_a_reused_cursor(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    tag = secrets.token_hex(4)
    for number, cluster_id in enumerate(("c97qk", "qr1hi", "zbbbb", "c97qk", "qr1hi")):
        create_collection(trio, token, cluster_id=cluster_id, name=f"off-{tag}-{number}")
    base = {"federated": "true", "filters": f'[["name", "like", "off-{tag}-%"]]', "order": "name"}
    page = ok(api(trio.qr1hi, "GET", COLLECTIONS, token, params={**base, "offset": 2, "limit": 2}))
    assert [item["name"] for item in page["items"]] == [f"off-{tag}-2", f"off-{tag}-3"]
    rest = ok(
        api(trio.qr1hi, "GET", COLLECTIONS, token, params={**base, "next_page": page["next_page"]})
    )
    assert [item["name"] for item in rest["items"]] == [f"off-{tag}-4"]
    assert rest["next_page"] is None

    other = {**base, "filters": '[["name", "=", "something else"]]', "next_page": page["next_page"]}
    for params in (
        other,  # a cursor made for another query
        {**base, "next_page": "bm90IGEgY3Vyc29y"},
        {**base, "next_page": "%%%"},
        {**base, "next_page": page["next_page"], "offset": 1},
    ):
        refused = api(trio.qr1hi, "GET", COLLECTIONS, token, params=params)
        assert refused.status_code == 422, refused.text
        assert set(refused.json()) == {"errors", "error_token"}


async def test_uuid_filter_spanning_clusters_is_split(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    made = {
        cid: create_collection(trio, token, cluster_id=cid, name=f"split-{cid}", manifest=MANIFEST)
        for cid in IDS
    }
    create_collection(trio, token, cluster_id="c97qk", name="split-not-asked")
    uuids = [made[cid]["uuid"] for cid in IDS] + ["zzzzz-4zz18-000000000000000"]
    filters = f'[["uuid", "in", {str(uuids).replace(chr(39), chr(34))}]]'
    listed = ok(
        api(trio.qr1hi, "GET", COLLECTIONS, token, params={"filters": filters, "order": "name"})
    )
    assert [item["name"] for item in listed["items"]] == [f"split-{cid}" for cid in sorted(IDS)]
    assert listed["items_available"] == 3 and listed["next_page"] is None
    for item in listed["items"]:
        cid = item["uuid"][:5]
        expected = MANIFEST if cid == "qr1hi" else MANIFEST.replace(f"{A} ", f"{A}+K@{cid} ", 1)
        assert item["manifest_text"] == expected


async def test_a_forwarded_request_is_never_forwarded_again(trio: Trio) -> None:
    _, token = await trio.qr1hi.new_user()
    remote = create_collection(trio, token, cluster_id="c97qk", name="loop")["uuid"]
    create_collection(trio, token, cluster_id="qr1hi", name="loop-local")
    via = {HOP_HEADER: "zbbbb"}
    assert api(trio.qr1hi, "GET", f"{COLLECTIONS}/{remote}", token).status_code == 200
    looped = api(trio.qr1hi, "GET", f"{COLLECTIONS}/{remote}", token, headers=via)
    assert looped.status_code == 404
    # A federated list that arrives forwarded is this cluster's list alone.
    listed = ok(
        api(trio.qr1hi, "GET", COLLECTIONS, token, params={"federated": "true"}, headers=via)
    )
    assert [item["name"] for item in listed["items"]] == ["loop-local"]
    assert "next_page" not in listed
    created = api(
        trio.qr1hi,
        "POST",
        COLLECTIONS,
        token,
        params={"cluster_id": "c97qk"},
        headers=via,
        body={"name": "not forwarded"},
    )
    assert created.status_code == 200 and created.json()["uuid"].startswith("qr1hi-")


async def test_bad_input_is_a_4xx_with_the_spec_body(trio: Trio) -> None:
    zb_user, zb_token = await trio.zbbbb.new_user()
    _, c9_token = await trio.c97qk.new_user()
    _, token = await trio.qr1hi.new_user()
    remote = create_collection(trio, token, cluster_id="c97qk", name="x")["uuid"]
    cases = [
        # A UUID of a cluster that is not a remote: 404, and nothing is contacted.
        ("GET", f"{COLLECTIONS}/zzzzz-4zz18-000000000000000", token, {}, None, 404),
        ("POST", COLLECTIONS, token, {}, {"owner_uuid": "zzzzz-j7d0g-000000000000000"}, 404),
        ("GET", COLLECTIONS, token, {"cluster_id": "zzzzz"}, None, 422),
        ("GET", COLLECTIONS, token, {"cluster_id": "NOT A CLUSTER"}, None, 422),
        ("POST", COLLECTIONS, token, {"cluster_id": "x"}, {"name": "x"}, 422),
        ("GET", COLLECTIONS, token, {"federated": "true", "filters": "[oops"}, None, 422),
        ("GET", COLLECTIONS, token, {"federated": "perhaps"}, None, 422),
        ("GET", COLLECTIONS, token, {"federated": "true", "order": "name up"}, None, 422),
        ("GET", COLLECTIONS, token, {"federated": "true", "limit": "lots"}, None, 422),
        # Filters every cluster refuses: the refusal, not a 500.
        (
            "GET",
            COLLECTIONS,
            token,
            {"federated": "true", "filters": '[["nope","=",1]]'},
            None,
            422,
        ),
        # A zbbbb token already salted for qr1hi cannot be salted again for c97qk.
        ("GET", f"{COLLECTIONS}/{remote}", salted(zb_token, "qr1hi"), {}, None, 422),
        # A c97qk token salted for qr1hi, sent back to c97qk for a c97qk object: c97qk
        # would take it as a salted-only token and refuse it, so it is not forwarded.
        ("GET", f"{COLLECTIONS}/{remote}", salted(c9_token, "qr1hi"), {}, None, 422),
    ]
    for method, path, credential, params, body, status in cases:
        response = api(trio.qr1hi, method, path, credential, params=params, body=body)
        assert response.status_code == status, (method, path, params, response.text)
        error = response.json()
        assert set(error) == {"errors", "error_token"} and error["errors"][0]
        assert zb_token.split("/")[-1] not in response.text
    assert zb_user.startswith("zbbbb-")


async def test_a_federated_list_fails_closed_when_a_remote_is_down(
    databases: DatabaseFactory,
) -> None:
    config = local_config(
        "qr1hi",
        databases.new_url("qr1hi"),
        remotes={"zdown": remote_entry(free_port(), Proxy=True)},  # nothing listens there
        federation={"RemoteTimeout": "2s"},
    )
    app = create_app(config)
    async with asgi_client(app) as client:
        cluster = Cluster("qr1hi", 0, config.database_url)
        _, token = await cluster.new_user()
        headers = {"Authorization": f"Bearer {token}"}
        alone = await client.get(COLLECTIONS, headers=headers)
        assert alone.status_code == 200
        response = await client.get(COLLECTIONS, params={"federated": "true"}, headers=headers)
        assert response.status_code == 502, response.text
        assert "zdown" in response.json()["errors"][0]
