"""SPEC 5: mirroring remote users, over the whole matrix of remote flags x ActivateUsers
x LoginCluster x AutoSetupNewUsers, as pure rules and end to end over HTTP."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from clusterfed.identity import RemoteUser, UserRecord
from clusterfed.server.app import create_app
from clusterfed.server.testing import local_config, remote_entry
from clusterfed.server.users.service import create_user
from clusterfed.trust.mirroring import (
    Flags,
    MirrorPolicy,
    flags_for_existing_user,
    flags_for_new_user,
    flags_of,
)

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import StubIssuer, StubUser

TRISTATE = (True, False, None)
REMOTE_FLAGS = [
    {"is_invited": invited, "is_active": active, "is_admin": admin}
    for invited, active, admin in itertools.product(TRISTATE, TRISTATE, (True, False))
]
CONFIGS = list(itertools.product((False, True), repeat=3))  # activate_users, login, autosetup


def expected_new(
    flags: dict[str, bool | None], *, login: bool, trusted: bool, autosetup: bool
) -> Flags:
    """SPEC 5's three formulas for a user first seen, transcribed literally."""
    invited, active, admin = flags["is_invited"], flags["is_active"], flags["is_admin"]
    return Flags(
        is_admin=bool(login and admin and invited is not False and active),
        is_invited=bool(
            (invited or (invited is None and active)) and (login or trusted or autosetup)
        ),
        is_active=bool(invited is not False and (login or trusted) and active),
    )


def remote(flags: dict[str, bool | None], uuid: str = "qr1hi-tpzed-aaaaaaaaaaaaaaa") -> RemoteUser:
    return RemoteUser(uuid=uuid, **flags)


@pytest.mark.parametrize("flags", REMOTE_FLAGS)
@pytest.mark.parametrize(("trusted", "login", "autosetup"), CONFIGS)
def test_new_user_flags(flags: dict[str, Any], trusted: bool, login: bool, autosetup: bool) -> None:
    policy = MirrorPolicy(login=login, trusted=trusted, autosetup=autosetup)
    assert flags_for_new_user(remote(flags), policy) == expected_new(
        flags, login=login, trusted=trusted, autosetup=autosetup
    )


@pytest.mark.parametrize("flags", REMOTE_FLAGS)
@pytest.mark.parametrize(("trusted", "login", "autosetup"), CONFIGS)
@pytest.mark.parametrize("mirror_active", [True, False])
def test_existing_user_flags(
    flags: dict[str, Any], trusted: bool, login: bool, autosetup: bool, mirror_active: bool
) -> None:
    policy = MirrorPolicy(login=login, trusted=trusted, autosetup=autosetup)
    mirror = Flags(is_admin=False, is_invited=mirror_active, is_active=mirror_active)
    result = flags_for_existing_user(remote(flags), policy, mirror)
    invited, active = flags["is_invited"], flags["is_active"]
    if invited is False or (active is False and invited is None):
        assert (result.is_active, result.is_invited) == (False, False)
    elif active and (login or trusted):
        assert (result.is_active, result.is_invited) == (True, True)
    else:
        # activation stays as it was
        assert (result.is_active, result.is_invited) == (mirror_active, mirror_active)
    assert result.is_admin is bool(login and result.is_active and flags["is_admin"])


def test_pre_activated_user_stays_active_while_remote_says_active() -> None:
    untrusted = MirrorPolicy(login=False, trusted=False, autosetup=False)
    mirror = Flags(is_admin=False, is_invited=True, is_active=True)
    assert flags_for_existing_user(remote({"is_active": True}), untrusted, mirror).is_active
    assert not flags_for_existing_user(remote({"is_active": False}), untrusted, mirror).is_active


def test_peer_cluster_can_never_make_anyone_admin() -> None:
    peer = MirrorPolicy(login=False, trusted=True, autosetup=True)
    admin_flags = {"is_admin": True, "is_active": True, "is_invited": True}
    assert not flags_for_new_user(remote(admin_flags), peer).is_admin
    mirror = Flags(is_admin=True, is_invited=True, is_active=True)
    assert not flags_for_existing_user(remote(admin_flags), peer, mirror).is_admin


# -- end to end: a scripted issuer on loopback, the real app with its database ----------


@pytest.fixture
def issuer() -> Iterator[tuple[StubIssuer, int]]:
    stub = StubIssuer("qr1hi")
    with stub.serving() as server:
        yield stub, server.port


@contextlib.asynccontextmanager
async def c97qk(
    databases: DatabaseFactory,
    port: int,
    *,
    activate_users: bool = False,
    login: bool = False,
    autosetup: bool = False,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(port, ActivateUsers=activate_users)},
        login={"LoginCluster": "qr1hi" if login else ""},
        users={"AutoSetupNewUsers": autosetup},
    )
    app = create_app(config)
    async with asgi_client(app) as client:
        yield client, app


