"""SPEC section 1: token parsing, identifiers, salting; SPEC 3.2 step 6: scopes."""

from __future__ import annotations

import pytest
from clusterfed.credentials import parse_authorization
from clusterfed.tokens import (
    MAX_TOKEN_LENGTH,
    CannotResalt,
    MalformedToken,
    Token,
    is_cluster_id,
    is_uuid,
    parse_token,
    salt,
    scope_allows,
)

VECTOR_SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
VECTOR_UUID = "qr1hi-gj3su-000000000000001"
VECTOR_TOKEN = Token(uuid=VECTOR_UUID, secret=VECTOR_SECRET)
CURRENT_TOKEN_PATH = "/arvados/v1/api_client_authorizations/current"


# --- salting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("c97qk", "6c4c81062473350d6b113b60c12b300c7fb8a8cb"),
        ("zbbbb", "33b4da68bfe07da0281a7fdbc08b4f6f41c7bd98"),
    ],
)
def test_salt_matches_spec_test_vectors(remote: str, expected: str) -> None:
    salted = salt(VECTOR_TOKEN, remote)
    assert salted == Token(uuid=VECTOR_UUID, secret=expected)
    assert salted.encode() == f"v2/{VECTOR_UUID}/{expected}"


def test_salt_for_the_issuer_returns_the_token_unchanged() -> None:
    assert salt(VECTOR_TOKEN, "qr1hi") is VECTOR_TOKEN


def test_salted_token_is_recognised_as_salted() -> None:
    assert not VECTOR_TOKEN.is_salted
    assert salt(VECTOR_TOKEN, "c97qk").is_salted


def test_already_salted_token_cannot_be_salted_again() -> None:
    salted = salt(VECTOR_TOKEN, "c97qk")
    with pytest.raises(CannotResalt):
        salt(salted, "zbbbb")


def test_already_salted_token_may_still_go_to_its_issuer() -> None:
    salted = salt(VECTOR_TOKEN, "c97qk")
    assert salt(salted, "qr1hi") is salted


def test_v1_token_cannot_be_salted() -> None:
    with pytest.raises(MalformedToken):
        salt(Token(uuid=None, secret=VECTOR_SECRET), "c97qk")


# --- parsing -------------------------------------------------------------------------


def test_parse_v2_token() -> None:
    token = parse_token(f"v2/{VECTOR_UUID}/{VECTOR_SECRET}")
    assert token == VECTOR_TOKEN
    assert token.is_v2
    assert token.issuer == "qr1hi"
    assert token.encode() == f"v2/{VECTOR_UUID}/{VECTOR_SECRET}"


def test_parse_v1_token_is_a_bare_secret_without_issuer() -> None:
    token = parse_token(VECTOR_SECRET)
    assert token == Token(uuid=None, secret=VECTOR_SECRET)
    assert not token.is_v2
    assert token.issuer is None
    assert token.encode() == VECTOR_SECRET


@pytest.mark.parametrize("tail", ["/", "/anything", "/a/b/c", "/ not even a secret '"])
def test_parse_v2_ignores_everything_after_a_fourth_slash(tail: str) -> None:
    assert parse_token(f"v2/{VECTOR_UUID}/{VECTOR_SECRET}{tail}") == VECTOR_TOKEN


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "v2/",
        "v2//",
        f"v2/{VECTOR_UUID}",
        f"v2/{VECTOR_UUID}/",
        f"v2//{VECTOR_SECRET}",
        f"v2/{VECTOR_UUID}//{VECTOR_SECRET}",
        f"V2/{VECTOR_UUID}/{VECTOR_SECRET}",
        f"v3/{VECTOR_UUID}/{VECTOR_SECRET}",
        f"/v2/{VECTOR_UUID}/{VECTOR_SECRET}",
        f"v2/qr1hi-tpzed-000000000000001/{VECTOR_SECRET}",  # a user UUID, not a token UUID
        f"v2/QR1HI-gj3su-000000000000001/{VECTOR_SECRET}",
        f"v2/qr1hi-gj3su-00000000000001/{VECTOR_SECRET}",  # 14 characters
        f"v2/{VECTOR_UUID}/{VECTOR_SECRET}'",
        f"v2/{VECTOR_UUID}/' OR 1=1 --",
        f"v2/{VECTOR_UUID}/secret with spaces",
        f"v2/{VECTOR_UUID}/sécret",
        f"v2/{VECTOR_UUID}/{VECTOR_SECRET}\n",
        f"{VECTOR_SECRET}/",
        "' OR 1=1 --",
        '"quoted"',
        "two words",
        "sécret",
        "a\x00b",
        "a" * (MAX_TOKEN_LENGTH + 1),
        f"v2/{VECTOR_UUID}/{'a' * MAX_TOKEN_LENGTH}",
    ],
)
def test_parse_token_refuses_malformed_tokens(raw: str) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        parse_token(raw)
    if len(raw) > 8:
        assert raw not in str(excinfo.value)  # the message says why, never what it was


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        (f"Bearer v2/{VECTOR_UUID}/{VECTOR_SECRET}", VECTOR_TOKEN),
        (f"OAuth2 v2/{VECTOR_UUID}/{VECTOR_SECRET}", VECTOR_TOKEN),
        (f"bearer {VECTOR_SECRET}", Token(uuid=None, secret=VECTOR_SECRET)),
    ],
)
def test_parse_authorization_accepts_bearer_and_oauth2(
    header: str | None, expected: Token | None
) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer   ", f"Basic {VECTOR_SECRET}", VECTOR_SECRET, "Bearer v2//x"]
)
def test_parse_authorization_refuses_malformed_headers(header: str) -> None:
    with pytest.raises(MalformedToken):
        parse_authorization(header)


