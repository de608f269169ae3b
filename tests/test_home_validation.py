"""SPEC 3.1 against a real cluster process: local and salted tokens on the home side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusterfed.config import ClusterConfig, RemoteCluster
from clusterfed.errors import Unauthorized
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    free_port,
    remote_entry,
    running,
)
from clusterfed.server.users.auth import resolve_caller
from clusterfed.tokens import parse_token, salt
from starlette.requests import Request

from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
TOKEN_CURRENT = "/arvados/v1/api_client_authorizations/current"


@pytest.fixture(scope="module")
def home(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir: Path = tmp_path_factory.mktemp("home")
    # c97qk is a remote (never contacted here): copies salted for it count; zbbbb is not.
    remotes = {"c97qk": remote_entry(free_port())}
    config = cluster_config("qr1hi", session_databases.new_url("qr1hi"), remotes=remotes)
    with running(ClusterProcess(config, workdir)) as cluster:
        yield cluster


def get(cluster: Cluster, path: str, token: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{cluster.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
    )


def salted_for(token: str, remote: str) -> str:
    return salt(parse_token(token), remote).encode()


async def test_local_token_reads_its_user(home: Cluster) -> None:
    user_uuid, token = await home.new_user(email="alice@qr1hi.example")
    response = get(home, USERS_CURRENT, token)
    assert response.status_code == 200
    body = response.json()
    assert (body["kind"], body["uuid"], body["email"]) == (
        "arvados#user",
        user_uuid,
        "alice@qr1hi.example",
    )
    assert body["is_active"] is True


async def test_salted_token_accepted_only_with_matching_remote(home: Cluster) -> None:
    user_uuid, token = await home.new_user()
    salted = salted_for(token, "c97qk")
    assert get(home, USERS_CURRENT, salted, remote="c97qk").json()["uuid"] == user_uuid
    current = get(home, TOKEN_CURRENT, salted, remote="c97qk")
    assert current.status_code == 200
    assert current.json()["uuid"] == parse_token(token).uuid
    assert parse_token(token).secret not in current.text  # never the unsalted secret
    assert get(home, USERS_CURRENT, salted, remote="zbbbb").status_code == 401
    assert get(home, USERS_CURRENT, salted).status_code == 401
    assert get(home, USERS_CURRENT, salted, remote="qr1hi").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/arvados/v1/collections"),
        ("POST", "/arvados/v1/collections"),
        ("GET", "/arvados/v1/links"),
        ("GET", "/arvados/v1/groups/{project}"),
        ("PUT", "/arvados/v1/groups/{project}"),
    ],
)
async def test_salted_token_refused_on_other_endpoints(
    home: Cluster, method: str, path: str
) -> None:
    """Endpoints the same token reaches unsalted: the 401 is the salting's doing."""
    _, token = await home.new_user()
    auth = {"Authorization": f"Bearer {token}"}
    salted = {"Authorization": f"Bearer {salted_for(token, 'c97qk')}"}
    body = {"collection": {"name": "c"}} if "collections" in path else {"group": {"name": "q"}}
    json_body = body if method in ("POST", "PUT") else None
    async with httpx.AsyncClient(base_url=home.base_url, params={"remote": "c97qk"}) as client:
        created = await client.post(
            "/arvados/v1/groups",
            json={"group": {"name": "p", "group_class": "project"}},
            headers=auth,
        )
        url = path.format(project=created.json()["uuid"])
        refused = await client.request(method, url, json=json_body, headers=salted)
        served = await client.request(method, url, json=json_body, headers=auth)
    assert refused.status_code == 401, refused.text
    assert set(refused.json()) == {"errors", "error_token"}
    assert served.status_code == 200, served.text


def http_request(method: str, path: str, token: str, remote: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": f"remote={remote}".encode(),
            "headers": [(b"authorization", f"Bearer {token}".encode())],
        }
    )