async def whoami(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.get(
        "/arvados/v1/users/current", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("activate_users", "login", "autosetup"), CONFIGS)
async def test_activation_matrix_over_http(
    databases: DatabaseFactory,
    issuer: tuple[StubIssuer, int],
    activate_users: bool,
    login: bool,
    autosetup: bool,
) -> None:
    stub, port = issuer
    async with c97qk(
        databases, port, activate_users=activate_users, login=login, autosetup=autosetup
    ) as (client, _):
        for flags in REMOTE_FLAGS:
            present = {k: v for k, v in flags.items() if v is not None}  # None: left out
            token, _ = stub.issue(email="m@qr1hi.example", **present)
            body = await whoami(client, token)
            want = expected_new(flags, login=login, trusted=activate_users, autosetup=autosetup)
            got = Flags(
                is_admin=body["is_admin"],
                is_invited=body["is_invited"],
                is_active=body["is_active"],
            )
            assert got == want, f"remote {flags}"


async def test_deactivation_at_issuer_reaches_the_mirror(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, int]
) -> None:
    stub, port = issuer
    async with c97qk(databases, port, activate_users=True) as (client, _):
        token, user = stub.issue(email="d@qr1hi.example", is_active=True, is_invited=True)
        assert (await whoami(client, token))["is_active"] is True
        # Deactivation at the issuer (Arvados's unsetup) clears active and invited; an
        # inactive-but-invited remote user keeps the mirror's activation (SPEC 5).
        user.fields.update(is_active=False, is_invited=False)
        assert (await whoami(client, stub.issue_for(user)))["is_active"] is False


async def test_pre_created_active_user_stays_active(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, int]
) -> None:
    stub, port = issuer
    async with c97qk(databases, port) as (client, app):  # qr1hi is not trusted
        user = StubUser(
            "qr1hi-tpzed-precreated00001", {"email": "p@qr1hi.example", "is_active": True}
        )
        async with app.state.database.sessionmaker() as session:
            await create_user(
                session, cluster_id="c97qk", email="p@qr1hi.example", uuid=user.uuid, is_active=True
            )
            await session.commit()
        assert (await whoami(client, stub.issue_for(user)))["is_active"] is True


async def test_usernames_are_chosen_once_and_deduplicated(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, int]
) -> None:
    stub, port = issuer
    async with c97qk(databases, port) as (client, _):
        first, ann = stub.issue(username="ann", email="ann@qr1hi.example")
        assert (await whoami(client, first))["username"] == "ann"
        second, _ = stub.issue(username="ann", email="other@qr1hi.example")
        assert (await whoami(client, second))["username"] == "ann2"
        third, _ = stub.issue(username="ann", email="third@qr1hi.example")
        assert (await whoami(client, third))["username"] == "ann3"
        derived, _ = stub.issue(email="9.bob-o'neil@qr1hi.example")
        assert (await whoami(client, derived))["username"] == "boboneil"
        ann.fields["username"] = "annie"  # a peer cannot rename: set once
        assert (await whoami(client, stub.issue_for(ann)))["username"] == "ann"


async def test_login_cluster_renames(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, int]
) -> None:
    stub, port = issuer
    async with c97qk(databases, port, login=True) as (client, _):
        token, user = stub.issue(username="carl", email="carl@qr1hi.example", is_active=True)
        assert (await whoami(client, token))["username"] == "carl"
        user.fields["username"] = "carlos"
        assert (await whoami(client, stub.issue_for(user)))["username"] == "carlos"


async def test_remote_system_and_anonymous_users(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, int]
) -> None:
    stub, port = issuer
    async with c97qk(databases, port) as (client, _):
        root = StubUser(
            "qr1hi-tpzed-000000000000000", {"first_name": "System", "last_name": "user"}
        )
        body = await whoami(client, stub.issue_for(root))
        assert (body["uuid"], body["first_name"], body["last_name"]) == (
            root.uuid,
            "root",
            "from cluster qr1hi",
        )
        anonymous = StubUser("qr1hi-tpzed-anonymouspublic", {})
        assert (await whoami(client, stub.issue_for(anonymous)))[
            "uuid"
        ] == "c97qk-tpzed-anonymouspublic"


def test_flags_of_a_stored_user_are_its_flags() -> None:
    user = UserRecord("qr1hi-tpzed-aaaaaaaaaaaaaaa", None, None, None, None, True, False, True)
    assert flags_of(user) == Flags(is_admin=True, is_invited=True, is_active=False)
