"""SPEC 3.3, the home side, in process on both backends, plus the object endpoints it
judges: no existence leak, salted tokens only with the right remote, bad bodies 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from clusterfed.config import parse_config
from clusterfed.server.app import create_app
from clusterfed.server.testing import Cluster, cluster_config, free_port, remote_entry
from clusterfed.tokens import COLLECTION_TYPE, new_uuid, parse_token, salt

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

CHECKS = "/federation/v1/permission_checks"


@dataclass
class Home:
    client: httpx.AsyncClient
    cluster: Cluster

    async def user(self, **kwargs: Any) -> str:
        _, token = await self.cluster.new_user(**kwargs)
        return token

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def create(self, token: str, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.call("POST", f"/arvados/v1/{resource}", token, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def check(
        self, token: str, target: str, permission: str, remote: str = "c97qk"
    ) -> httpx.Response:
        salted = salt(parse_token(token), remote).encode()
        return await self.call(
            "POST",
            CHECKS,
            salted,
            params={"remote": remote},
            json={"target_uuid": target, "permission": permission},
        )


# One home cluster per backend for the whole file: every test makes its own users and
# objects. Its fixture and tests share the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def home(session_databases: DatabaseFactory) -> AsyncIterator[Home]:
    url = session_databases.new_url("home")
    # c97qk is a remote (never contacted here): copies salted for it count; zbbbb is not.
    remotes = {"c97qk": remote_entry(free_port())}
    app = create_app(parse_config(cluster_config("qr1hi", url, remotes=remotes)))
    async for client in asgi_client(app):
        yield Home(client, Cluster("qr1hi", 0, url))


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["errors"], list) and body["errors"][0] and body["error_token"]


async def test_answers_with_the_users_level(home: Home) -> None:
    owner, reader = await home.user(), await home.user()
    project = await home.create(owner, "groups", {"name": "p", "group_class": "project"})
    reader_uuid = (await home.call("GET", "/arvados/v1/users/current", reader)).json()["uuid"]
    await home.create(
        owner,
        "links",
        {
            "link_class": "permission",
            "name": "can_read",
            "tail_uuid": reader_uuid,
            "head_uuid": project["uuid"],
        },
    )
    allowed = await home.check(owner, project["uuid"], "can_write")
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["allowed"] is True
    assert set(allowed.json()) == {"allowed", "user_uuid", "target_uuid", "permission", "reason"}
    denied = (await home.check(reader, project["uuid"], "can_write")).json()
    assert denied["allowed"] is False and "only can_read" in denied["reason"]
    assert denied["user_uuid"] == reader_uuid and denied["permission"] == "can_write"
    assert (await home.check(reader, project["uuid"], "can_read")).json()["allowed"] is True


async def test_missing_and_unreadable_targets_answer_alike(home: Home) -> None:
    owner, stranger = await home.user(), await home.user()
    hidden = await home.create(owner, "collections", {"name": "secret"})
    missing = new_uuid("qr1hi", COLLECTION_TYPE)
    a = (await home.check(stranger, hidden["uuid"], "can_read")).json()
    b = (await home.check(stranger, missing, "can_read")).json()
    assert a["allowed"] is b["allowed"] is False
    assert a["reason"] == b["reason"]
    assert {k: v for k, v in a.items() if k != "target_uuid"} == {
        k: v for k, v in b.items() if k != "target_uuid"
    }
    # And the object endpoints agree: 404 with the same words shape for both.
    got_hidden = await home.call("GET", f"/arvados/v1/collections/{hidden['uuid']}", stranger)
    got_missing = await home.call("GET", f"/arvados/v1/collections/{missing}", stranger)
    assert got_hidden.status_code == got_missing.status_code == 404
    assert got_hidden.json()["errors"][0].replace(hidden["uuid"], "X") == got_missing.json()[
        "errors"
    ][0].replace(missing, "X")


async def test_salted_token_only_with_the_right_remote(home: Home) -> None:
    token = await home.user()
    target = new_uuid("qr1hi", COLLECTION_TYPE)
    body = {"target_uuid": target, "permission": "can_read"}
    salted = salt(parse_token(token), "c97qk").encode()
    assert (await home.check(token, target, "can_read")).status_code == 200
    wrong = await home.call("POST", CHECKS, salted, params={"remote": "zbbbb"}, json=body)
    assert_error(wrong, 401)
    none = await home.call("POST", CHECKS, salted, json=body)
    assert_error(none, 401)
    # A copy salted for a cluster qr1hi does not federate with counts for nothing.
    outside = salt(parse_token(token), "zbbbb").encode()
    refused = await home.call("POST", CHECKS, outside, params={"remote": "zbbbb"}, json=body)
    assert_error(refused, 401)
    assert "does not federate with zbbbb" in refused.json()["errors"][0]
    # The salted token reaches nothing else.
    elsewhere = await home.call(
        "GET", "/arvados/v1/collections", salted, params={"remote": "c97qk"}
    )
    assert_error(elsewhere, 401)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"target_uuid": "not-a-uuid", "permission": "can_read"},
        {"target_uuid": "qr1hi-4zz18-aaaaaaaaaaaaaaa", "permission": "can_fly"},
        {"target_uuid": "qr1hi-4zz18-aaaaaaaaaaaaaaa"},
        {"target_uuid": "qr1hi-4zz18-aaaaaaaaaaaaaaa", "permission": "can_read", "x": 1},
        ["qr1hi-4zz18-aaaaaaaaaaaaaaa", "can_read"],
    ],
)
async def test_bad_body_is_422(home: Home, body: Any) -> None:
    token = await home.user()
    salted = salt(parse_token(token), "c97qk").encode()
    response = await home.call("POST", CHECKS, salted, params={"remote": "c97qk"}, json=body)
    assert_error(response, 422)


async def test_admin_may_do_anything_and_inactive_users_nothing(home: Home) -> None:
    owner = await home.user()
    admin = await home.user(is_admin=True)
    thing = await home.create(owner, "collections", {"name": "x"})
    answer = (await home.check(admin, thing["uuid"], "can_manage")).json()
    assert answer["allowed"] is True
    listed = await home.call("GET", "/arvados/v1/collections", admin)
    assert thing["uuid"] in [item["uuid"] for item in listed.json()["items"]]
    inactive = await home.user(is_active=False)
    refused = await home.call("POST", "/arvados/v1/collections", inactive, json={"name": "n"})
    assert_error(refused, 403)


async def test_collections_crud_and_arvados_lists(home: Home) -> None:
    ann, bob = await home.user(), await home.user()
    manifest = ". 37b51d194a7513e45b56f6524f2d51f2+3 0:3:bar\n"
    created = await home.create(
        ann, "collections", {"collection": {"name": "sample-1", "manifest_text": manifest}}
    )
    expected = f"{hashlib.md5(manifest.encode()).hexdigest()}+{len(manifest)}"
    assert created["portable_data_hash"] == expected and created["kind"] == "arvados#collection"
    assert created["uuid"].startswith("qr1hi-4zz18-") and created["etag"]
    await home.create(ann, "collections", {"name": "sample-2"})
    await home.create(ann, "collections", {"name": "other"})
    await home.create(bob, "collections", {"name": "sample-bob"})
    listed = await home.call(
        "GET",
        "/arvados/v1/collections",
        ann,
        params={"filters": json.dumps([["name", "like", "sample-%"]]), "order": "name desc"},
    )
    body = listed.json()
    assert body["kind"] == "arvados#collectionList" and body["items_available"] == 2
    assert [item["name"] for item in body["items"]] == ["sample-2", "sample-1"]
    paged = await home.call(
        "GET", "/arvados/v1/collections", ann, params={"limit": "1", "offset": "1"}
    )
    assert paged.json()["items_available"] == 3 and len(paged.json()["items"]) == 1
    updated = await home.call(
        "PATCH", f"/arvados/v1/collections/{created['uuid']}", ann, json={"name": "renamed"}
    )
    assert updated.json()["name"] == "renamed"
    assert_error(
        await home.call(
            "PUT", f"/arvados/v1/collections/{created['uuid']}", bob, json={"name": "mine now"}
        ),
        404,
    )
    deleted = await home.call("DELETE", f"/arvados/v1/collections/{created['uuid']}", ann)
    assert deleted.status_code == 200
    gone = await home.call("GET", f"/arvados/v1/collections/{created['uuid']}", ann)
    assert_error(gone, 404)


@pytest.mark.parametrize(
    "params",
    [
        {"filters": "not json"},
        {"filters": json.dumps({"name": "x"})},
        {"filters": json.dumps([["name", "~", "x"]])},
        {"filters": json.dumps([["secret_column", "=", "x"]])},
        {"filters": json.dumps([["name", "in", "x"]])},
        {"filters": json.dumps([["modified_at", ">", "yesterday"]])},
        {"filters": json.dumps([["name", "=", 5]])},
        {"filters": json.dumps([["uuid", "is_a", "arvados#nothing"]])},
        {"order": "name sideways"},
        {"order": "manifest_text; drop table collections"},
        {"limit": "-1"},
        {"limit": "lots"},
    ],
)
async def test_bad_list_parameters_are_client_errors(home: Home, params: dict[str, str]) -> None:
    token = await home.user()
    assert_error(await home.call("GET", "/arvados/v1/collections", token, params=params), 422)


async def test_filter_operators(home: Home) -> None:
    token = await home.user()
    made = [await home.create(token, "collections", {"name": f"n{i}"}) for i in range(4)]
    uuids = [item["uuid"] for item in made]

    async def names(filters: list[Any]) -> list[str]:
        response = await home.call(
            "GET",
            "/arvados/v1/collections",
            token,
            params={"filters": json.dumps(filters), "order": ["name asc"]},
        )
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names([["name", "in", ["n1", "n3"]]]) == ["n1", "n3"]
    assert await names([["name", "not in", ["n1", "n3"]]]) == ["n0", "n2"]
    assert await names([["name", "!=", "n0"], ["name", "<=", "n2"]]) == ["n1", "n2"]
    assert await names([["name", "ilike", "N3"]]) == ["n3"]
    assert await names([["uuid", "is_a", "arvados#collection"]]) == ["n0", "n1", "n2", "n3"]
    assert await names([["uuid", "in", []]]) == []
    assert await names([["uuid", "=", uuids[2]]]) == ["n2"]
    since = made[1]["modified_at"]
    assert "n0" not in await names([["modified_at", ">=", since]])
