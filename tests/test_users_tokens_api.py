"""The example server's Arvados-shaped token and user endpoints, in process, on both
databases: what a login cluster serves to its satellites (SPEC 3.8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from clusterfed.server.app import create_app
from clusterfed.server.testing import Cluster, local_config
from clusterfed.tokens import parse_token, salt, system_user_uuid

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory

TOKENS = "/arvados/v1/api_client_authorizations"
USERS = "/arvados/v1/users"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def cluster(databases: DatabaseFactory) -> Cluster:
    return Cluster("qr1hi", 0, databases.new_url("qr1hi"))


async def test_a_user_creates_a_token_and_only_the_create_answer_holds_its_secret(
    cluster: Cluster,
) -> None:
    user, token = await cluster.new_user()
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:
        created = await client.post(TOKENS, headers=auth(token), json={})
        assert created.status_code == 200, created.text
        record = created.json()
        assert record["owner_uuid"] == user and record["scopes"] == ["all"]
        new_token = f"v2/{record['uuid']}/{record['api_token']}"
        me = await client.get(f"{USERS}/current", headers=auth(new_token))
        assert me.json()["uuid"] == user
        # A bare (v1) secret works as well, as Arvados's do.
        me = await client.get(f"{USERS}/current", headers=auth(record["api_token"]))
        assert me.status_code == 200

        listing = await client.get(TOKENS, headers=auth(new_token))
        assert listing.status_code == 200
        assert record["uuid"] in [item["uuid"] for item in listing.json()["items"]]
        assert record["api_token"] not in listing.text
        assert parse_token(token).secret not in listing.text


async def test_token_create_refuses_what_a_client_may_not_ask(cluster: Cluster) -> None:
    user, token = await cluster.new_user()
    other, _ = await cluster.new_user()
    _, inactive = await cluster.new_user(is_active=False)
    scoped = await cluster.new_token(user, scopes=[f"POST {TOKENS}", "GET /arvados/v1/users/"])
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:

        async def create(credential: str, body: object) -> httpx.Response:
            return await client.post(TOKENS, headers=auth(credential), json=body)

        assert (await create(token, {"owner_uuid": other})).status_code == 403
        assert (await create(inactive, {})).status_code == 403
        assert (await create(scoped, {"scopes": ["all"]})).status_code == 403
        narrower = await create(scoped, {"scopes": ["GET /arvados/v1/users/"]})
        assert narrower.status_code == 200, narrower.text
        for body in (
            {"expires_at": past},
            {"expires_at": "yesterday"},
            {"expires_at": 12},
            {"scopes": "all"},
            {"scopes": []},
            {"scopes": [1]},
            {"api_client_authorization": "x"},
            [],
        ):
            response = await create(token, body)
            assert response.status_code == 422, (body, response.text)
            assert set(response.json()) == {"errors", "error_token"}
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        made = await create(token, {"api_client_authorization": {"expires_at": later}})
        assert made.status_code == 200 and made.json()["expires_at"] is not None
        # A token salted for another cluster only validates; it cannot make tokens.
        salted = salt(parse_token(token), "c97qk").encode()
        refused = await client.post(
            TOKENS, params={"remote": "c97qk"}, headers=auth(salted), json={}
        )
        assert refused.status_code == 401


async def test_an_admin_creates_a_token_for_another_user(cluster: Cluster) -> None:
    _, admin = await cluster.new_user(is_admin=True)
    other, _ = await cluster.new_user()
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:
        made = await client.post(
            TOKENS, headers=auth(admin), json={"api_client_authorization": {"owner_uuid": other}}
        )
        assert made.status_code == 200 and made.json()["owner_uuid"] == other
        missing = await client.post(
            TOKENS, headers=auth(admin), json={"owner_uuid": "qr1hi-tpzed-nosuchuser000000"}
        )
        assert missing.status_code == 404
        everyone = await client.get(TOKENS, headers=auth(admin), params={"limit": "1000"})
        assert made.json()["uuid"] in [item["uuid"] for item in everyone.json()["items"]]


async def test_the_token_list_takes_select_and_count_as_arvados_clients_send_them(
    cluster: Cluster,
) -> None:
    user, token = await cluster.new_user()
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:
        full = await client.get(TOKENS, headers=auth(token))
        assert full.status_code == 200 and full.json()["items_available"] == 1
        slim = await client.get(
            TOKENS, headers=auth(token), params={"select": '["uuid","owner_uuid"]', "count": "none"}
        )
        assert slim.status_code == 200, slim.text
        assert "items_available" not in slim.json()
        [item] = slim.json()["items"]
        kind = "arvados#apiClientAuthorization"
        assert item == {"kind": kind, "uuid": item["uuid"], "owner_uuid": user}
        # The secret is never listed, selected or not.
        for params in ({"select": '["api_token"]'}, {"count": "some"}, {"limit": "x"}):
            refused = await client.get(TOKENS, headers=auth(token), params=params)
            assert refused.status_code == 422, params
            assert parse_token(token).secret not in refused.text


async def test_who_sees_whom_in_the_users_list(cluster: Cluster) -> None:
    active, active_token = await cluster.new_user()
    inactive, inactive_token = await cluster.new_user(is_active=False)
    _, admin_token = await cluster.new_user(is_admin=True)
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:

        async def seen(token: str) -> set[str]:
            answer = await client.get(USERS, headers=auth(token), params={"limit": "1000"})
            assert answer.status_code == 200, answer.text
            return {item["uuid"] for item in answer.json()["items"]}

        assert active in await seen(active_token)
        assert inactive not in await seen(active_token)
        assert await seen(inactive_token) == {inactive}
        assert {active, inactive} <= await seen(admin_token)
        hidden = await client.get(f"{USERS}/{inactive}", headers=auth(active_token))
        assert hidden.status_code == 404
        shown = await client.get(f"{USERS}/{inactive}", headers=auth(admin_token))
        assert shown.status_code == 200 and shown.json()["is_active"] is False
        filtered = await client.get(
            USERS, headers=auth(admin_token), params={"filters": f'[["uuid","=","{active}"]]'}
        )
        assert [item["uuid"] for item in filtered.json()["items"]] == [active]
        bad = await client.get(USERS, headers=auth(admin_token), params={"filters": '[["x"]]'})
        assert bad.status_code == 422
        # select and count, as Arvados clients send them
        slim = await client.get(
            USERS,
            headers=auth(admin_token),
            params={"select": '["uuid","username"]', "count": "none"},
        )
        assert slim.status_code == 200, slim.text
        assert "items_available" not in slim.json()
        assert all(set(item) == {"kind", "uuid", "username"} for item in slim.json()["items"])
        for params in ({"select": '["api_token"]'}, {"count": "some"}):
            refused = await client.get(USERS, headers=auth(admin_token), params=params)
            assert refused.status_code == 422, params


async def test_activate_setup_and_unsetup(cluster: Cluster) -> None:
    _, admin_token = await cluster.new_user(is_admin=True)
    newcomer, newcomer_token = await cluster.new_user(is_active=False)
    async with asgi_client(create_app(local_config("qr1hi", cluster.database_url))) as client:
        activate = f"{USERS}/{newcomer}/activate"
        # Not invited: they cannot activate themselves.
        assert (await client.post(activate, headers=auth(newcomer_token))).status_code == 403
        assert (
            await client.post(f"{USERS}/setup", headers=auth(newcomer_token), json={})
        ).status_code == 403
        set_up = await client.post(
            f"{USERS}/setup", headers=auth(admin_token), params={"uuid": newcomer}
        )
        assert set_up.status_code == 200 and set_up.json()["items"][0]["is_invited"] is True
        activated = await client.post(activate, headers=auth(newcomer_token))
        assert activated.status_code == 200 and activated.json()["is_active"] is True

        created = await client.post(
            f"{USERS}/setup",
            headers=auth(admin_token),
            json={"user": {"email": "frank@qr1hi.example"}},
        )
        assert created.status_code == 200, created.text
        frank = created.json()["items"][0]
        assert (frank["email"], frank["is_invited"], frank["is_active"]) == (
            "frank@qr1hi.example",
            True,
            False,
        )
        for body in ({}, {"user": {"email": "a\u0000b"}}, {"uuid": 5}):
            refused = await client.post(f"{USERS}/setup", headers=auth(admin_token), json=body)
            assert refused.status_code == 422, (body, refused.text)

        undone = await client.post(f"{USERS}/{newcomer}/unsetup", headers=auth(admin_token))
        assert undone.status_code == 200
        assert (undone.json()["is_active"], undone.json()["is_invited"]) == (False, False)
        root = await client.post(
            f"{USERS}/{system_user_uuid('qr1hi')}/unsetup", headers=auth(admin_token)
        )
        assert root.status_code == 422
        unknown = await client.post(
            f"{USERS}/qr1hi-tpzed-nosuchuser000000/unsetup", headers=auth(admin_token)
        )
        assert unknown.status_code == 404