# --- identifiers ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["qr1hi", "zzzzz", "00000", "c97qk"])
def test_is_cluster_id_accepts_five_lowercase_alphanumerics(value: str) -> None:
    assert is_cluster_id(value)


@pytest.mark.parametrize(
    "value", ["", "qr1h", "qr1hi1", "QR1HI", "qr-hi", "qr1hi\n", " qr1h", "qr1hé", None, 12345]
)
def test_is_cluster_id_refuses_anything_else(value: object) -> None:
    assert not is_cluster_id(value)


def test_is_uuid_accepts_the_spec_shape_and_checks_the_type() -> None:
    assert is_uuid("qr1hi-tpzed-000000000000000")
    assert is_uuid("qr1hi-tpzed-anonymouspublic", type_="tpzed")
    assert is_uuid(VECTOR_UUID, type_="gj3su")
    assert not is_uuid(VECTOR_UUID, type_="tpzed")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "qr1hi-tpzed-00000000000000",  # 26 characters
        "qr1hi-tpzed-0000000000000000",  # 28 characters
        "qr1hi_tpzed_000000000000000",
        "QR1HI-tpzed-000000000000000",
        "qr1hi-tpzed-00000000000000A",
        "qr1hi-tpzed-000000000000000\n",
        "qr1hi-tpzd-0000000000000000",
        None,
    ],
)
def test_is_uuid_refuses_anything_else(value: object) -> None:
    assert not is_uuid(value)


# --- scopes --------------------------------------------------------------------------


def test_scope_all_allows_everything() -> None:
    assert scope_allows(["all"], "DELETE", "/arvados/v1/collections/x")


def test_exact_scope_allows_only_that_method_and_path() -> None:
    scopes = ["GET /arvados/v1/users/current"]
    assert scope_allows(scopes, "GET", "/arvados/v1/users/current")
    assert not scope_allows(scopes, "POST", "/arvados/v1/users/current")
    assert not scope_allows(scopes, "GET", "/arvados/v1/users/current/x")
    assert not scope_allows(scopes, "GET", "/arvados/v1/users")


def test_exact_scope_without_trailing_slash_is_not_a_prefix() -> None:
    assert not scope_allows(["GET /arvados/v1/users"], "GET", "/arvados/v1/users/current")


def test_prefix_scope_ending_in_slash_allows_paths_below_it() -> None:
    scopes = ["GET /arvados/v1/users/"]
    assert scope_allows(scopes, "GET", "/arvados/v1/users/current")
    assert scope_allows(scopes, "GET", "/arvados/v1/users/qr1hi-tpzed-000000000000000")
    assert not scope_allows(scopes, "GET", "/arvados/v1/usersx")
    assert not scope_allows(scopes, "PUT", "/arvados/v1/users/current")


def test_head_is_allowed_by_a_get_scope_but_not_the_reverse() -> None:
    assert scope_allows(["GET /arvados/v1/users/"], "HEAD", "/arvados/v1/users/current")
    assert not scope_allows(["HEAD /arvados/v1/users/"], "GET", "/arvados/v1/users/current")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reading_the_current_token_is_always_allowed(method: str) -> None:
    assert scope_allows([], method, CURRENT_TOKEN_PATH)
    assert scope_allows(["GET /arvados/v1/collections/"], method, CURRENT_TOKEN_PATH)


def test_writing_the_current_token_is_not_implicitly_allowed() -> None:
    assert not scope_allows([], "DELETE", CURRENT_TOKEN_PATH)


@pytest.mark.parametrize(
    "scopes",
    [
        [],
        ["GET"],
        ["GET "],
        ["/arvados/v1/users/current"],
        ["POST /arvados/v1/users/current"],
        ["GET /arvados/v1/collections/"],
        ["alll"],
        ["GET /arvados/v1/users/current "],
    ],
)
def test_everything_else_is_refused(scopes: list[str]) -> None:
    assert not scope_allows(scopes, "GET", "/arvados/v1/users/current")


# --- secrets stay secret -------------------------------------------------------------


def test_token_repr_and_str_never_contain_the_secret() -> None:
    for token in (VECTOR_TOKEN, Token(uuid=None, secret=VECTOR_SECRET)):
        for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
            assert VECTOR_SECRET not in text
    assert VECTOR_UUID in repr(VECTOR_TOKEN)
