"""The trust rules that a mutation of the code once slipped past the whole suite.

Each test here names the rule it guards (SPEC 3.2 and 4) and fails when that rule is
removed from the code: a rejection remembered across *sequential* requests, a cluster
vouching only for its own users, StaleIfError never serving past ``expires_at``,
``refreshes_at`` capped at ``expires_at``, and an unreadable answer that leaves its
issuer reachable. They run against a real (scripted) issuer on loopback, plus direct
checks of the pure rules.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clusterfed.errors import Unauthorized
from clusterfed.identity import Identity, UserRecord
from clusterfed.outbound.circuit import FAILURE_THRESHOLD
from clusterfed.outbound.remote import RemoteResponse
from clusterfed.outbound.statuses import IssuerRejected
from clusterfed.server.testing import ServerThread
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid, parse_token
from clusterfed.trust.cache import L1Entry, TokenCache
from clusterfed.trust.validator import _parse_remote_user, judge_token_answer

from tests.support.acceptor import c97qk, users_current
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, USER_PATH, Answer, StubIssuer


@pytest.fixture
def issuer() -> Iterator[tuple[StubIssuer, ServerThread]]:
    stub = StubIssuer("qr1hi")
    with stub.serving() as server:
        yield stub, server


def token_record(token: str, owner_uuid: str, expires_at: datetime | None) -> dict[str, Any]:
    return {
        "kind": "arvados#apiClientAuthorization",
        "uuid": parse_token(token).uuid,
        "owner_uuid": owner_uuid,
        "scopes": ["all"],
        "expires_at": expires_at.isoformat().replace("+00:00", "Z") if expires_at else None,
    }


# -- SPEC 4: a rejection is remembered for NegativeCacheTTL ---------------------------------


async def test_a_rejection_is_remembered_across_sequential_requests(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue()
    stub.tokens.clear()  # the issuer no longer knows it: 401
    async with c97qk(databases, server.port, NegativeCacheTTL="2s") as (client, _):
        for _ in range(3):  # one after the other: no flight to share
            assert (await users_current(client, token)).status_code == 401
        assert stub.calls[TOKEN_PATH] == 1
        await asyncio.sleep(2.1)
        assert (await users_current(client, token)).status_code == 401
        assert stub.calls[TOKEN_PATH] == 2


def test_the_negative_cache_remembers_and_forgets() -> None:
    cache = TokenCache(maxsize=10, ttl=60, negative_ttl=60)
    key = cache.key("qr1hi", "v2/qr1hi-gj3su-000000000000001/secret")
    assert cache.rejection(key) is None
    cache.reject(key, "issuer qr1hi rejected the token (401)")
    assert cache.rejection(key) == "issuer qr1hi rejected the token (401)"
    assert cache.invalidate("all", None) == 0 and cache.rejection(key) is None
    disabled = TokenCache(maxsize=10, ttl=60, negative_ttl=0)
    disabled.reject(key, "no")
    assert disabled.rejection(key) is None


# -- SPEC 3.2 step 4: a cluster vouches only for its own users -------------------------------


async def test_an_issuer_consistently_vouching_for_another_clusters_user_is_401(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue()
    stranger = new_uuid("zbbbb", USER_TYPE)
    # Both answers agree: the token belongs to a zbbbb user. qr1hi may not say so.
    stub.overrides[TOKEN_PATH] = Answer(json=token_record(token, stranger, None))
    stub.overrides[USER_PATH] = Answer(
        json={"kind": "arvados#user", "uuid": stranger, "is_active": True, "is_invited": True}
    )
    async with c97qk(databases, server.port) as (client, app):
        response = await users_current(client, token)
        mirrored = await app.state.federation.store.get_user(stranger)
    assert response.status_code == 401, response.text
    assert "not its own" in response.json()["errors"][0]
    assert mirrored is None


def answer(body: Any, status: int = 200) -> RemoteResponse:
    return RemoteResponse(status, json.dumps(body).encode(), False, {})


TOKEN = parse_token(f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}")
OWN_USER = new_uuid("qr1hi", USER_TYPE)
STRANGER = new_uuid("zbbbb", USER_TYPE)


def test_the_token_call_refuses_an_owner_of_another_cluster() -> None:
    record = {"uuid": TOKEN.uuid, "owner_uuid": OWN_USER, "scopes": ["all"]}
    assert judge_token_answer(answer(record), TOKEN)["owner_uuid"] == OWN_USER
    with pytest.raises(Unauthorized, match="not its own"):
        judge_token_answer(answer({**record, "owner_uuid": STRANGER}), TOKEN)
    with pytest.raises(Unauthorized, match="not its own"):  # well-formed, but not a user
        judge_token_answer(answer({**record, "owner_uuid": new_uuid("qr1hi", "j7d0g")}), TOKEN)


def test_the_user_call_refuses_a_user_of_another_cluster() -> None:
    assert _parse_remote_user(answer({"uuid": OWN_USER}), "qr1hi", OWN_USER).uuid == OWN_USER
    # Even when it agrees with what the token call said.
    with pytest.raises(Unauthorized, match="not its own"):
        _parse_remote_user(answer({"uuid": STRANGER}), "qr1hi", STRANGER)
    with pytest.raises(Unauthorized, match="not its own"):
        _parse_remote_user(answer({"uuid": new_uuid("qr1hi", "j7d0g")}), "qr1hi", OWN_USER)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, IssuerRejected), (404, IssuerRejected), (499, IssuerRejected), (204, Unauthorized)],
)
def test_the_token_calls_status_table(status: int, expected: type[Exception]) -> None:
    with pytest.raises(expected) as raised:
        judge_token_answer(answer({"uuid": TOKEN.uuid}, status), TOKEN)
    assert raised.value.status_code == 401  # type: ignore[attr-defined]
    for failed in (500, 599):
        with pytest.raises(Exception) as raised:
            judge_token_answer(answer({}, failed), TOKEN)
        assert not isinstance(raised.value, IssuerRejected)
        assert raised.value.status_code == failed  # type: ignore[attr-defined]
    with pytest.raises(Exception) as raised:
        judge_token_answer(answer({}, 429), TOKEN)
    assert raised.value.status_code == 503  # type: ignore[attr-defined]


# -- SPEC 4: StaleIfError never serves past expires_at; refreshes_at never past it ----------


async def test_stale_if_error_never_serves_past_expires_at(
    databases: DatabaseFactory,
) -> None:
    stub = StubIssuer("qr1hi")
    server = ServerThread(stub.app).start()
    token, user = stub.issue(is_active=True)
    try:
        async with c97qk(databases, server.port, refresh="1s", StaleIfError="1h") as (client, _):
            # Set once the cluster is up (starting it is not part of the window), with 1.9 s
            # to spare past refreshes_at for stopping the issuer on a slow machine.
            expires_at = datetime.now(UTC) + timedelta(seconds=3)
            stub.overrides[TOKEN_PATH] = Answer(json=token_record(token, user.uuid, expires_at))
            assert (await users_current(client, token)).status_code == 200
            server.stop()
            # Past refreshes_at, before expires_at: StaleIfError serves the cached identity.
            await asyncio.sleep(1.1)
            assert (await users_current(client, token)).status_code == 200
            # Past expires_at: the issuer said it ends here; no grace serves it longer.
            await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.2)
            response = await users_current(client, token)
    finally:
        server.stop()
    assert response.status_code == 502, response.text


async def test_refreshes_at_is_never_past_expires_at(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, user = stub.issue(is_active=True)
    expires_at = (datetime.now(UTC) + timedelta(seconds=60)).replace(microsecond=0)
    stub.overrides[TOKEN_PATH] = Answer(json=token_record(token, user.uuid, expires_at))
    async with c97qk(databases, server.port, refresh="1h") as (client, app):
        assert (await users_current(client, token)).status_code == 200
        row = await app.state.federation.store.load_token(parse_token(token).uuid)
        listed = await client.get(
            f"/federation/v1/token_cache/{parse_token(token).uuid}",
            headers={"Authorization": "Bearer test-management-token"},
        )
    assert row is not None and row.expires_at == expires_at
    assert row.refreshes_at == expires_at  # now + 1 h, capped
    item = listed.json()
    assert listed.status_code == 200, listed.text
    assert datetime.fromisoformat(item["refreshes_at"].replace("Z", "+00:00")) == expires_at


def l1_entry(refreshes_in: float, expires_in: float | None) -> tuple[L1Entry, datetime]:
    now = datetime.now(UTC)
    user = UserRecord(OWN_USER, None, None, None, None, False, True, True)
    expires_at = None if expires_in is None else now + timedelta(seconds=expires_in)
    identity = Identity(user, TOKEN.uuid or "", ("all",), "qr1hi", expires_at)
    return L1Entry(identity, now + timedelta(seconds=refreshes_in), now.timestamp()), now


def test_an_l1_entry_is_fresh_until_the_earlier_of_refresh_and_expiry() -> None:
    entry, now = l1_entry(60, 10)
    assert entry.fresh(now.timestamp() + 9.9) and not entry.fresh(now.timestamp() + 10)
    entry, now = l1_entry(10, 60)
    assert entry.fresh(now.timestamp() + 9.9) and not entry.fresh(now.timestamp() + 10)
    entry, now = l1_entry(10, None)
    assert entry.fresh(now.timestamp() + 9.9) and not entry.fresh(now.timestamp() + 10)


def test_an_l1_entry_is_usable_stale_only_within_grace_and_before_expiry() -> None:
    entry, now = l1_entry(0, None)
    assert not entry.usable_stale(now, 0)  # StaleIfError off
    assert entry.usable_stale(now + timedelta(seconds=29), 30)
    assert not entry.usable_stale(now + timedelta(seconds=30), 30)
    entry, now = l1_entry(0, 5)
    assert entry.usable_stale(now + timedelta(seconds=4), 30)
    assert not entry.usable_stale(now + timedelta(seconds=5), 30)


# -- SPEC 3.2 / README: an unreadable answer is an invalid answer, not an unreachable issuer --


async def test_an_unreadable_answer_leaves_the_issuer_reachable_and_the_circuit_closed(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    stub.overrides[TOKEN_PATH] = Answer(
        raw=b"this is not gzip",
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    async with c97qk(databases, server.port) as (client, app):
        for _ in range(FAILURE_THRESHOLD + 1):  # enough failures to open a circuit
            assert (await users_current(client, stub.issue()[0])).status_code == 401
        (status,) = app.state.federation.remote_status()
        del stub.overrides[TOKEN_PATH]
        healthy = await users_current(client, stub.issue(is_active=True)[0])
    assert (status.reachable, status.circuit_state, status.last_error) == (True, "closed", None)
    assert status.last_success is not None
    assert healthy.status_code == 200, healthy.text
