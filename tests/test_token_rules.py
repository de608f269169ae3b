"""SPEC 1 and 3.2 step 6 at their edges: what mutation testing found untested in tokens.py.

The refusal messages are pinned because they reach clients and logs ("malformed
credential: <why>"): they must say why, never echo what was presented.
"""

from __future__ import annotations

import re

import pytest
from clusterfed.credentials import bearer_credential, parse_authorization
from clusterfed.tokens import (
    MAX_TOKEN_LENGTH,
    CannotResalt,
    MalformedToken,
    Token,
    for_issuer,
    is_opaque_credential,
    is_uuid,
    new_secret,
    new_uuid,
    parse_token,
    salt,
    salted_secret,
    scope_allows,
    secrets_equal,
    uuid_cluster,
    uuid_type,
)

UUID = "qr1hi-gj3su-000000000000001"
SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"


def test_a_token_of_exactly_the_limit_is_parsed_one_more_is_refused() -> None:
    head = f"v2/{UUID}/{SECRET}/"  # after a fourth "/" anything is ignored
    at_limit = head + "x" * (MAX_TOKEN_LENGTH - len(head))
    assert len(at_limit) == MAX_TOKEN_LENGTH
    assert parse_token(at_limit) == Token(uuid=UUID, secret=SECRET)
    with pytest.raises(MalformedToken, match=r"^token is longer than 4096 characters$"):
        parse_token(at_limit + "x")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("v2/qr1hi-gj3su-000000000000001", "v2 token must be v2/<token uuid>/<secret>"),
        (f"v2/qr1hi-tpzed-000000000000001/{SECRET}", "v2 token has a malformed token UUID"),
        (f"v2/{UUID}/not-a-secret", "v2 token has a malformed secret"),
        ("a/b", "token is neither a v2 token nor a bare secret"),
        ("sp ace", "token is neither a v2 token nor a bare secret"),
    ],
)
def test_refusals_say_why_and_never_what(raw: str, message: str) -> None:
    with pytest.raises(MalformedToken) as refused:
        parse_token(raw)
    assert str(refused.value) == message


def test_a_garbled_authorization_header_is_refused_with_the_expected_shape() -> None:
    with pytest.raises(MalformedToken) as refused:
        parse_authorization(f"Basic {SECRET}")
    assert str(refused.value) == (
        "Authorization header must be 'Bearer <token>' or 'OAuth2 <token>'"
    )


def test_bearer_allows_several_spaces_before_the_token() -> None:
    # RFC 6750: "Bearer" 1*SP b64token
    assert bearer_credential(f"Bearer   {SECRET}") == SECRET
    assert bearer_credential(f"  oauth2 {SECRET}  ") == SECRET
    assert bearer_credential("Bearer ") is None


def test_salting_refusals() -> None:
    with pytest.raises(MalformedToken) as refused:
        salt(Token(uuid=None, secret=SECRET), "c97qk")
    assert str(refused.value) == "only v2 tokens can be salted"
    salted = Token(uuid=UUID, secret=salted_secret(SECRET, "c97qk"))
    with pytest.raises(CannotResalt) as refused_again:
        salt(salted, "zbbbb")
    assert str(refused_again.value) == "token is already salted and cannot be salted again"


def test_for_issuer_salts_an_unsalted_token_for_us_and_passes_a_salted_one() -> None:
    raw = Token(uuid=UUID, secret=SECRET)
    assert for_issuer(raw, "c97qk") == Token(uuid=UUID, secret=salted_secret(SECRET, "c97qk"))
    salted = Token(uuid=UUID, secret=salted_secret(SECRET, "c97qk"))
    assert for_issuer(salted, "c97qk") is salted
    # The issuer's own secret never leaves unsalted, even when "us" is its issuer's peer.
    assert for_issuer(raw, "zbbbb").secret != SECRET


def test_new_secrets_are_50_characters_of_lowercase_and_digits() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(re.fullmatch(r"[a-z0-9]{50}", secret) for secret in secrets)


def test_a_scope_that_does_not_match_does_not_end_the_search() -> None:
    assert scope_allows(
        ["POST /arvados/v1/collections", "GET /arvados/v1/users/"], "GET", "/arvados/v1/users/x"
    )
    assert scope_allows(["GET", "GET /arvados/v1/groups"], "GET", "/arvados/v1/groups")


def test_a_scope_path_may_contain_spaces() -> None:
    assert scope_allows(["GET /arvados/v1/a b"], "GET", "/arvados/v1/a b")
    assert not scope_allows(["GET /arvados/v1/a b"], "GET", "/arvados/v1/a")


def test_uuid_parts_and_new_uuids() -> None:
    assert (uuid_cluster(UUID), uuid_type(UUID)) == ("qr1hi", "gj3su")
    made = {new_uuid("c97qk", "4zz18") for _ in range(20)}
    assert len(made) == 20
    assert all(is_uuid(uuid, type_="4zz18") and uuid_cluster(uuid) == "c97qk" for uuid in made)


def test_secrets_equal_compares_whole_secrets() -> None:
    assert secrets_equal(SECRET, SECRET)
    assert not secrets_equal(SECRET, SECRET[:-1] + "x")
    assert not secrets_equal(SECRET, SECRET[:-1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi", True),  # a v1 secret
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", True),  # a JWT
        ("ya29.a0AfB_byC-x~y+z==", True),  # an opaque OIDC access token
        ("-", False),  # "Bearer -": no token
        ("qr1hi-gj3su-000000000000001", False),  # a UUID is public
        ("v2/qr1hi-gj3su-000000000000001/abc", False),  # a v2 token
        ("abc/def", False),
        ("'; DROP TABLE users; --", False),
        ('"quoted"', False),
        ("two words", False),
        ("sécrét", False),
        ("nul\x00byte", False),
        ("a" * 4096, True),  # the longest token accepted (SPEC 4)
        ("a" * 4097, False),
        ("=abc", False),
        ("", False),
    ],
)
def test_what_can_be_a_credential_for_the_login_cluster(value: str, expected: bool) -> None:
    assert is_opaque_credential(value) is expected
