"""The seed note's scenarios, through the real Arvados Python SDK, on real TLS clusters.

A qr1hi user holds an SDK client pointed at qr1hi only (the seed's "home cluster"), and
reaches c97qk's objects through it: qr1hi's FederatedRouter forwards with the token
salted for c97qk, and c97qk asks qr1hi who the token is and what it may write. Both
clusters serve HTTPS (the SDK speaks nothing else) and list each other as Proxy remotes.

Nothing here reads file content: that is Keep's job, and clusterfed serves no Keep. What
the SDK does without Keep (fetch a record, parse its manifest, list its files, save a
manifest of existing blocks as a new record) runs for real.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arvados
import arvados.collection
import arvados.config
import pytest
import yaml
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    remote_entry,
    running_together,
)

from tests.support.databases import DatabaseFactory
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk
from tests.support.tls import self_signed

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

A = "acbd18db4cc2f85cedef654fccc4a4d8+3"
B = "37b51d194a7513e45b56f6524f2d51f2+3"
MANIFEST = f". {A} {B} 0:3:foo.txt 3:3:bar.txt\n./sub {A} 0:3:baz.txt\n"
HINTED = f". {A}+K@c97qk {B}+K@c97qk 0:3:foo.txt 3:3:bar.txt\n./sub {A}+K@c97qk 0:3:baz.txt\n"


@dataclass
class Pair:
    qr1hi: Cluster
    c97qk: Cluster


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir: Path = tmp_path_factory.mktemp("seed-sdk")
    cert, key = self_signed(workdir)
    ids = ("qr1hi", "c97qk")
    # Each must know the other's port, and a ClusterProcess picks its port when built.
    procs = {
        cid: ClusterProcess(cluster_config(cid, session_databases.new_url(cid)), workdir)
        for cid in ids
    }
    for cid, proc in procs.items():
        (other,) = (o for o in ids if o != cid)
        remote = remote_entry(
            procs[other].port, Scheme="https", Insecure=True, Proxy=True, ActivateUsers=True
        )
        config = cluster_config(cid, proc.cluster.database_url, remotes={other: remote})
        config["Clusters"][cid]["TLS"] = {"Certificate": str(cert), "Key": str(key)}
        proc.config_path.write_text(yaml.safe_dump(config))
        proc.cluster.scheme = "https"
    # All start at once: none needs the others up to start.
    with running_together(*procs.values()) as started:
        yield Pair(**dict(zip(procs, started, strict=True)))


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)


def api_error(call: Callable[[], Any]) -> arvados.errors.ApiError:
    with pytest.raises(arvados.errors.ApiError) as caught:
        call()
    return caught.value


async def test_read_a_c97qk_collection_by_uuid_through_qr1hi(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    api = sdk(pair.qr1hi, token)

    def scenario() -> tuple[dict[str, Any], dict[str, Any], Any]:
        body = {"collection": {"name": "remote reads", "manifest_text": MANIFEST}}
        made = api.collections().create(cluster_id="c97qk", body=body).execute()
        fetched = api.collections().get(uuid=made["uuid"]).execute()
        # The seed's CollectionReader("c97qk-..."), with the client of the home cluster.
        reader = arvados.collection.CollectionReader(made["uuid"], api_client=api)
        return made, fetched, reader

    made, fetched, reader = await in_thread(scenario)
    assert made["uuid"].startswith("c97qk-4zz18-")
    assert fetched["manifest_text"] == HINTED  # every block says where to fetch it
    assert sorted(reader.keys()) == ["bar.txt", "foo.txt", "sub"]
    assert sorted(reader.find("sub").keys()) == ["baz.txt"]
    assert reader.find("foo.txt").size() == 3
    assert reader.manifest_locator() == made["uuid"]
    # The SDK's own hash of the manifest (hints stripped) is the one c97qk computed.
    assert (
        reader.portable_data_hash() == made["portable_data_hash"] == fetched["portable_data_hash"]
    )
    # c97qk itself stores the manifest without our hints.
    direct = await in_thread(
        lambda: sdk(pair.c97qk, token).collections().get(uuid=made["uuid"]).execute()
    )
    assert direct["manifest_text"] == MANIFEST

    # Someone else's token reads nothing of it, in c97qk's words.
    _, stranger = await pair.qr1hi.new_user()
    error = await in_thread(
        lambda: api_error(
            lambda: sdk(pair.qr1hi, stranger).collections().get(uuid=made["uuid"]).execute()
        )
    )
    assert error.resp.status == 404


async def test_search_both_clusters_and_page_with_next_page(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    api = sdk(pair.qr1hi, token)
    tag = secrets.token_hex(3)
    homes = ["c97qk", "qr1hi", "qr1hi", "c97qk", "c97qk", "qr1hi", "c97qk"]

    def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        made = []
        for number, cluster_id in enumerate(homes):
            body = {
                "collection": {"name": f"sample-1234-{tag}-{number}", "manifest_text": MANIFEST}
            }
            made.append(api.collections().create(cluster_id=cluster_id, body=body).execute())
        api.collections().create(body={"collection": {"name": f"other-{tag}"}}).execute()
        filters = [["name", "like", f"sample-1234-{tag}%"]]
        pages = []
        page = (
            api.collections()
            .list(filters=filters, federated=True, order=["name asc"], limit=3)
            .execute()
        )
        pages.append(page)
        while page.get("next_page"):
            page = (
                api.collections()
                .list(
                    filters=filters,
                    federated=True,
                    order=["name asc"],
                    limit=3,
                    next_page=page["next_page"],
                )
                .execute()
            )
            pages.append(page)
        # Without federated=true it is the home cluster's list alone.
        local = api.collections().list(filters=filters, order=["name asc"]).execute()["items"]
        return made, pages, local

    made, pages, local = await in_thread(scenario)
    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert all(page["items_available"] == len(homes) for page in pages)
    assert pages[-1]["next_page"] is None
    seen = [item for page in pages for item in page["items"]]
    assert [item["uuid"] for item in seen] == [item["uuid"] for item in made]
    assert [item["uuid"][:5] for item in seen] == homes
    for item in seen:
        assert ("+K@c97qk" in item["manifest_text"]) == item["uuid"].startswith("c97qk-")
    assert [item["uuid"] for item in local] == [
        item["uuid"] for item in made if item["uuid"].startswith("qr1hi-")
    ]

    # A cursor of another query is refused, in the SDK's error type.
    filters = [["name", "like", "something else%"]]
    error = await in_thread(
        lambda: api_error(
            lambda: (
                api.collections()
                .list(filters=filters, federated=True, next_page=pages[0]["next_page"])
                .execute()
            )
        )
    )
    assert error.resp.status == 422


async def test_create_on_c97qk_by_owner_uuid_of_a_c97qk_project(pair: Pair) -> None:
    user_uuid, token = await pair.qr1hi.new_user()
    api = sdk(pair.qr1hi, token)

    def scenario() -> tuple[dict[str, Any], dict[str, Any], Any]:
        project = (
            api.groups()
            .create(
                cluster_id="c97qk", body={"group": {"name": "results", "group_class": "project"}}
            )
            .execute()
        )
        body = {
            "collection": {
                "owner_uuid": project["uuid"],
                "name": "made there",
                "manifest_text": MANIFEST,
            }
        }
        made = api.collections().create(body=body).execute()
        return project, made, sdk(pair.c97qk, token).collections().get(uuid=made["uuid"]).execute()

    project, made, on_c97qk = await in_thread(scenario)
    assert project["uuid"].startswith("c97qk-j7d0g-") and project["owner_uuid"] == user_uuid
    assert made["uuid"].startswith("c97qk-4zz18-") and made["owner_uuid"] == project["uuid"]
    assert made["manifest_text"] == HINTED
    assert (on_c97qk["owner_uuid"], on_c97qk["name"]) == (project["uuid"], "made there")

    # No write access to the project: c97qk refuses, the SDK raises.
    _, stranger = await pair.qr1hi.new_user()
    body = {"collection": {"owner_uuid": project["uuid"], "name": "intruder"}}
    error = await in_thread(
        lambda: api_error(
            lambda: sdk(pair.qr1hi, stranger).collections().create(body=body).execute()
        )
    )
    assert error.resp.status == 403


async def test_save_new_creates_records_without_keep(pair: Pair) -> None:
    """``Collection(manifest).save_new()``: a manifest of blocks that exist already needs no
    upload, so the SDK only creates the record, here or (by owner) on c97qk."""
    _, token = await pair.qr1hi.new_user()
    api = sdk(pair.qr1hi, token)
    name = f"saved-{secrets.token_hex(3)}"

    def scenario() -> dict[str, Any]:
        here = arvados.collection.Collection(MANIFEST, api_client=api)
        here.save_new(name=name)
        again = arvados.collection.Collection(MANIFEST, api_client=api)
        refused = api_error(lambda: again.save_new(name=name))
        again.save_new(name=name, ensure_unique_name=True)
        unnamed = arvados.collection.Collection(MANIFEST, api_client=api)
        unnamed.save_new()  # the SDK names it "New collection", ensure_unique_name on
        project = (
            api.groups()
            .create(cluster_id="c97qk", body={"group": {"name": name, "group_class": "project"}})
            .execute()
        )
        there = arvados.collection.Collection(MANIFEST, api_client=api)
        there.save_new(name=name, owner_uuid=project["uuid"])
        return {
            "here": here.api_response(),
            "refused": refused,
            "again": again.api_response(),
            "unnamed": unnamed.api_response(),
            "project": project,
            "there": there.api_response(),
            "reread": api.collections().get(uuid=there.manifest_locator()).execute(),
        }

    got = await in_thread(scenario)
    here = got["here"]
    assert here["uuid"].startswith("qr1hi-4zz18-") and here["name"] == name
    assert here["manifest_text"] == MANIFEST
    assert got["refused"].resp.status == 422 and "already exists" in str(got["refused"])
    stamp = r" \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)"
    assert re.fullmatch(re.escape(name) + stamp, got["again"]["name"])
    assert got["unnamed"]["name"] == "New collection"
    there = got["there"]
    assert there["uuid"].startswith("c97qk-4zz18-")
    assert there["owner_uuid"] == got["project"]["uuid"] and there["name"] == name
    assert got["reread"]["manifest_text"] == HINTED


async def test_update_a_c97qk_collection_through_qr1hi(pair: Pair) -> None:
    _, token = await pair.qr1hi.new_user()
    api = sdk(pair.qr1hi, token)

    def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        made = (
            api.collections()
            .create(
                cluster_id="c97qk",
                body={"collection": {"name": "before", "manifest_text": MANIFEST}},
            )
            .execute()
        )
        body = {"collection": {"name": "after", "properties": {"stage": "done"}}}
        updated = api.collections().update(uuid=made["uuid"], body=body).execute()
        direct = sdk(pair.c97qk, token).collections().get(uuid=made["uuid"]).execute()
        return made, updated, direct

    made, updated, direct = await in_thread(scenario)
    assert updated["uuid"] == made["uuid"] and updated["name"] == "after"
    assert updated["manifest_text"] == HINTED
    assert (direct["name"], direct["properties"]) == ("after", {"stage": "done"})
    assert direct["modified_at"] >= made["modified_at"]

    # c97qk judges write access itself: another user cannot, whatever qr1hi thinks.
    _, stranger = await pair.qr1hi.new_user()
    body = {"collection": {"name": "hijacked"}}
    error = await in_thread(
        lambda: api_error(
            lambda: (
                sdk(pair.qr1hi, stranger)
                .collections()
                .update(uuid=made["uuid"], body=body)
                .execute()
            )
        )
    )
    assert error.resp.status == 404


async def test_move_a_c97qk_object_into_a_qr1hi_project(pair: Pair) -> None:
    ann_uuid, ann = await pair.qr1hi.new_user()
    _, bob = await pair.qr1hi.new_user()
    api, bob_api = sdk(pair.qr1hi, ann), sdk(pair.qr1hi, bob)

    def project(client: Any, name: str) -> dict[str, Any]:
        body = {"group": {"name": name, "group_class": "project"}}
        return client.groups().create(body=body).execute()

    def scenario() -> dict[str, Any]:
        mine = project(api, "ann's results")
        shared = project(bob_api, "bob's shared")
        private = project(bob_api, "bob's private")
        bob_api.links().create(
            body={
                "link": {
                    "link_class": "permission",
                    "name": "can_write",
                    "tail_uuid": ann_uuid,
                    "head_uuid": shared["uuid"],
                }
            }
        ).execute()
        thing = (
            api.collections()
            .create(
                cluster_id="c97qk",
                body={"collection": {"name": "to move", "manifest_text": MANIFEST}},
            )
            .execute()
        )
        moves = {}
        for target in (mine, shared):
            body = {"collection": {"owner_uuid": target["uuid"]}}
            moves[target["uuid"]] = (
                api.collections().update(uuid=thing["uuid"], body=body).execute()
            )
        body = {"collection": {"owner_uuid": private["uuid"]}}
        refused = api_error(
            lambda: api.collections().update(uuid=thing["uuid"], body=body).execute()
        )
        final = sdk(pair.c97qk, ann).collections().get(uuid=thing["uuid"]).execute()
        return {
            "thing": thing,
            "mine": mine,
            "shared": shared,
            "private": private,
            "moves": moves,
            "refused": refused,
            "final": final,
        }

    got = await in_thread(scenario)
    thing = got["thing"]
    assert thing["uuid"].startswith("c97qk-4zz18-") and thing["owner_uuid"] == ann_uuid
    for target in ("mine", "shared"):  # ann's own project, and one bob lets her write
        uuid = got[target]["uuid"]
        assert uuid.startswith("qr1hi-j7d0g-")
        assert got["moves"][uuid]["owner_uuid"] == uuid
    refused = got["refused"]
    assert refused.resp.status == 403
    assert f"qr1hi says you may not write to project {got['private']['uuid']}" in str(refused)
    # The refused move changed nothing on c97qk.
    assert got["final"]["owner_uuid"] == got["shared"]["uuid"]