async def test_salted_token_reaches_only_the_spec_routes(databases: DatabaseFactory) -> None:
    """SPEC 3.1's allowlist, checked where it is enforced: most routes do not exist yet."""
    cluster = Cluster("qr1hi", 0, databases.new_url())
    user_uuid, token = await cluster.new_user()
    salted = salted_for(token, "c97qk")
    config = ClusterConfig(
        cluster_id="qr1hi",
        database_url=cluster.database_url,
        remote_clusters={"c97qk": RemoteCluster(host="127.0.0.1:9")},
    )
    routes = {
        ("GET", TOKEN_CURRENT): True,
        ("HEAD", TOKEN_CURRENT): True,
        ("GET", USERS_CURRENT): True,
        ("GET", "/arvados/v1/groups"): True,
        ("POST", "/federation/v1/permission_checks"): True,
        ("GET", "/arvados/v1/groups/qr1hi-j7d0g-000000000000000"): False,
        ("GET", "/arvados/v1/users"): False,
        ("GET", f"/arvados/v1/users/{user_uuid}"): False,
        ("PUT", USERS_CURRENT): False,
        ("GET", "/arvados/v1/collections"): False,
        ("POST", "/arvados/v1/collections"): False,
        ("GET", "/federation/v1/token_cache"): False,
        ("GET", "/federation/v1/permission_checks"): False,
        ("GET", "/metrics"): False,
    }
    reached: dict[tuple[str, str], bool] = {}
    async with cluster.session() as session:
        for method, path in routes:
            try:
                caller = await resolve_caller(
                    http_request(method, path, salted, "c97qk"), session, config
                )
            except Unauthorized:
                reached[method, path] = False
            else:
                assert caller is not None and caller.user.uuid == user_uuid
                assert caller.salted_for == "c97qk"
                reached[method, path] = True
        # The same token unsalted reaches everything its scopes allow.
        for method, path in routes:
            caller = await resolve_caller(
                http_request(method, path, token, "c97qk"), session, config
            )
            assert caller is not None and caller.salted_for is None
    assert reached == routes


async def test_expired_token_is_refused(home: Cluster) -> None:
    user_uuid, _ = await home.new_user()
    expired = await home.new_token(user_uuid, expires_in=0.001)
    response = get(home, USERS_CURRENT, expired)
    assert response.status_code == 401
    assert response.json()["errors"] == ["token has expired"]


async def test_a_copy_salted_for_a_cluster_outside_remote_clusters_is_refused(
    home: Cluster,
) -> None:
    """zbbbb is not in qr1hi's RemoteClusters: a copy salted for it (handed to zbbbb by a
    fan-out elsewhere, say) reads nothing at home and revokes nothing; c97qk's copy works."""
    _, token = await home.new_user()
    inside, outside = salted_for(token, "c97qk"), salted_for(token, "zbbbb")
    check = {"target_uuid": "qr1hi-4zz18-aaaaaaaaaaaaaaa", "permission": "can_read"}
    async with httpx.AsyncClient(base_url=home.base_url) as client:

        async def statuses(credential: str, remote: str) -> list[int]:
            auth = {"Authorization": f"Bearer {credential}"}
            params = {"remote": remote}
            answers = [
                await client.get(USERS_CURRENT, params=params, headers=auth),
                await client.get(TOKEN_CURRENT, params=params, headers=auth),
                await client.get("/arvados/v1/groups", params=params, headers=auth),
                await client.post(
                    "/federation/v1/permission_checks", params=params, json=check, headers=auth
                ),
            ]
            return [answer.status_code for answer in answers]

        assert await statuses(outside, "zbbbb") == [401] * 4
        assert await statuses(inside, "c97qk") == [200] * 4
        uuid = parse_token(token).uuid
        path = f"/arvados/v1/api_client_authorizations/{uuid}"
        for params in ({"remote": "zbbbb"}, {}):
            refused = await client.delete(
                path, params=params, headers={"Authorization": f"Bearer {outside}"}
            )
            assert refused.status_code == 401, refused.text
        assert (
            await client.get(USERS_CURRENT, headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        ended = await client.delete(path, headers={"Authorization": f"Bearer {inside}"})
        assert ended.status_code == 200, ended.text
