"""The real Arvados Python SDK against real cluster processes serving HTTPS.

``arvados.api(host=...)`` always speaks https and builds its client from our discovery
document, so everything below goes through TLS, googleapiclient's method generation and
the SDK's own error mapping. qr1hi issues tokens; c97qk trusts qr1hi and reaches it over
TLS with ``Insecure: true`` (a self-signed certificate).

SDK calls block, so the async tests run them in a thread.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arvados
import arvados.collection
import arvados.config
import googleapiclient.http
import httpx
import pytest
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    free_port,
    remote_entry,
    running_together,
)
from clusterfed.tokens import parse_token, salt

from tests.support.databases import DatabaseFactory
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk
from tests.support.tls import self_signed

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

MANIFEST = ". 37b51d194a7513e45b56f6524f2d51f2+3 0:3:bar.txt\n"


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    workdir: Path = tmp_path_factory.mktemp("sdk")
    cert, key = self_signed(workdir)
    tls = {"Certificate": str(cert), "Key": str(key)}
    port = free_port()  # c97qk's: qr1hi lists it, so its copies salted for c97qk count
    home_config = cluster_config(
        "qr1hi",
        session_databases.new_url("qr1hi"),
        remotes={"c97qk": remote_entry(port, Scheme="https", Insecure=True)},
    )
    home_config["Clusters"]["qr1hi"]["TLS"] = tls
    home = ClusterProcess(home_config, workdir)
    remote = {**remote_entry(home.port), "Scheme": "https", "Insecure": True}
    config = cluster_config(
        "c97qk",
        session_databases.new_url("c97qk"),
        remotes={"qr1hi": {**remote, "ActivateUsers": True}},
    )
    config["Clusters"]["c97qk"]["TLS"] = tls
    # Both start at once: neither needs the other up to start.
    with running_together(home, ClusterProcess(config, workdir, port=port)) as (qr1hi, c97qk):
        yield qr1hi, c97qk


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)


def salted_for(token: str, remote: str) -> str:
    return salt(parse_token(token), remote).encode()


def foreign_looking_token(issuer: str) -> str:
    return f"v2/{issuer}-gj3su-{secrets.token_hex(8)[:15]}/{secrets.token_hex(20)}"


async def test_local_token_reads_the_current_user(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, _ = pair
    user_uuid, token = await qr1hi.new_user(email="ann@qr1hi.example", first_name="Ann")
    api = sdk(qr1hi, token)
    user = await in_thread(lambda: api.users().current().execute())
    assert (user["uuid"], user["email"], user["first_name"]) == (
        user_uuid,
        "ann@qr1hi.example",
        "Ann",
    )
    # The SDK keeps the discovery document: it names this cluster and the URL we used.
    assert api._rootDesc["uuidPrefix"] == "qr1hi"
    assert api._rootDesc["rootUrl"] == f"https://{qr1hi.host}/"


@pytest.mark.parametrize("form", ["as issued", "salted for c97qk"])
async def test_home_token_works_through_the_sdk_on_the_remote(
    pair: tuple[Cluster, Cluster], form: str
) -> None:
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user(email="bob@qr1hi.example", last_name="Bob")
    presented = token if form == "as issued" else salted_for(token, "c97qk")
    api = sdk(c97qk, presented)
    user = await in_thread(lambda: api.users().current().execute())
    authorization = await in_thread(lambda: api.api_client_authorizations().current().execute())
    assert (user["uuid"], user["email"], user["last_name"]) == (
        user_uuid,
        "bob@qr1hi.example",
        "Bob",
    )
    assert user["is_active"] is True  # ActivateUsers: the mirror, not qr1hi's row
    assert api._rootDesc["uuidPrefix"] == "c97qk"
    assert authorization["uuid"] == parse_token(token).uuid
    assert authorization["owner_uuid"] == user_uuid
    assert "api_token" not in authorization


@pytest.mark.parametrize("where", ["local token", "token the issuer rejects"])
async def test_invalid_token_is_an_api_error_401_with_the_server_message(
    pair: tuple[Cluster, Cluster], where: str
) -> None:
    qr1hi, c97qk = pair
    if where == "local token":
        cluster, token = qr1hi, foreign_looking_token("qr1hi")
    else:
        cluster, token = c97qk, foreign_looking_token("qr1hi")
    async with httpx.AsyncClient(verify=False) as client:
        direct = await client.get(
            f"{cluster.base_url}/arvados/v1/users/current",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert direct.status_code == 401
    message = direct.json()["errors"][0]

    with pytest.raises(arvados.errors.ApiError) as caught:
        await in_thread(lambda: sdk(cluster, token).users().current().execute())
    assert caught.value.resp.status == 401
    assert caught.value.reason == message  # the SPEC body's errors, as the SDK shows them
    assert message in str(caught.value)


async def test_environment_configuration_reaches_the_cluster(
    pair: tuple[Cluster, Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's recipe: ARVADOS_API_HOST, ARVADOS_API_TOKEN, ARVADOS_API_HOST_INSECURE."""
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user()
    monkeypatch.setenv("ARVADOS_API_HOST", c97qk.host)
    monkeypatch.setenv("ARVADOS_API_TOKEN", token)
    monkeypatch.setenv("ARVADOS_API_HOST_INSECURE", "true")
    api = arvados.api("v1", cache=False, num_retries=0)
    assert (await in_thread(lambda: api.users().current().execute()))["uuid"] == user_uuid


