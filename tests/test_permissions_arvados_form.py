"""SPEC 3.3 in Arvados's form: asked of a home that speaks only Arvados, answered as Arvados.

The calling side asks ``GET /arvados/v1/groups?remote=<us>&filters=[["uuid","=",X]]&
select=["uuid","can_write","can_manage"]`` with the user's token salted for the home;
the home side answers that query with ``can_write`` / ``can_manage`` for the caller
(Arvados's ``Group#can_write``, ``#can_manage``), computed by the local permission walk.
"""

from __future__ import annotations

import json

from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    Cluster,
    ServerThread,
    free_port,
    local_config,
    remote_entry,
)
from clusterfed.tokens import GROUP_TYPE, new_uuid, parse_token, salt

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import GROUPS_PATH, StubIssuer

SELECT = ["uuid", "can_write", "can_manage"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_groups_list_carries_can_write_and_can_manage_for_the_caller(
    databases: DatabaseFactory,
) -> None:
    # c97qk asks in Arvados's form with salted copies, which count only for a remote.
    remotes = {"c97qk": remote_entry(free_port())}
    config = local_config("qr1hi", databases.new_url("qr1hi"), remotes=remotes)
    cluster = Cluster("qr1hi", 0, config.database_url)
    owner_uuid, owner = await cluster.new_user()
    reader_uuid, reader = await cluster.new_user()
    writer_uuid, writer = await cluster.new_user()
    _, stranger = await cluster.new_user()
    _, admin = await cluster.new_user(is_admin=True)
    async with asgi_client(create_app(config)) as client:
        made = await client.post(
            GROUPS_PATH,
            json={"group": {"name": "p", "group_class": "project"}},
            headers=bearer(owner),
        )
        project = made.json()["uuid"]
        for tail, level in ((reader_uuid, "can_read"), (writer_uuid, "can_write")):
            link = {"link_class": "permission", "name": level, "tail_uuid": tail}
            granted = await client.post(
                "/arvados/v1/links", json={**link, "head_uuid": project}, headers=bearer(owner)
            )
            assert granted.status_code == 200, granted.text

        async def flags(
            token: str, *, remote: str | None = None, by: str = "uuid"
        ) -> list[dict[str, object]]:
            # By uuid, each group is decided by a walk up from it; by name, by the walk
            # down from the caller that the listing itself uses: the same answers.
            value = project if by == "uuid" else "p"
            params = {"filters": json.dumps([[by, "=", value]]), "select": json.dumps(SELECT)}
            if remote is not None:
                params["remote"] = remote
            answer = await client.get(GROUPS_PATH, params=params, headers=bearer(token))
            assert answer.status_code == 200, answer.text
            return answer.json()["items"]

        expected = {
            owner: (True, True),
            admin: (True, True),
            writer: (True, False),
            reader: (False, False),
        }
        for token, (can_write, can_manage) in expected.items():
            item = {"kind": "arvados#group", "uuid": project, "can_write": can_write}
            for by in ("uuid", "name"):
                assert await flags(token, by=by) == [{**item, "can_manage": can_manage}]
        assert await flags(stranger) == [] and await flags(stranger, by="name") == []
        # As another cluster asks it: the writer's token salted for c97qk, remote=c97qk.
        salted = salt(parse_token(writer), "c97qk").encode()
        assert [(i["can_write"], i["can_manage"]) for i in await flags(salted, remote="c97qk")] == [
            (True, False)
        ]
    assert owner_uuid.startswith("qr1hi-")


async def test_a_move_into_a_project_on_an_arvados_only_home(databases: DatabaseFactory) -> None:
    home = StubIssuer("qr1hi")  # serves the validation calls and the groups list, nothing else
    token, alice = home.issue(email="alice@qr1hi.example", is_active=True, is_invited=True)
    writable, readable, unknown = (new_uuid("qr1hi", GROUP_TYPE) for _ in range(3))
    home.grants = {writable: {alice.uuid: (True, False)}, readable: {alice.uuid: (False, False)}}
    server = ServerThread(home.app).start()
    try:
        config = local_config(
            "c97qk",
            databases.new_url("c97qk"),
            remotes={"qr1hi": remote_entry(server.port, ActivateUsers=True)},
            federation={"PermissionCacheTTL": "0s", "RemoteTimeout": "3s"},
        )
        async with asgi_client(create_app(config)) as client:
            made = await client.post(
                "/arvados/v1/collections", json={"collection": {}}, headers=bearer(token)
            )
            assert made.status_code == 200, made.text
            path = f"/arvados/v1/collections/{made.json()['uuid']}"

            async def move(project: str) -> tuple[int, str]:
                answer = await client.patch(
                    path, json={"collection": {"owner_uuid": project}}, headers=bearer(token)
                )
                return answer.status_code, answer.text

            assert (await move(readable))[0] == 403
            assert (await move(unknown))[0] == 403
            status, text = await move(writable)
            assert status == 200 and writable in text

            # Asked as Arvados answers: the groups list, the token salted for c97qk.
            credential, query = home.group_requests[-1]
            assert credential == salt(parse_token(token), "c97qk").encode()
            assert query["remote"] == "c97qk"
            assert json.loads(query["filters"]) == [["uuid", "=", writable]]
            assert json.loads(query["select"]) == SELECT

            server.stop()  # the home is down: the move back out is neither allowed nor denied
            status, text = await move(readable)
            assert status == 502, text
            assert set(json.loads(text)) == {"errors", "error_token"}
    finally:
        server.stop()
