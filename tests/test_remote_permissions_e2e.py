"""The seed scenario with real clusters on loopback (SPEC 3.3).

A qr1hi user owns a collection on c97qk and moves it into a project on qr1hi; c97qk asks
qr1hi whether the user may write there. zbbbb is a third real cluster whose users must
not be asked about at qr1hi.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from clusterfed.tokens import GROUP_TYPE, new_uuid

from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

TTL = 1.0


@dataclass
class Trio:
    qr1hi: Cluster
    c97qk: Cluster
    zbbbb: Cluster


@pytest.fixture(scope="module")
def trio(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trio]:
    workdir: Path = tmp_path_factory.mktemp("trio")
    # The homes list c97qk: their users' tokens salted for it count only there.
    port = free_port()
    homes = {
        cluster_id: ClusterProcess(
            cluster_config(
                cluster_id,
                session_databases.new_url(cluster_id),
                remotes={"c97qk": remote_entry(port)},
            ),
            workdir,
        )
        for cluster_id in ("qr1hi", "zbbbb")
    }
    config = cluster_config(
        "c97qk",
        session_databases.new_url("c97qk"),
        remotes={
            "qr1hi": remote_entry(homes["qr1hi"].port, ActivateUsers=True),
            "zbbbb": remote_entry(homes["zbbbb"].port, ActivateUsers=True),
        },
        federation={"PermissionCacheTTL": f"{TTL}s"},
    )
    c97qk = ClusterProcess(config, workdir, port=port)
    # All three start at once: none needs the others up to start.
    with running_together(homes["qr1hi"], homes["zbbbb"], c97qk) as (qr1hi, zbbbb, remote):
        yield Trio(qr1hi, remote, zbbbb)


async def api(
    cluster: Cluster, method: str, path: str, token: str, body: Any = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=20) as client:
        return await client.request(
            method, f"/arvados/v1/{path}", json=body, headers={"Authorization": f"Bearer {token}"}
        )


async def made(cluster: Cluster, token: str, resource: str, body: dict[str, Any]) -> str:
    response = await api(cluster, "POST", resource, token, body)
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


async def grant(cluster: Cluster, token: str, tail: str, head: str, name: str) -> str:
    body = {"link_class": "permission", "name": name, "tail_uuid": tail, "head_uuid": head}
    return await made(cluster, token, "links", body)


@dataclass
class Scene:
    owner: str  # token of the project's owner on qr1hi
    user: str  # user UUID of the mover
    token: str  # the mover's qr1hi token
    project: str  # a project on qr1hi owned by `owner`


async def scene(trio: Trio) -> Scene:
    _, owner = await trio.qr1hi.new_user()
    user, token = await trio.qr1hi.new_user()
    project = await made(trio.qr1hi, owner, "groups", {"name": "shared", "group_class": "project"})
    return Scene(owner, user, token, project)


async def move(trio: Trio, s: Scene, target: str) -> httpx.Response:
    """On c97qk: create a collection as the qr1hi user, then move it into ``target``."""
    # A fresh name each time: (owner, name) is unique, and one user moves several.
    name = f"results-{secrets.token_hex(4)}"
    collection = await made(trio.c97qk, s.token, "collections", {"name": name})
    return await api(
        trio.c97qk, "PATCH", f"collections/{collection}", s.token, {"owner_uuid": target}
    )


def refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["errors"][0]
    assert all(word in message for word in words), message


async def test_move_with_direct_can_write(trio: Trio) -> None:
    s = await scene(trio)
    await grant(trio.qr1hi, s.owner, s.user, s.project, "can_write")
    response = await move(trio, s, s.project)
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["owner_uuid"] == s.project and moved["uuid"].startswith("c97qk-4zz18-")
    # From now on c97qk asks qr1hi about this object: readable, and writable.
    got = await api(trio.c97qk, "GET", f"collections/{moved['uuid']}", s.token)
    assert got.status_code == 200, got.text
    renamed = await api(
        trio.c97qk, "PUT", f"collections/{moved['uuid']}", s.token, {"collection": {"name": "n"}}
    )
    assert renamed.status_code == 200, renamed.text
    listed = await api(trio.c97qk, "GET", "collections", s.token)
    assert moved["uuid"] in [item["uuid"] for item in listed.json()["items"]]


async def test_move_with_can_write_through_a_role(trio: Trio) -> None:
    s = await scene(trio)
    role = await made(trio.qr1hi, s.owner, "groups", {"name": "lab", "group_class": "role"})
    await grant(trio.qr1hi, s.owner, role, s.project, "can_write")
    await grant(trio.qr1hi, s.owner, s.user, role, "can_write")
    response = await move(trio, s, s.project)
    assert response.status_code == 200, response.text


async def test_move_into_a_subproject_of_a_writable_project(trio: Trio) -> None:
    s = await scene(trio)
    child = await made(
        trio.qr1hi,
        s.owner,
        "groups",
        {"name": "child", "group_class": "project", "owner_uuid": s.project},
    )
    await grant(trio.qr1hi, s.owner, s.user, s.project, "can_write")
    response = await move(trio, s, child)
    assert response.status_code == 200, response.text


async def test_read_only_nothing_or_no_such_project_is_403(trio: Trio) -> None:
    s = await scene(trio)
    refused(await move(trio, s, s.project), 403, "qr1hi says you may not write to project")
    await grant(trio.qr1hi, s.owner, s.user, s.project, "can_read")
    await asyncio.sleep(TTL + 0.2)  # the denial above is cached for the TTL
    refused(await move(trio, s, s.project), 403, "qr1hi says", s.project, "only can_read")
    missing = new_uuid("qr1hi", GROUP_TYPE)
    refused(await move(trio, s, missing), 403, "qr1hi says you may not write to project")


async def test_a_third_clusters_user_is_refused_with_the_reason(trio: Trio) -> None:
    s = await scene(trio)
    _, stranger = await trio.zbbbb.new_user()
    collection = await made(trio.c97qk, stranger, "collections", {"name": "theirs"})
    response = await api(
        trio.c97qk, "PATCH", f"collections/{collection}", stranger, {"owner_uuid": s.project}
    )
    refused(response, 422, "only the user's home cluster is asked", "third cluster")


async def test_a_local_user_cannot_move_into_a_remote_project(trio: Trio) -> None:
    s = await scene(trio)
    _, local = await trio.c97qk.new_user()
    collection = await made(trio.c97qk, local, "collections", {"name": "local"})
    response = await api(
        trio.c97qk, "PATCH", f"collections/{collection}", local, {"owner_uuid": s.project}
    )
    refused(response, 422, "issued by c97qk")


async def test_revocation_takes_effect_within_the_cache_ttl(trio: Trio) -> None:
    s = await scene(trio)
    link = await grant(trio.qr1hi, s.owner, s.user, s.project, "can_write")
    assert (await move(trio, s, s.project)).status_code == 200
    revoked = await api(trio.qr1hi, "DELETE", f"links/{link}", s.owner)
    assert revoked.status_code == 200, revoked.text
    # Still allowed right after the revocation: c97qk answers from its cache ...
    assert (await move(trio, s, s.project)).status_code == 200
    await asyncio.sleep(TTL + 0.3)
    # ... and refused once the cached answer has expired.
    refused(await move(trio, s, s.project), 403, "qr1hi says you may not write")


async def test_checks_fail_closed_when_home_cannot_answer(
    session_databases: DatabaseFactory, tmp_path: Path
) -> None:
    home = ClusterProcess(cluster_config("qr1hi", session_databases.new_url("qr1hi")), tmp_path)
    config = cluster_config(
        "c97qk",
        session_databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(home.port, ActivateUsers=True)},
        login={"RemoteTokenRefresh": "1h"},
        federation={"RemoteTimeout": "2s"},
    )
    with running_together(home, ClusterProcess(config, tmp_path)) as (qr1hi, c97qk):
        s = await scene(Trio(qr1hi, c97qk, qr1hi))
        await grant(qr1hi, s.owner, s.user, s.project, "can_write")
        collection = await made(c97qk, s.token, "collections", {"name": "r"})  # caches the user
        home.stop()
        response = await api(
            c97qk, "PATCH", f"collections/{collection}", s.token, {"owner_uuid": s.project}
        )
        assert response.status_code == 502, response.text
        still = await api(c97qk, "GET", f"collections/{collection}", s.token)
        assert still.json()["owner_uuid"] != s.project
