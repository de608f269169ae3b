"""Permission signatures on block locators, byte for byte as Arvados makes them.

``+A<hex HMAC-SHA1(key, "<md5>@<credential>@<expiry hex>@<ttl hex>")>@<expiry hex>``,
where ``credential`` is the exact string the client presented (a whole v2 token, salted
or not, or a v1 secret), the expiry is 8 lowercase hex digits of unix seconds, and the
TTL is the cluster's signing TTL in seconds, lowercase hex without padding.

Errors::

    SignatureError
    ├── SignatureExpired     the expiry has passed (keepstore: 401)
    └── SignatureInvalid     present but wrong or malformed (keepstore: 400)
        └── SignatureMissing no ``+A`` hint at all
"""

from __future__ import annotations

import hashlib
import hmac
import time

from clusterfed.keep.locators import Locator, MalformedLocator, parse_locator

DEFAULT_TTL_SECONDS = 336 * 3600  # two weeks, Arvados's default
_KEY_DERIVATION_LABEL = b"clusterfed blob signing key v1"


class SignatureError(ValueError):
    """A locator's signature does not let this credential read the block."""


class SignatureExpired(SignatureError):
    pass


class SignatureInvalid(SignatureError):
    pass


class SignatureMissing(SignatureInvalid):
    pass


def signing_key(blob_signing_key: str, system_root_token: str) -> bytes:
    """The key signatures are made with: ``BlobSigningKey`` when set, else one derived from
    ``SystemRootToken`` (so every worker and host of a cluster agrees without another
    secret to distribute). Empty when neither is set: nothing is signed then."""
    if blob_signing_key:
        return blob_signing_key.encode()
    if not system_root_token:
        return b""
    derived = hmac.new(system_root_token.encode(), _KEY_DERIVATION_LABEL, hashlib.sha256)
    return derived.hexdigest().encode()


def make_signature(md5: str, credential: str, expiry_hex: str, ttl_seconds: int, key: bytes) -> str:
    """The 40 hex digits of one signature."""
    message = f"{md5}@{credential}@{expiry_hex}@{ttl_seconds:x}".encode()
    return hmac.new(key, message, hashlib.sha1).hexdigest()


def sign_locator(
    locator: str | Locator, credential: str, key: bytes, ttl_seconds: int, expiry: int
) -> str:
    """``locator`` without any ``+A`` hint, then ``+A<signature>@<expiry>``.

    Returned unchanged (apart from dropping old ``+A`` hints) when the key or the
    credential is empty, as Arvados does.
    """
    parsed = locator if isinstance(locator, Locator) else parse_locator(locator, require_size=False)
    parsed = parsed.without("A")
    if not key or not credential:
        return str(parsed)
    expiry_hex = f"{expiry:08x}"
    signature = make_signature(parsed.md5, credential, expiry_hex, ttl_seconds, key)
    return str(parsed.with_hint(f"A{signature}@{expiry_hex}"))


def verify_locator(
    locator: str | Locator,
    credential: str,
    key: bytes,
    ttl_seconds: int,
    *,
    now: float | None = None,
) -> None:
    """Returns when the locator's ``+A`` signature is valid for ``credential``; raises
    SignatureMissing, SignatureExpired or SignatureInvalid otherwise (expiry is checked
    first, as Arvados does). A malformed locator is SignatureInvalid."""
    try:
        parsed = (
            locator if isinstance(locator, Locator) else parse_locator(locator, require_size=False)
        )
    except MalformedLocator as exc:
        raise SignatureInvalid(str(exc)) from exc
    hints = parsed.signature_hints
    if not hints:
        raise SignatureMissing("the locator carries no signature")
    found = parsed.signature
    if found is None:
        raise SignatureInvalid("the locator's signature is malformed")
    if found.expiry < (time.time() if now is None else now):
        raise SignatureExpired("the locator's signature has expired")
    expected = make_signature(parsed.md5, credential, found.expiry_hex, ttl_seconds, key)
    if not key or not hmac.compare_digest(expected, found.signature):
        raise SignatureInvalid("the locator's signature is not valid for this credential")


def is_signed_for(
    locator: str | Locator,
    credential: str,
    key: bytes,
    ttl_seconds: int,
    *,
    now: float | None = None,
) -> bool:
    try:
        verify_locator(locator, credential, key, ttl_seconds, now=now)
    except SignatureError:
        return False
    return True
