"""The Authorization header, read in one place (credentials.py): what it yields, where its
size ends, and when it is the ManagementToken. Pure functions, no server."""

from __future__ import annotations

import pytest
from clusterfed.credentials import (
    MAX_AUTHORIZATION_BYTES,
    authorization_header,
    bearer_credential,
    is_management_token,
    oversized_authorization,
    parse_authorization,
)
from clusterfed.tokens import MalformedToken, Token

SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": list(headers)}


def test_the_header_is_found_among_others_and_decoded_byte_for_byte() -> None:
    assert authorization_header(scope()) is None
    assert authorization_header(scope((b"host", b"x"))) is None
    found = scope((b"host", b"x"), (b"authorization", b"Bearer \xe9t\xe9"))
    # latin-1: every byte maps, so a non-ASCII header is judged by the grammar, not a crash.
    assert authorization_header(found) == "Bearer \u00e9t\u00e9"
    first = scope((b"authorization", b"Bearer one"), (b"authorization", b"Bearer two"))
    assert authorization_header(first) == "Bearer one"


def test_oversized_ends_exactly_past_the_limit() -> None:
    at_limit = b"B" * MAX_AUTHORIZATION_BYTES
    assert MAX_AUTHORIZATION_BYTES == 16 * 1024
    assert not oversized_authorization(scope((b"authorization", at_limit)))
    assert oversized_authorization(scope((b"authorization", at_limit + b"B")))
    # Any of them: a second, huge header cannot hide behind a small first one.
    two = scope((b"authorization", b"Bearer x"), (b"authorization", at_limit + b"B"))
    assert oversized_authorization(two)
    assert not oversized_authorization(scope((b"cookie", at_limit + b"B")))


@pytest.mark.parametrize(
    ("header", "credential"),
    [
        (f"Bearer {SECRET}", SECRET),
        (f"OAuth2 {SECRET}", SECRET),
        (f"bearer {SECRET}", SECRET),
        (f"  Bearer   {SECRET}  ", SECRET),
        ("Bearer", None),
        ("Bearer   ", None),
        (f"Basic {SECRET}", None),
        (SECRET, None),
    ],
)
def test_bearer_credential(header: str, credential: str | None) -> None:
    assert bearer_credential(header) == credential


def test_parse_authorization_absent_present_and_garbled() -> None:
    assert parse_authorization(None) is None
    assert parse_authorization(f"OAuth2 {SECRET}") == Token(uuid=None, secret=SECRET)
    with pytest.raises(MalformedToken, match="must be 'Bearer <token>' or 'OAuth2 <token>'"):
        parse_authorization(f"Basic {SECRET}")


@pytest.mark.parametrize(
    ("header", "configured", "expected"),
    [
        ("Bearer mgmt-token", "mgmt-token", True),
        ("OAuth2 mgmt-token", "mgmt-token", True),
        ("Bearer mgmt-token2", "mgmt-token", False),
        ("Bearer mgmt", "mgmt-token", False),
        ("Basic mgmt-token", "mgmt-token", False),
        (None, "mgmt-token", False),
        ("Bearer ", "", False),  # never when none is configured, not even "empty = empty"
        ("Bearer mgmt-token", "", False),
    ],
)
def test_is_management_token(header: str | None, configured: str, expected: bool) -> None:
    assert is_management_token(header, configured) is expected
