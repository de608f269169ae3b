"""Collection and project names are unique in their owner; ``ensure_unique_name`` renames.

In process on both backends, plus migration 0003 renaming the duplicates it finds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from clusterfed.config import parse_config
from clusterfed.server.app import create_app
from clusterfed.server.migrate import SERVER_CHAIN
from clusterfed.server.models import Collection, Group
from clusterfed.server.objects import names
from clusterfed.server.testing import Cluster, cluster_config
from clusterfed.storage.db import utcnow
from clusterfed.storage.migrate import alembic_config
from clusterfed.tokens import COLLECTION_TYPE, GROUP_TYPE, new_uuid
from sqlalchemy import select

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory, run_blocking

COLLECTIONS = "/arvados/v1/collections"
GROUPS = "/arvados/v1/groups"
STAMPED = r" \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)"


@dataclass
class Home:
    client: httpx.AsyncClient
    cluster: Cluster

    async def user(self) -> tuple[str, str]:
        return await self.cluster.new_user()

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.call(method, path, token, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def home(databases: DatabaseFactory) -> AsyncIterator[Home]:
    url = databases.new_url("names")
    app = create_app(parse_config(cluster_config("qr1hi", url)))
    async with asgi_client(app) as client:
        yield Home(client, Cluster("qr1hi", 0, url))


def refused(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"}
    return body["errors"][0]


async def test_a_second_collection_of_the_same_name_and_owner_is_refused(home: Home) -> None:
    _, ann = await home.user()
    _, bob = await home.user()
    first = await home.ok("POST", COLLECTIONS, ann, json={"collection": {"name": "sample"}})
    message = refused(await home.call("POST", COLLECTIONS, ann, json={"name": "sample"}))
    assert "'sample' already exists" in message and first["owner_uuid"] in message
    # Another owner, and unnamed collections, are free.
    assert (await home.ok("POST", COLLECTIONS, bob, json={"name": "sample"}))["name"] == "sample"
    for _ in range(2):
        assert (await home.ok("POST", COLLECTIONS, ann, json={}))["name"] is None
    listed = await home.ok("GET", COLLECTIONS, ann, params={"filters": '[["name","=","sample"]]'})
    assert [item["uuid"] for item in listed["items"]] == [first["uuid"]]


async def test_ensure_unique_name_appends_a_timestamp(home: Home) -> None:
    _, ann = await home.user()
    body = {"collection": {"name": "sample"}}
    plain = await home.ok("POST", COLLECTIONS, ann, json=body, params={"ensure_unique_name": "1"})
    assert plain["name"] == "sample"  # free: kept as asked
    renamed = [
        (await home.ok("POST", COLLECTIONS, ann, json=body, params={"ensure_unique_name": "true"}))[
            "name"
        ]
        for _ in range(3)
    ]
    for name in renamed:
        assert re.fullmatch(f"sample{STAMPED}", name), name
    assert len(set(renamed)) == 3
    explicit = await home.call(
        "POST", COLLECTIONS, ann, json=body, params={"ensure_unique_name": "false"}
    )
    refused(explicit)
    refused(
        await home.call("POST", COLLECTIONS, ann, json=body, params={"ensure_unique_name": "x"})
    )


async def test_a_long_name_is_cut_to_keep_its_timestamp(home: Home) -> None:
    _, ann = await home.user()
    long = "n" * 255
    await home.ok("POST", COLLECTIONS, ann, json={"name": long})
    made = await home.ok(
        "POST", COLLECTIONS, ann, json={"name": long}, params={"ensure_unique_name": "true"}
    )
    assert len(made["name"]) == 255 and re.fullmatch(f"n+{STAMPED}", made["name"])


async def test_concurrent_creates_never_share_a_name(home: Home) -> None:
    _, ann = await home.user()

    async def create(ensure: bool, name: str) -> httpx.Response:
        params = {"ensure_unique_name": "true"} if ensure else {}
        return await home.call("POST", COLLECTIONS, ann, json={"name": name}, params=params)

    racing = await asyncio.gather(*(create(False, "race") for _ in range(4)))
    assert sorted(response.status_code for response in racing) == [200, 422, 422, 422]
    renamed = await asyncio.gather(*(create(True, "renamed") for _ in range(4)))
    names = [response.json()["name"] for response in renamed]
    assert all(response.status_code == 200 for response in renamed)
    assert len(set(names)) == 4 and "renamed" in names


async def test_many_concurrent_renaming_creates_all_succeed(home: Home) -> None:
    """Arvados users run many concurrent creates with ensure_unique_name: none may fail.

    Creates that wait on one another's uncommitted name wake up together and stamp the
    same millisecond; that must cost another try, never a 422.
    """
    _, ann = await home.user()

    async def create() -> httpx.Response:
        params = {"ensure_unique_name": "true"}
        return await home.call("POST", COLLECTIONS, ann, json={"name": "busy"}, params=params)

    names: list[str] = []
    for _ in range(3):
        answers = await asyncio.gather(*(create() for _ in range(8)))
        assert [response.status_code for response in answers] == [200] * 8, [
            response.text for response in answers if response.status_code != 200
        ]
        names += [response.json()["name"] for response in answers]
    assert len(set(names)) == 24 and "busy" in names
    for name in names:
        assert name == "busy" or re.fullmatch(f"busy{STAMPED}", name), name


async def test_renaming_does_not_wait_for_the_clock_to_move(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Creates that stamp the same millisecond (a burst, or a coarse clock) must each try a
    # later one, not the same one again: deterministic, where the race above is not.
    frozen = utcnow()
    monkeypatch.setattr(names, "utcnow", lambda: frozen)
    _, ann = await home.user()
    params = {"ensure_unique_name": "true"}
    made = [
        (await home.ok("POST", COLLECTIONS, ann, json={"name": "tick"}, params=params))["name"]
        for _ in range(4)
    ]
    assert made[0] == "tick" and len(set(made)) == 4
    for name in made[1:]:
        assert re.fullmatch(f"tick{STAMPED}", name), name


async def test_projects_are_unique_in_their_owner_and_roles_are_not(home: Home) -> None:
    _, ann = await home.user()
    project = {"group": {"name": "lab", "group_class": "project"}}
    await home.ok("POST", GROUPS, ann, json=project)
    refused(await home.call("POST", GROUPS, ann, json=project))
    renamed = await home.ok("POST", GROUPS, ann, json=project, params={"ensure_unique_name": 1})
    assert re.fullmatch(f"lab{STAMPED}", renamed["name"])
    role = {"group": {"name": "lab", "group_class": "role"}}
    roles = [await home.ok("POST", GROUPS, ann, json=role) for _ in range(2)]
    assert [made["name"] for made in roles] == ["lab", "lab"]


async def test_renaming_or_moving_onto_a_taken_name_is_refused(home: Home) -> None:
    _, ann = await home.user()
    taken = await home.ok("POST", COLLECTIONS, ann, json={"name": "taken"})
    other = await home.ok("POST", COLLECTIONS, ann, json={"name": "other"})
    path = f"{COLLECTIONS}/{other['uuid']}"
    refused(await home.call("PATCH", path, ann, json={"name": "taken"}))
    assert (await home.ok("GET", path, ann))["name"] == "other"  # rolled back

    project = await home.ok("POST", GROUPS, ann, json={"name": "p", "group_class": "project"})
    inside = {"name": "taken", "owner_uuid": project["uuid"]}
    moved = await home.ok("POST", COLLECTIONS, ann, json=inside)
    move = {"collection": {"owner_uuid": taken["owner_uuid"]}}
    message = refused(await home.call("PUT", f"{COLLECTIONS}/{moved['uuid']}", ann, json=move))
    assert "'taken'" in message and taken["owner_uuid"] in message
    assert (await home.ok("GET", f"{COLLECTIONS}/{moved['uuid']}", ann))["owner_uuid"] == (
        project["uuid"]
    )
    # Renaming to its own name is no conflict.
    assert (await home.ok("PATCH", path, ann, json={"name": "other"}))["name"] == "other"


async def test_replication_desired_can_only_be_the_cluster_default(home: Home) -> None:
    _, ann = await home.user()
    body = {"name": "r", "manifest_text": "", "replication_desired": None}
    made = await home.ok("POST", COLLECTIONS, ann, json=body)
    assert made["name"] == "r"
    message = refused(
        await home.call(
            "POST", COLLECTIONS, ann, json={**body, "name": "s", "replication_desired": 2}
        )
    )
    assert "replication_desired" in message and "no Keep" in message
    update = {"collection": {"replication_desired": 3}}
    refused(await home.call("PUT", f"{COLLECTIONS}/{made['uuid']}", ann, json=update))
    # Only collections have it.
    project = {"name": "p", "group_class": "project", "replication_desired": None}
    assert "replication_desired" in refused(await home.call("POST", GROUPS, ann, json=project))


def _server_chain(url: str):  # the example server's chain, where 0003 lives
    return alembic_config(url, Path(str(files(SERVER_CHAIN))))


def _upgrade(url: str, revision: str) -> None:
    command.upgrade(_server_chain(url), revision)


def _downgrade(url: str, revision: str) -> None:
    command.downgrade(_server_chain(url), revision)


async def test_migration_0003_renames_the_duplicates_it_finds(databases: DatabaseFactory) -> None:
    url = databases.new_url("migrate")
    run_blocking(_downgrade, url, "0002")
    cluster = Cluster("qr1hi", 0, url)
    owner = "qr1hi-tpzed-000000000000001"
    collections = [new_uuid("qr1hi", COLLECTION_TYPE) for _ in range(3)]
    projects = [new_uuid("qr1hi", GROUP_TYPE) for _ in range(2)]
    roles = [new_uuid("qr1hi", GROUP_TYPE) for _ in range(2)]
    async with cluster.session() as session:
        for uuid, name in zip(collections, ("dup", "dup", "x" * 255), strict=True):
            session.add(
                Collection(uuid=uuid, owner_uuid=owner, name=name, portable_data_hash="d+0")
            )
            await session.flush()  # created_at order: the first is the oldest
        session.add(
            Collection(
                uuid=new_uuid("qr1hi", COLLECTION_TYPE),
                owner_uuid=owner,
                name="x" * 255,
                portable_data_hash="d+0",
                created_at=utcnow(),
            )
        )
        for uuid in projects:
            session.add(Group(uuid=uuid, owner_uuid=owner, name="p", group_class="project"))
            await session.flush()
        for uuid in roles:
            session.add(Group(uuid=uuid, owner_uuid=owner, name="r", group_class="role"))
    run_blocking(_upgrade, url, "head")
    async with cluster.session() as session:
        names = dict((await session.execute(select(Collection.uuid, Collection.name))).all())
        groups = dict((await session.execute(select(Group.uuid, Group.name))).all())
    assert names[collections[0]] == "dup"
    assert names[collections[1]] == f"dup ({collections[1]})"
    long_names = sorted(name for name in names.values() if name.startswith("xxx"))
    assert long_names[-1] == "x" * 255 and len(long_names[0]) == 255
    assert long_names[0].endswith(")") and long_names[0][-28:-1] in names
    assert groups[projects[0]] == "p" and groups[projects[1]] == f"p ({projects[1]})"
    assert [groups[uuid] for uuid in roles] == ["r", "r"]
