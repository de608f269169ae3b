"""Malformed credentials get 401 with the SPEC error body, never a 500 (SPEC 3, 3.2 step 1).

Everything runs through the real example app in process. One app per backend serves the
whole module: its requests all run on one event loop (an ``asyncio.Runner`` held by the
fixture), which is what lets the hypothesis tests stay plain synchronous functions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from clusterfed.config import ClusterConfig
from clusterfed.server.app import create_app
from clusterfed.server.testing import Cluster, local_config, remote_entry
from clusterfed.tokens import parse_token
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, USER_PATH, Answer, StubIssuer

CLUSTER_ID = "qr1hi"
USERS_CURRENT = "/arvados/v1/users/current"
MIN_LEAK_CHECK = 12  # shorter strings may occur in an error message by coincidence


@dataclass
class App:
    """The in-process app, a valid token on it, and a way to send one request."""

    get: Callable[[bytes | str], httpx.Response]
    token: str


@pytest.fixture(scope="module")
def app(session_databases: DatabaseFactory) -> Iterator[App]:
    database_url = session_databases.new_url("malformed")
    config = ClusterConfig(cluster_id=CLUSTER_ID, database_url=database_url)
    client_context = asgi_client(create_app(config))
    with asyncio.Runner() as runner:
        client = runner.run(client_context.__aenter__())
        try:
            _, token = runner.run(Cluster(CLUSTER_ID, 0, database_url).new_user())

            def get(authorization: bytes | str) -> httpx.Response:
                headers = {"Authorization": authorization}
                return runner.run(client.get(USERS_CURRENT, headers=headers))

            yield App(get=get, token=token)
        finally:
            runner.run(client_context.__aexit__(None, None, None))


def assert_spec_401(response: httpx.Response, presented: bytes | str = "") -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"}
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1
    assert isinstance(body["errors"][0], str) and body["errors"][0]
    assert isinstance(body["error_token"], str) and body["error_token"]
    # As sent, and as a server decoding the header as latin-1 would see it.
    raw = presented if isinstance(presented, bytes) else presented.encode()
    for form in {raw.decode("latin-1"), raw.decode("utf-8", "replace")}:
        if len(form) >= MIN_LEAK_CHECK:
            assert form not in response.text


def test_valid_token_is_accepted(app: App) -> None:
    """The control: the 401s below are about the credential, not a broken app."""
    assert app.get(f"Bearer {app.token}").status_code == 200
    assert app.get(f"OAuth2 {app.token}").status_code == 200


UUID = "qr1hi-gj3su-000000000000001"
SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"

MALFORMED_HEADERS: dict[str, bytes | str] = {
    "empty uuid": "Bearer v2//x",
    "empty secret": f"Bearer v2/{UUID}/",
    "only v2": "Bearer v2/",
    "v2 without secret": f"Bearer v2/{UUID}",
    "all parts empty": "Bearer v2//",
    "v3 prefix": f"Bearer v3/{UUID}/{SECRET}",
    "uppercase V2": f"Bearer V2/{UUID}/{SECRET}",
    "leading slash": f"Bearer /v2/{UUID}/{SECRET}",
    "double slash": f"Bearer v2/{UUID}//{SECRET}",
    "slash in v1": f"Bearer {SECRET}/",
    "user uuid as token uuid": f"Bearer v2/qr1hi-tpzed-000000000000001/{SECRET}",
    "short uuid": f"Bearer v2/qr1hi-gj3su-00000000000001/{SECRET}",
    "double quotes": f'Bearer "{SECRET}"',
    "single quotes": f"Bearer '{SECRET}'",
    "quote in secret": f"Bearer v2/{UUID}/{SECRET}'",
    "sql or": "Bearer ' OR 1=1 --",
    "sql or in v2 secret": f"Bearer v2/{UUID}/' OR '1'='1",
    "sql in uuid": f"Bearer v2/qr1hi-gj3su-' OR 1=1 --/{SECRET}",
    "sql drop": "Bearer x'; DROP TABLE users; --",
    "percent wildcard": "Bearer %",
    "non-ascii utf-8": "Bearer sécrét-ünïcødé".encode(),
    "non-ascii in v2 secret": f"Bearer v2/{UUID}/{SECRET}é".encode(),
    "invalid utf-8": b"Bearer \xff\xfe\xfd",
    "nul byte": "Bearer abc\x00def",
    "10 kB header": "Bearer " + "a" * 10_240,
    "10 kB v2 secret": f"Bearer v2/{UUID}/" + "a" * 10_240,
    "bearer with nothing": "Bearer",
    "bearer with spaces": "Bearer    ",
    "empty header": "",
    "basic scheme": "Basic dXNlcjpwYXNzd29yZA==",
    "unknown scheme": f"Token {SECRET}",
    "token without scheme": SECRET,
    "two tokens": f"Bearer {SECRET} {SECRET}",
}


@pytest.mark.parametrize(
    "authorization",
    ["Bearer " + "a" * 20_000, f"Bearer v2/{UUID}/" + "a" * 20_000, "Basic " + "a" * 60_000],
    ids=["v1-like", "v2-like", "basic"],
)
def test_oversized_authorization_header_is_refused_first(app: App, authorization: str) -> None:
    # Refused before the token grammar or the host's own lookups see it: 431, SPEC body.
    response = app.get(authorization)
    assert response.status_code == 431, response.text
    body = response.json()
    assert set(body) == {"errors", "error_token"} and "Authorization" in body["errors"][0]
    assert authorization[-MIN_LEAK_CHECK:] not in response.text


@pytest.mark.parametrize("authorization", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS)
def test_malformed_credential_is_refused_with_spec_error(
    app: App, authorization: bytes | str
) -> None:
    assert_spec_401(app.get(authorization), authorization)


def near_misses(token: str) -> dict[str, str]:
    """Variations of a real, working token, each of which must be refused."""
    parsed = parse_token(token)
    assert parsed.uuid is not None
    other_last = "b" if parsed.secret.endswith("a") else "a"
    return {
        "wrong secret": f"v2/{parsed.uuid}/{parsed.secret[:-1]}{other_last}",
        "secret with quote": f"v2/{parsed.uuid}/{parsed.secret}'",
        "secret with sql": f"v2/{parsed.uuid}/' OR 1=1 --",
        "uuid as v1": parsed.uuid,
        "truncated secret": f"v2/{parsed.uuid}/{parsed.secret[:10]}",
        "v3 prefix": f"v3/{parsed.uuid}/{parsed.secret}",
        "empty uuid": f"v2//{parsed.secret}",
        "token with space inside": f"v2/{parsed.uuid}/ {parsed.secret}",
    }


def test_near_misses_of_a_real_token_are_refused(app: App) -> None:
    for name, variant in near_misses(app.token).items():
        response = app.get(f"Bearer {variant}")
        assert response.status_code == 401, name
        assert_spec_401(response, variant)
        assert parse_token(app.token).secret not in response.text, name


# --- properties ----------------------------------------------------------------------

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_garbage = st.text(min_size=1, max_size=40)
_uuid_like = st.builds(
    "{}-{}-{}".format,
    st.one_of(st.just(CLUSTER_ID), st.just("c97qk"), st.text(_LOWER_ALNUM, max_size=6)),
    st.sampled_from(["gj3su", "tpzed", "j7d0g", "GJ3SU", ""]),
    st.one_of(st.text(_LOWER_ALNUM, min_size=14, max_size=16), _garbage),
)
# The secret part is long and distinctive, so "it never appears in the body" is meaningful.
_secret_like = st.one_of(
    st.text(_LOWER_ALNUM, min_size=20, max_size=60),
    st.text(min_size=MIN_LEAK_CHECK, max_size=60),
)
_v2_like = st.builds(
    "{}/{}/{}{}".format,
    st.sampled_from(["v2", "v2", "v1", "v3", "V2", "", "v2 "]),
    _uuid_like,
    _secret_like,
    st.sampled_from(["", "/", "/extra", "//", "\n"]),
)
_tokens = st.one_of(st.text(max_size=200), _v2_like, st.text(_LOWER_ALNUM, min_size=1))
_schemes = st.sampled_from(["Bearer", "OAuth2", "bearer", "Basic", "Token", ""])


def _header(scheme: str, token: str) -> bytes:
    # Non-latin-1 text cannot be a str header value in httpx; send its UTF-8 bytes.
    return f"{scheme} {token}".encode()


@settings(max_examples=200, deadline=None)
@given(token=_tokens, scheme=_schemes)
def test_random_credentials_never_succeed_nor_crash(app: App, token: str, scheme: str) -> None:
    header = _header(scheme, token)
    response = app.get(header)
    assert response.status_code == 401, (header, response.status_code, response.text)
    assert_spec_401(response, token)


@settings(max_examples=150, deadline=None)
@given(token=_v2_like)
def test_v2_looking_credentials_never_succeed_nor_leak(app: App, token: str) -> None:
    response = app.get(_header("Bearer", token))
    assert_spec_401(response, token)
    secret = token.split("/", 2)[-1]
    if len(secret) >= MIN_LEAK_CHECK:
        assert secret not in response.text


# --- malformed answers from a peer (SPEC 3.2: a 200 that is not a valid answer is a 401) ---
#
# Each was a 500 on every retry once: text no store can hold in the user record, or an
# expires_at past what datetime can hold. A merely long name is no fault: it is cut to
# the column (255), and usernames stay unique.

SURROGATE = "\ud800"
NUL = "\x00"
COLUMN = 255


@pytest.fixture
def issuer() -> Iterator[StubIssuer]:
    stub = StubIssuer("zpeer")
    with stub.serving():
        yield stub


@pytest.fixture
async def acceptor(
    issuer: StubIssuer, databases: DatabaseFactory
) -> AsyncIterator[httpx.AsyncClient]:
    remotes = {"zpeer": remote_entry(issuer.port, ActivateUsers=True)}
    config = local_config("c97qk", databases.new_url("acceptor"), remotes=remotes)
    async with asgi_client(create_app(config)) as client:
        yield client


async def current_user(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(USERS_CURRENT, headers={"Authorization": f"Bearer {token}"})


def escaped(document: Any) -> Answer:
    # json.dumps escapes a lone surrogate as \ud800, as a misbehaving peer would send it.
    return Answer(raw=json.dumps(document).encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize("field", ["first_name", "last_name", "email", "username"])
async def test_peer_user_with_unstorable_text_is_an_invalid_answer(
    acceptor: httpx.AsyncClient, issuer: StubIssuer, field: str, text: str
) -> None:
    token, user = issuer.issue(email="ann@zpeer.example", is_active=True)
    issuer.overrides[USER_PATH] = escaped({**user.record(), field: f"ann{text}x"})
    for _ in range(2):  # not a 500 on the retry either
        assert_spec_401(await current_user(acceptor, token), token)


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
async def test_peer_scopes_with_unstorable_text_are_an_invalid_answer(
    acceptor: httpx.AsyncClient, issuer: StubIssuer, text: str
) -> None:
    token, user = issuer.issue(is_active=True)
    record = {
        "uuid": parse_token(token).uuid,
        "owner_uuid": user.uuid,
        "scopes": [f"GET /arvados/v1/users/{text}"],
    }
    issuer.overrides[TOKEN_PATH] = escaped(record)
    assert_spec_401(await current_user(acceptor, token), token)


@pytest.mark.parametrize(
    "expires_at",
    [
        "9999-12-31T23:59:59-14:00",  # parses, but is past datetime.max in UTC
        "2030-01-01T00:00:00\x00Z",
    ],
    ids=["past-datetime-max", "nul"],
)
async def test_peer_expires_at_out_of_range_is_an_invalid_answer(
    acceptor: httpx.AsyncClient, issuer: StubIssuer, expires_at: str
) -> None:
    token, user = issuer.issue(is_active=True)
    record = {"uuid": parse_token(token).uuid, "owner_uuid": user.uuid, "expires_at": expires_at}
    issuer.overrides[TOKEN_PATH] = escaped(record)
    for _ in range(2):
        assert_spec_401(await current_user(acceptor, token), token)
    # Far, but in range: accepted.
    issuer.overrides[TOKEN_PATH] = escaped({**record, "expires_at": "9999-12-31T09:59:59-14:00"})
    assert (await current_user(acceptor, token)).status_code == 200


async def test_peer_user_with_long_names_is_stored_cut_to_the_column(
    acceptor: httpx.AsyncClient, issuer: StubIssuer
) -> None:
    long = {
        "first_name": "f" * 1000,
        "last_name": "l" * 1000,
        "email": "e" * 990 + "@zpeer.org",
        "username": "u" * 1000,
        "is_active": True,
    }
    mirrored = []
    for _ in range(3):  # three users asking for the same 1,000-character username
        token, _ = issuer.issue(**long)
        response = await current_user(acceptor, token)
        assert response.status_code == 200, response.text
        mirrored.append(response.json())
    for user in mirrored:
        assert user["first_name"] == "f" * COLUMN and user["last_name"] == "l" * COLUMN
        assert user["email"] == "e" * COLUMN
        assert len(user["username"]) <= COLUMN and user["username"].startswith("u" * 250)
    assert mirrored[0]["username"] == "u" * COLUMN
    assert len({user["username"] for user in mirrored}) == 3
    # Seen again, still long at the issuer: the mirror is updated, not a 500.
    token, _ = issuer.issue(**long)
    assert (await current_user(acceptor, token)).status_code == 200