async def test_scoped_foreign_token_can_still_build_a_client(
    pair: tuple[Cluster, Cluster],
) -> None:
    # The SDK sends its token with the discovery request too. A token scoped to
    # users/current must still get the (public) document, or no client can be built.
    qr1hi, c97qk = pair
    user_uuid, _ = await qr1hi.new_user()
    token = await qr1hi.new_token(user_uuid, scopes=["GET /arvados/v1/users/current"])
    api = sdk(c97qk, salted_for(token, "c97qk"))
    assert (await in_thread(lambda: api.users().current().execute()))["uuid"] == user_uuid


async def test_collections_round_trip_through_the_sdk(pair: tuple[Cluster, Cluster]) -> None:
    qr1hi, _ = pair
    user_uuid, token = await qr1hi.new_user()
    api = sdk(qr1hi, token)
    name = f"sdk-{secrets.token_hex(4)}"

    def round_trip() -> tuple[dict[str, Any], ...]:
        body = {"collection": {"name": name, "manifest_text": MANIFEST}}
        created = api.collections().create(body=body).execute()
        fetched = api.collections().get(uuid=created["uuid"]).execute()
        listed = (
            api.collections()
            .list(filters=[["name", "=", name]], order=["created_at desc"], limit=5)
            .execute()
        )
        updated = (
            api.collections()
            .update(uuid=created["uuid"], body={"collection": {"name": f"{name}-renamed"}})
            .execute()
        )
        return created, fetched, listed, updated

    created, fetched, listed, updated = await in_thread(round_trip)
    assert created["uuid"].startswith("qr1hi-4zz18-") and created["owner_uuid"] == user_uuid
    assert fetched["manifest_text"] == MANIFEST
    assert fetched["portable_data_hash"] == created["portable_data_hash"]
    assert [item["uuid"] for item in listed["items"]] == [created["uuid"]]
    assert listed["items_available"] == 1
    assert updated["name"] == f"{name}-renamed"

    # The SDK's high-level reader parses the manifest it fetched through our API.
    reader = await in_thread(
        lambda: arvados.collection.CollectionReader(created["uuid"], api_client=api)
    )
    assert list(reader.keys()) == ["bar.txt"]
    assert reader.portable_data_hash() == created["portable_data_hash"]

    await in_thread(lambda: api.collections().delete(uuid=created["uuid"]).execute())
    with pytest.raises(arvados.errors.ApiError) as caught:
        await in_thread(lambda: api.collections().get(uuid=created["uuid"]).execute())
    assert caught.value.resp.status == 404


async def test_each_write_is_visible_to_the_next_request(pair: tuple[Cluster, Cluster]) -> None:
    # The SDK, like any client, reads back right after a write: the server must have
    # committed before it answered.
    qr1hi, _ = pair
    _, token = await qr1hi.new_user()
    api = sdk(qr1hi, token)

    def write_then_read() -> list[tuple[str, str | None]]:
        uuid = api.collections().create(body={"collection": {"name": "v0"}}).execute()["uuid"]
        seen = []
        for version in range(1, 21):
            body = {"collection": {"name": f"v{version}"}}
            api.collections().update(uuid=uuid, body=body).execute()
            seen.append((f"v{version}", api.collections().get(uuid=uuid).execute()["name"]))
        return seen

    for wrote, read in await in_thread(write_then_read):
        assert read == wrote


async def test_the_sdk_lists_90_uuids_of_two_clusters_in_one_call(
    pair: tuple[Cluster, Cluster],
) -> None:
    """A list whose URL passes 2048 characters: googleapiclient sends it as POST with
    X-HTTP-Method-Override: GET and the parameters in a form body (SPEC 3.6)."""
    qr1hi, c97qk = pair
    _, token = await qr1hi.new_user(email="ninety@qr1hi.example")
    headers = {"Authorization": f"Bearer {token}"}
    uuids = []
    async with httpx.AsyncClient(verify=False, headers=headers) as client:
        for cluster in (qr1hi, c97qk) * 45:
            made = await client.post(
                f"https://{cluster.host}/arvados/v1/collections", json={"collection": {}}
            )
            assert made.status_code == 200, made.text
            uuids.append(made.json()["uuid"])
    assert {uuid[:5] for uuid in uuids} == {"qr1hi", "c97qk"}
    api = sdk(c97qk, token)
    request = api.collections().list(filters=[["uuid", "in", uuids]], limit=1000)
    assert len(request.uri) > googleapiclient.http.MAX_URI_LENGTH
    listed = await in_thread(request.execute)
    assert (request.method, request.headers["x-http-method-override"]) == ("POST", "GET")
    assert sorted(item["uuid"] for item in listed["items"]) == sorted(uuids)
    assert listed["items_available"] == 90


async def test_the_sdk_logs_out_on_the_remote_and_the_token_ends_everywhere(
    pair: tuple[Cluster, Cluster],
) -> None:
    qr1hi, c97qk = pair
    user_uuid, token = await qr1hi.new_user()
    uuid = parse_token(token).uuid
    api = sdk(c97qk, salted_for(token, "c97qk"))
    assert (await in_thread(lambda: api.users().current().execute()))["uuid"] == user_uuid
    record = await in_thread(lambda: api.api_client_authorizations().delete(uuid=uuid).execute())
    assert (record["uuid"], record["owner_uuid"]) == (uuid, user_uuid)
    for cluster, presented in ((c97qk, salted_for(token, "c97qk")), (qr1hi, token)):
        with pytest.raises(arvados.errors.ApiError) as refused:
            client = sdk(cluster, presented)
            await in_thread(lambda: client.users().current().execute())  # noqa: B023
        assert refused.value.resp.status == 401
