"""What a remote's HTTP status means here (outbound/statuses.py), row by row."""

from __future__ import annotations

import pytest
from clusterfed.errors import BadGateway, FederationError, RemoteError, Unauthorized
from clusterfed.outbound.statuses import (
    TRANSIENT,
    IssuerRejected,
    list_part_error,
    permission_check_error,
    remote_block_error,
    token_call_error,
    user_call_error,
)


def test_only_transient_statuses_are_retried() -> None:
    assert frozenset({429, 502, 503}) == TRANSIENT


@pytest.mark.parametrize(
    ("status", "kind", "answered", "message"),
    [
        (200, None, None, None),
        (204, None, None, None),
        (400, IssuerRejected, 401, "issuer qr1hi rejected the token (400)"),
        (404, IssuerRejected, 401, "issuer qr1hi rejected the token (404)"),
        (499, IssuerRejected, 401, "issuer qr1hi rejected the token (499)"),
        (429, FederationError, 503, "issuer qr1hi is rate-limiting validations"),
        (500, FederationError, 500, "issuer qr1hi failed (500)"),
        (503, FederationError, 503, "issuer qr1hi failed (503)"),
    ],
)
def test_the_token_call(
    status: int, kind: type | None, answered: int | None, message: str | None
) -> None:
    error = token_call_error("qr1hi", status)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert (error.status_code, error.message) == (answered, message)
    # Only a rejection may enter the negative cache (SPEC 4): never a 429 or a 5xx.
    assert isinstance(error, IssuerRejected) == (400 <= status < 500 and status != 429)


@pytest.mark.parametrize("status", [200, 204, 301])
def test_the_user_call_reads_what_is_not_an_error(status: int) -> None:
    assert user_call_error("qr1hi", status) is None


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
def test_the_user_call_keeps_the_status(status: int) -> None:
    error = user_call_error("qr1hi", status)
    assert error is not None and type(error) is FederationError
    assert (error.status_code, error.message) == (
        status,
        f"issuer qr1hi answered {status} for the token's user",
    )


@pytest.mark.parametrize(
    ("status", "kind", "answered", "message"),
    [
        (200, None, None, None),
        (401, Unauthorized, 401, "qr1hi did not accept the user's token for a permission check"),
        (403, BadGateway, 502, "qr1hi could not answer a permission check (status 403)"),
        (201, BadGateway, 502, "qr1hi could not answer a permission check (status 201)"),
        (500, BadGateway, 502, "qr1hi could not answer a permission check (status 500)"),
    ],
)
def test_the_permission_check_fails_closed(
    status: int, kind: type | None, answered: int | None, message: str | None
) -> None:
    error = permission_check_error("qr1hi", status)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert (error.status_code, error.message) == (answered, message)


@pytest.mark.parametrize(
    ("status", "kind", "answered"),
    [
        (401, BadGateway, 502),
        (403, FederationError, 403),
        (422, FederationError, 422),
        (500, RemoteError, 500),
        (504, RemoteError, 504),
    ],
)
def test_a_merged_lists_part(status: int, kind: type, answered: int) -> None:
    error = list_part_error("c97qk", status, "bad filter")
    assert type(error) is kind
    assert (error.status_code, error.message) == (
        answered,
        f"cluster c97qk answered {status}: bad filter",
    )


@pytest.mark.parametrize(
    ("status", "answered"),
    [
        (200, None),
        (404, 404),
        (400, 403),
        (401, 403),
        (403, 403),
        (422, 502),
        (500, 502),
        (503, 502),
        (504, 502),
        (302, 502),
        (204, 502),
    ],
)
def test_a_remote_block_servers_status(status: int, answered: int | None) -> None:
    error = remote_block_error("c97qk", status)
    assert (error.status_code if error else None) == answered
