"""Runtime tokens and admin, as an attacker runs them, on real processes.

qr1hi is the login cluster and lists its satellites c97qk and z1234. c97qk also lists
x1iar, a stub peer that lies: its exported config claims ``LoginCluster: qr1hi`` and it
vouches for tokens "owned" by qr1hi's users, its admin included. qr1hi does not list
x1iar, and only qr1hi can say who is in its federation, so x1iar's word counts for
nothing. A genuine satellite's runtime token for qr1hi's admin is accepted, but it makes
its holder admin nowhere: not in the object API (another user's private collection stays
invisible), not in the admin API, not on the satellite that issued it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    ServerThread,
    cluster_config,
    free_port,
    remote_entry,
    running_together,
)

from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import CONFIG_PATH, StubIssuer, StubUser

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
COLLECTIONS = "/arvados/v1/collections"
TOKEN_CACHE = "/federation/v1/token_cache"
LIAR = "x1iar"


@dataclass
class World:
    qr1hi: Cluster
    c97qk: Cluster
    z1234: Cluster
    login_process: ClusterProcess
    liar: StubIssuer
    admin: str  # qr1hi's admin
    admin_token: str
    alice: str  # a plain qr1hi user
    private: dict[str, tuple[str, str]]  # cluster -> (a local user's private collection, token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(cluster: Cluster, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{cluster.base_url}{path}", headers=bearer(token), timeout=15)


def rename(cluster: Cluster, uuid: str, token: str) -> httpx.Response:
    body = {"collection": {"name": "renamed by an attacker"}}
    return httpx.put(
        f"{cluster.base_url}{COLLECTIONS}/{uuid}", json=body, headers=bearer(token), timeout=15
    )


async def private_collection(cluster: Cluster) -> tuple[str, str]:
    """A new local user's private collection on ``cluster``: (its UUID, the owner's token)."""
    _, token = await cluster.new_user()
    async with httpx.AsyncClient(base_url=cluster.base_url, headers=bearer(token)) as client:
        made = await client.post(COLLECTIONS, json={"collection": {"name": "private"}})
    assert made.status_code == 200, made.text
    return made.json()["uuid"], token


@pytest.fixture(scope="module")
def world(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    workdir: Path = tmp_path_factory.mktemp("runtime-admin")
    liar = StubIssuer(LIAR)
    ports = {cluster_id: free_port() for cluster_id in ("qr1hi", "c97qk", "z1234")}
    with ServerThread(liar.app) as liar_server:
        ports[LIAR] = liar_server.port
        login = {"LoginCluster": "qr1hi", "RemoteTokenRefresh": "1h"}

        def remotes(*ids: str) -> dict[str, dict[str, object]]:
            return {cluster_id: remote_entry(ports[cluster_id]) for cluster_id in ids}

        # The liar claims what a satellite would: the same login cluster, and peers.
        liar.exported = {
            "ClusterID": LIAR,
            "Login": {"LoginCluster": "qr1hi"},
            "RemoteClusters": remotes("qr1hi", "c97qk"),
        }
        peers = {"qr1hi": ("c97qk", "z1234"), "c97qk": ("qr1hi", "z1234", LIAR)}
        peers["z1234"] = ("qr1hi", "c97qk")
        processes = {
            cluster_id: ClusterProcess(
                cluster_config(
                    cluster_id,
                    session_databases.new_url(cluster_id),
                    remotes=remotes(*peers[cluster_id]),
                    login=login,
                    system_root_token=f"root-of-{cluster_id}-for-the-runtime-token-tests",
                ),
                workdir,
                port=ports[cluster_id],
            )
            for cluster_id in ("qr1hi", "c97qk", "z1234")
        }
        # All three start at once: none needs the others up to start.
        with running_together(*processes.values()) as started:
            clusters = dict(zip(processes, started, strict=True))
            admin, admin_token = asyncio.run(clusters["qr1hi"].new_user(is_admin=True))
            alice, alice_token = asyncio.run(clusters["qr1hi"].new_user())
            for satellite in ("c97qk", "z1234"):  # both mirror both users
                for token in (admin_token, alice_token):
                    seen = get(clusters[satellite], USERS_CURRENT, token)
                    assert seen.status_code == 200, seen.text
            private = {
                cluster_id: asyncio.run(private_collection(cluster))
                for cluster_id, cluster in clusters.items()
            }
            yield World(
                qr1hi=clusters["qr1hi"],
                c97qk=clusters["c97qk"],
                z1234=clusters["z1234"],
                login_process=processes["qr1hi"],
                liar=liar,
                admin=admin,
                admin_token=admin_token,
                alice=alice,
                private=private,
            )


def test_the_login_clusters_own_token_is_admin_on_a_satellite(world: World) -> None:
    """The control: what the refusals below refuse is real admin power."""
    uuid, _ = world.private["c97qk"]
    assert get(world.c97qk, USERS_CURRENT, world.admin_token).json()["is_admin"] is True
    assert get(world.c97qk, f"{COLLECTIONS}/{uuid}", world.admin_token).status_code == 200
    assert get(world.c97qk, TOKEN_CACHE, world.admin_token).status_code == 200


@pytest.mark.parametrize("whom", ["admin", "alice"])
def test_a_lying_peer_cannot_vouch_for_a_login_cluster_user(world: World, whom: str) -> None:
    user = world.admin if whom == "admin" else world.alice
    forged = world.liar.issue_for(StubUser(user, {"is_admin": True, "is_active": True}))
    before = world.liar.total_calls()
    refused = get(world.c97qk, USERS_CURRENT, forged)
    assert refused.status_code == 401, refused.text
    assert "qr1hi does not list x1iar" in refused.json()["errors"][0]
    assert world.liar.total_calls() > before  # it was asked, and its answer not believed
    assert world.liar.calls[CONFIG_PATH] >= 1
    # qr1hi's own config decided it, read once and then remembered.
    reads = world.login_process.log().count(" /arvados/v1/config HTTP/1.1")
    assert reads >= 1
    again = world.liar.issue_for(StubUser(user, {"is_admin": True, "is_active": True}))
    assert get(world.c97qk, USERS_CURRENT, again).status_code == 401
    assert world.login_process.log().count(" /arvados/v1/config HTTP/1.1") == reads
    uuid, _ = world.private["c97qk"]
    for response in (
        get(world.c97qk, f"{COLLECTIONS}/{uuid}", forged),
        rename(world.c97qk, uuid, forged),
        get(world.c97qk, TOKEN_CACHE, forged),
    ):
        assert response.status_code == 401, response.text


def test_a_genuine_satellites_runtime_token_is_accepted_but_admin_nowhere(world: World) -> None:
    runtime = asyncio.run(world.c97qk.new_token(world.admin))
    assert runtime.startswith("v2/c97qk-gj3su-")
    for cluster in (world.z1234, world.qr1hi, world.c97qk):
        who = get(cluster, USERS_CURRENT, runtime)
        assert who.status_code == 200, (cluster.cluster_id, who.text)
        assert (who.json()["uuid"], who.json()["is_admin"]) == (world.admin, False)
        uuid, owner_token = world.private[cluster.cluster_id]
        # Another user's private collection does not exist for this holder ...
        assert get(cluster, f"{COLLECTIONS}/{uuid}", runtime).status_code == 404
        assert rename(cluster, uuid, runtime).status_code == 404
        assert get(cluster, f"{COLLECTIONS}/{uuid}", owner_token).json()["name"] == "private"
        listed = get(cluster, COLLECTIONS, runtime).json()["items"]
        assert uuid not in {item["uuid"] for item in listed}
        # ... and the admin API refuses it.
        assert get(cluster, TOKEN_CACHE, runtime).status_code == 403, cluster.cluster_id


def test_a_runtime_token_cannot_mint_an_admin_token(world: World) -> None:
    """Creating a token with it, at the login cluster or through a satellite that
    forwards the create there, would launder it into a token the login cluster issued."""
    runtime = asyncio.run(world.z1234.new_token(world.admin))
    body = {"api_client_authorization": {}}
    for cluster in (world.qr1hi, world.c97qk):
        made = httpx.post(
            f"{cluster.base_url}/arvados/v1/api_client_authorizations",
            json=body,
            headers=bearer(runtime),
            timeout=15,
        )
        assert made.status_code == 403, (cluster.cluster_id, made.text)
        assert "does not carry" in made.json()["errors"][0]
    # The admin's own token still can.
    made = httpx.post(
        f"{world.qr1hi.base_url}/arvados/v1/api_client_authorizations",
        json=body,
        headers=bearer(world.admin_token),
        timeout=15,
    )
    assert made.status_code == 200, made.text
