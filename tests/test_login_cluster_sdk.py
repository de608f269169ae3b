"""The real Arvados SDK against a satellite of a login cluster, over TLS (SPEC 3.8).

What Workbench and the arv-* tools do on a satellite: present a bare secret issued by
the login cluster, ask for a new token, list users. qr1hi is the login cluster, c97qk a
satellite; both real processes serving HTTPS with a self-signed certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    remote_entry,
    running_together,
)
from clusterfed.tokens import parse_token

from tests.support.databases import DatabaseFactory
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk
from tests.support.tls import self_signed

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

LOGIN = {"LoginCluster": "qr1hi"}


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    workdir: Path = tmp_path_factory.mktemp("login-sdk")
    cert, key = self_signed(workdir)
    tls = {"Certificate": str(cert), "Key": str(key)}
    login_config = cluster_config("qr1hi", session_databases.new_url("qr1hi"), login=LOGIN)
    login_config["Clusters"]["qr1hi"]["TLS"] = tls
    login = ClusterProcess(login_config, workdir)
    remote = {**remote_entry(login.port), "Scheme": "https", "Insecure": True}
    config = cluster_config(
        "c97qk",
        session_databases.new_url("c97qk"),
        remotes={"qr1hi": remote},
        login=LOGIN,
        system_root_token="c97qk-root-token-for-the-sdk-tests",
    )
    config["Clusters"]["c97qk"]["TLS"] = tls
    # Both start at once: the satellite does not need its login cluster up to start.
    with running_together(login, ClusterProcess(config, workdir)) as (qr1hi, c97qk):
        yield qr1hi, c97qk


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)


async def test_the_sdk_on_a_satellite_with_a_bare_secret_of_the_login_cluster(
    pair: tuple[Cluster, Cluster],
) -> None:
    qr1hi, c97qk = pair
    user, token = await qr1hi.new_user(email="gina@qr1hi.example")
    other, _ = await qr1hi.new_user(email="hal@qr1hi.example")
    api = sdk(c97qk, parse_token(token).secret)

    me = await in_thread(lambda: api.users().current().execute())
    assert me["uuid"] == user

    body = {"api_client_authorization": {"scopes": ["all"]}}
    created = await in_thread(lambda: api.api_client_authorizations().create(body=body).execute())
    assert created["uuid"].startswith("qr1hi-gj3su-") and created["owner_uuid"] == user
    new_token = f"v2/{created['uuid']}/{created['api_token']}"
    assert (await in_thread(lambda: sdk(qr1hi, new_token).users().current().execute()))[
        "uuid"
    ] == user

    listing = await in_thread(lambda: api.users().list(limit=1000).execute())
    assert {user, other} <= {item["uuid"] for item in listing["items"]}
    mine = await in_thread(lambda: api.api_client_authorizations().list().execute())
    assert created["uuid"] in [item["uuid"] for item in mine["items"]]
