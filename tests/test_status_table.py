"""Every row of SPEC 3.2's status table, against a real (scripted) issuer on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from clusterfed.server.app import create_app
from clusterfed.server.testing import free_port, local_config, remote_entry
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_uuid, parse_token

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, USER_PATH, Answer, StubIssuer

REMOTE_TIMEOUT = 1.0


@pytest.fixture
def issuer() -> Iterator[StubIssuer]:
    stub = StubIssuer("qr1hi")
    with stub.serving():
        yield stub


@pytest.fixture
async def c97qk(issuer: StubIssuer, databases: DatabaseFactory) -> AsyncIterator[httpx.AsyncClient]:
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={
            "qr1hi": remote_entry(issuer.port),
            "zdown": remote_entry(free_port()),  # nothing listens there
        },
        federation={"RemoteTimeout": f"{REMOTE_TIMEOUT}s"},
    )
    async with asgi_client(create_app(config)) as client:
        yield client


async def users_current(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(
        "/arvados/v1/users/current", headers={"Authorization": f"Bearer {token}"}
    )


def assert_error(response: httpx.Response, status: int, token: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"} and body["errors"]
    assert parse_token(token).secret not in response.text


async def test_valid_answer_is_accepted(c97qk: httpx.AsyncClient, issuer: StubIssuer) -> None:
    token, user = issuer.issue(email="a@qr1hi.example", is_active=True)
    response = await users_current(c97qk, token)
    assert response.status_code == 200
    assert response.json()["uuid"] == user.uuid
    assert issuer.calls == {TOKEN_PATH: 1, USER_PATH: 1}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_4xx_on_token_call_is_401(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, status: int
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(status=status)
    assert_error(await users_current(c97qk, token), 401, token)


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_on_token_call_keeps_its_status(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, status: int
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(status=status)
    assert_error(await users_current(c97qk, token), status, token)
    # 503 is transient: retried, but a bounded number of times.
    assert issuer.calls[TOKEN_PATH] == (3 if status == 503 else 1)
    # A 5xx is never remembered as a rejection: once the issuer recovers, it works.
    del issuer.overrides[TOKEN_PATH]
    assert (await users_current(c97qk, token)).status_code == 200


@pytest.mark.parametrize(
    "answer",
    [
        Answer(html="<html><body>Login page</body></html>"),
        Answer(html="{not json"),
        Answer(json=["a", "list"]),
        Answer(json={"kind": "arvados#apiClientAuthorization"}),
    ],
    ids=["html", "bad-json", "json-list", "missing-fields"],
)
async def test_200_without_a_valid_answer_is_401(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, answer: Answer
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = answer
    assert_error(await users_current(c97qk, token), 401, token)


async def test_token_uuid_with_wrong_prefix_is_401(
    c97qk: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    token, user = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(
        json={"uuid": new_uuid("zbbbb", TOKEN_TYPE), "owner_uuid": user.uuid, "scopes": ["all"]}
    )
    assert_error(await users_current(c97qk, token), 401, token)


async def test_user_of_a_third_cluster_is_401(c97qk: httpx.AsyncClient, issuer: StubIssuer) -> None:
    token, _ = issuer.issue()
    stranger = new_uuid("zbbbb", USER_TYPE)
    issuer.overrides[TOKEN_PATH] = Answer(
        json={"uuid": parse_token(token).uuid, "owner_uuid": stranger, "scopes": ["all"]}
    )
    assert_error(await users_current(c97qk, token), 401, token)


async def test_user_call_naming_a_third_cluster_user_is_401(
    c97qk: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[USER_PATH] = Answer(json={"uuid": new_uuid("zbbbb", USER_TYPE)})
    assert_error(await users_current(c97qk, token), 401, token)


async def test_connection_refused_is_502(c97qk: httpx.AsyncClient) -> None:
    token = f"v2/{new_uuid('zdown', TOKEN_TYPE)}/{'x' * 50}"
    assert_error(await users_current(c97qk, token), 502, token)


async def test_issuer_hanging_past_remote_timeout_is_504(
    c97qk: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(hang=REMOTE_TIMEOUT * 5)
    started = time.monotonic()
    response = await users_current(c97qk, token)
    elapsed = time.monotonic() - started
    assert_error(response, 504, token)
    assert REMOTE_TIMEOUT * 0.9 <= elapsed < REMOTE_TIMEOUT + 0.5


@pytest.mark.parametrize("status", [403, 500])
async def test_failed_user_call_without_mirror_propagates_status(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, status: int
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[USER_PATH] = Answer(status=status)
    assert_error(await users_current(c97qk, token), status, token)


@pytest.mark.parametrize("status", [403, 500])
async def test_failed_user_call_falls_back_on_the_mirror(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, status: int
) -> None:
    first, user = issuer.issue(email="m@qr1hi.example", is_active=True)
    assert (await users_current(c97qk, first)).status_code == 200  # creates the mirror
    second = issuer.issue_for(user)
    issuer.overrides[USER_PATH] = Answer(status=status)
    response = await users_current(c97qk, second)
    assert response.status_code == 200
    assert response.json()["uuid"] == user.uuid


async def test_unknown_issuer_is_refused(c97qk: httpx.AsyncClient, issuer: StubIssuer) -> None:
    # zzzzz has no RemoteClusters entry, so there is no host to call: only the 401 and
    # its body are observable here.
    token = f"v2/{new_uuid('zzzzz', TOKEN_TYPE)}/{'y' * 50}"
    assert_error(await users_current(c97qk, token), 401, token)


async def test_malformed_v2_token_is_refused_without_network(
    c97qk: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    for token in ["v2/qr1hi-gj3su-short/secret", "v2/qr1hi-gj3su-000000000000000/", "v2//"]:
        response = await users_current(c97qk, token)
        assert response.status_code == 401
        assert set(response.json()) == {"errors", "error_token"}
    assert issuer.total_calls() == 0


async def test_expired_at_issuer_is_401(c97qk: httpx.AsyncClient, issuer: StubIssuer) -> None:
    token, user = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(
        json={
            "uuid": parse_token(token).uuid,
            "owner_uuid": user.uuid,
            "scopes": ["all"],
            "expires_at": "2020-01-01T00:00:00Z",
        }
    )
    assert_error(await users_current(c97qk, token), 401, token)


async def test_rate_limited_issuer_is_503_and_not_remembered(
    c97qk: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = Answer(status=429)
    assert_error(await users_current(c97qk, token), 503, token)
    assert issuer.calls[TOKEN_PATH] == 3  # 429 is transient: retried, boundedly
    del issuer.overrides[TOKEN_PATH]
    assert (await users_current(c97qk, token)).status_code == 200  # no negative caching


@pytest.mark.parametrize(
    "answer",
    [
        Answer(
            raw=b"this is not gzip",
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        ),
        Answer(raw=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"}),
    ],
    ids=["broken-gzip", "absurdly-nested-json"],
)
async def test_unreadable_200_is_401_and_the_issuer_still_counts_as_reachable(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, answer: Answer
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[TOKEN_PATH] = answer
    assert_error(await users_current(c97qk, token), 401, token)


@pytest.mark.parametrize("status", [204, 302])
async def test_user_call_answering_neither_200_nor_an_error_is_401(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, status: int
) -> None:
    token, _ = issuer.issue()
    issuer.overrides[USER_PATH] = Answer(status=status, raw=b"", headers={"location": "/x"})
    assert_error(await users_current(c97qk, token), 401, token)
