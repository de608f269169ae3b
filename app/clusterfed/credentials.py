"""The Authorization header: the one place that reads it (docs/protocol.md#credentials-and-errors).

``Authorization: Bearer <token>`` or ``OAuth2 <token>``. Everything that needs the
caller's credential (the middleware, the router, the permission checks, the example
server, the admin API) asks here, so the rule for what a header means is written once.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.types import Scope

from .tokens import MalformedToken, Token, parse_token, secrets_equal

AUTHORIZATION = b"authorization"
# Four times the longest token accepted (MAX_TOKEN_LENGTH): a long but plausible header
# still gets the token grammar's 401 and its reason; beyond this, nothing is a credential.
MAX_AUTHORIZATION_BYTES = 16 * 1024


def authorization_header(scope: Scope) -> str | None:
    """The raw Authorization header of an ASGI request, or None."""
    for name, value in scope["headers"]:
        if name == AUTHORIZATION:
            # latin-1 maps every byte, so a non-ASCII header decodes (and is then refused
            # by the token grammar) instead of raising.
            return value.decode("latin-1")
    return None


def oversized_authorization(scope: Scope) -> bool:
    """Whether any Authorization header is past what can hold a credential (431)."""
    return any(
        name == AUTHORIZATION and len(value) > MAX_AUTHORIZATION_BYTES
        for name, value in scope["headers"]
    )


def bearer_credential(header: str) -> str | None:
    """The credential of a ``Bearer``/``OAuth2`` Authorization header, else None."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "oauth2"):
        return None
    return value.strip() or None


def parse_authorization(header: str | None) -> Token | None:
    """The token in an ``Authorization: Bearer|OAuth2 <token>`` header; None when absent.

    A header that is present but not of that shape is malformed (401), not anonymous:
    silently treating a garbled credential as "no credential" hides client bugs.
    """
    if header is None:
        return None
    credential = bearer_credential(header)
    if credential is None:
        raise MalformedToken("Authorization header must be 'Bearer <token>' or 'OAuth2 <token>'")
    return parse_token(credential)


def is_management_token(header: str | None, management_token: str) -> bool:
    """Whether the header carries the configured ManagementToken (never when unset)."""
    if not management_token or header is None:
        return False
    credential = bearer_credential(header)
    return credential is not None and secrets_equal(credential, management_token)


# Query parameters that carry credentials in Arvados URLs. They are not credentials here
# (only the Authorization header is), and they never travel further in a URL: a URL is
# what proxies, access logs and HTTP clients' log lines write down.
URL_CREDENTIAL_PARAMS = frozenset({"api_token", "reader_tokens"})


def is_url_credential(name: str) -> bool:
    """``api_token``, ``reader_tokens`` or ``reader_tokens[]``, in any letter case."""
    return name.strip().lower().removesuffix("[]") in URL_CREDENTIAL_PARAMS


def without_url_credentials(target: str) -> str:
    """``target`` (a path and its query) without any credential parameter."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    kept = [part for part in query.split("&") if not is_url_credential(_param_name(part))]
    return f"{path}?{'&'.join(kept)}" if kept else path


def _param_name(part: str) -> str:
    return unquote_plus(part.partition("=")[0])
