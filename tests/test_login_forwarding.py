"""Which credential a satellite sends to its login cluster (SPEC 3.8), rule by rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from clusterfed.errors import Unauthorized, Unprocessable
from clusterfed.identity import STATE_KEY, Identity, UserRecord
from clusterfed.routing.login_forwarding import LoginClusterRouter, _deferred, _remote_user
from clusterfed.server.testing import local_config
from clusterfed.server.users.service import users_table
from clusterfed.service import Federation
from clusterfed.storage.database import Database
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import parse_token, salt, salted_secret

SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
LOGIN_TOKEN = f"v2/qr1hi-gj3su-000000000000001/{SECRET}"
THIRD_TOKEN = f"v2/z1234-gj3su-000000000000001/{SECRET}"
OWN_TOKEN = f"v2/c97qk-gj3su-000000000000001/{SECRET}"


@pytest.fixture
def router() -> LoginClusterRouter:
    config = local_config(
        "c97qk",
        "sqlite+aiosqlite:///unused.db",
        remotes={"qr1hi": {"Host": "qr1hi.example"}, "z1234": {"Host": "z1234.example"}},
        login={"LoginCluster": "qr1hi"},
    )
    store = SqlFederationStore(Database(config.database_url), users_table)
    return LoginClusterRouter(lambda *_: None, federation=Federation(config, store))


def scope(credential: str | None, identity: Identity | None = None) -> dict[str, Any]:
    headers = [] if credential is None else [(b"authorization", f"Bearer {credential}".encode())]
    return {"type": "http", "headers": headers, "state": {STATE_KEY: identity} if identity else {}}


def login_identity() -> Identity:
    user = UserRecord("qr1hi-tpzed-000000000000001", None, "a", None, None, False, True, True)
    return Identity(user, "qr1hi-gj3su-000000000000001", ("all",), "qr1hi", datetime.now(UTC))


def test_a_login_cluster_token_goes_unchanged(router: LoginClusterRouter) -> None:
    assert router._token(scope(LOGIN_TOKEN)) == parse_token(LOGIN_TOKEN)


def test_a_third_clusters_token_goes_salted_for_the_login_cluster(
    router: LoginClusterRouter,
) -> None:
    sent = router._token(scope(THIRD_TOKEN))
    assert sent == salt(parse_token(THIRD_TOKEN), "qr1hi")
    assert sent is not None and sent.secret == salted_secret(SECRET, "qr1hi")


def test_a_token_salted_for_us_cannot_be_salted_again(router: LoginClusterRouter) -> None:
    salted = salt(parse_token(THIRD_TOKEN), "c97qk").encode()
    with pytest.raises(Unprocessable):
        router._token(scope(salted))


def test_the_satellites_own_credentials_never_go(router: LoginClusterRouter) -> None:
    with pytest.raises(Unauthorized, match="never sent there"):
        router._token(scope(OWN_TOKEN))
    with pytest.raises(Unauthorized, match="never sees it"):
        router._token(scope(SECRET))  # a bare secret the middleware did not defer


def test_a_bare_credential_the_login_cluster_vouched_for_goes_as_presented(
    router: LoginClusterRouter,
) -> None:
    sent = router._token(scope(SECRET, login_identity()))
    assert sent is not None and sent.encode() == SECRET


def test_no_credential_goes_as_none(router: LoginClusterRouter) -> None:
    assert router._token(scope(None)) is None


@pytest.mark.parametrize(
    ("method", "path", "deferred"),
    [
        ("POST", "/arvados/v1/api_client_authorizations", True),
        ("GET", "/arvados/v1/api_client_authorizations", True),
        ("GET", "/arvados/v1/api_client_authorizations/current", False),
        ("GET", "/arvados/v1/users", True),
        ("POST", "/arvados/v1/users", False),
        ("GET", "/arvados/v1/users/current", False),
        ("GET", "/arvados/v1/users/qr1hi-tpzed-000000000000001", False),
        ("POST", "/arvados/v1/users/setup", True),
        ("POST", "/arvados/v1/users/qr1hi-tpzed-000000000000001/activate", True),
        ("POST", "/arvados/v1/users/qr1hi-tpzed-000000000000001/unsetup", True),
        ("POST", "/arvados/v1/users/not-a-uuid/activate", False),
        ("GET", "/arvados/v1/users/qr1hi-tpzed-000000000000001/activate", False),
    ],
)
def test_what_a_satellite_defers(method: str, path: str, deferred: bool) -> None:
    assert _deferred(method, path) is deferred


@pytest.mark.parametrize(
    ("field", "value"),
    [("first_name", "Ada\x00"), ("username", "ada\ud800"), ("email", "\x00@qr1hi.example")],
)
def test_a_listed_user_no_store_can_hold_is_not_mirrored(field: str, value: str) -> None:
    """The users list a satellite mirrors is judged by the same rule as a validation's
    user record (SPEC 3.2): NUL or a lone surrogate would fail at the database."""
    record = {
        "uuid": "qr1hi-tpzed-000000000000abc",
        "email": "ada@qr1hi.example",
        "username": "ada",
        "first_name": "Ada",
        "last_name": "L",
        "is_active": True,
        "is_invited": True,
        "is_admin": False,
    }
    assert _remote_user(record, "qr1hi") is not None
    assert _remote_user({**record, field: value}, "qr1hi") is None
