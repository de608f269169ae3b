"""Token and identifier rules (docs/protocol.md#names-and-formats): the one place they live.

Everything that parses a token, checks a UUID or cluster ID, salts a secret or
matches a scope calls into this module, so the rules cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

CLUSTER_ID_RE = re.compile(r"[a-z0-9]{5}")
UUID_RE = re.compile(r"([a-z0-9]{5})-([a-z0-9]{5})-([a-z0-9]{15})")
# What a bare (v1) secret or the secret part of a v2 token may contain. Arvados issues
# [a-z0-9]; salted secrets are hex. Anything else is malformed, which keeps quotes, SQL
# fragments, whitespace and non-ASCII out of every later step.
SECRET_RE = re.compile(r"[A-Za-z0-9]{1,512}")
SALTED_SECRET_LENGTH = 40  # hex(HMAC-SHA1)
MAX_TOKEN_LENGTH = 4096  # longer tokens are refused, never cached

USER_TYPE = "tpzed"
TOKEN_TYPE = "gj3su"
GROUP_TYPE = "j7d0g"
COLLECTION_TYPE = "4zz18"
LINK_TYPE = "o0j2j"

_UUID_ALPHABET = string.ascii_lowercase + string.digits


class MalformedToken(ValueError):
    """The credential is not a v1 or v2 token; the message says why, never what it was."""


class CannotResalt(ValueError):
    """The secret is already salted (40 characters) and cannot be salted again."""


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed credential. ``uuid`` is None for a v1 (bare secret) token."""

    uuid: str | None
    secret: str

    @property
    def is_v2(self) -> bool:
        return self.uuid is not None

    @property
    def issuer(self) -> str | None:
        """The cluster that issued a v2 token: the first 5 characters of its UUID."""
        return self.uuid[:5] if self.uuid else None

    @property
    def is_salted(self) -> bool:
        return len(self.secret) == SALTED_SECRET_LENGTH

    def encode(self) -> str:
        return f"v2/{self.uuid}/{self.secret}" if self.uuid else self.secret

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"Token(uuid={self.uuid!r}, secret=<redacted>)"

    __str__ = __repr__


def is_cluster_id(value: object) -> bool:
    return isinstance(value, str) and CLUSTER_ID_RE.fullmatch(value) is not None


def is_uuid(value: object, *, type_: str | None = None) -> bool:
    if not isinstance(value, str):
        return False
    match = UUID_RE.fullmatch(value)
    return match is not None and (type_ is None or match.group(2) == type_)


def uuid_cluster(uuid: str) -> str:
    """The cluster prefix of a UUID (callers check the shape first)."""
    return uuid[:5]


def uuid_type(uuid: str) -> str:
    return uuid[6:11]


def new_uuid(cluster_id: str, type_: str) -> str:
    tail = "".join(secrets.choice(_UUID_ALPHABET) for _ in range(15))
    return f"{cluster_id}-{type_}-{tail}"


def new_secret() -> str:
    """A fresh 50-character secret, the length Arvados issues."""
    return "".join(secrets.choice(_UUID_ALPHABET) for _ in range(50))


def system_user_uuid(cluster_id: str) -> str:
    return f"{cluster_id}-{USER_TYPE}-000000000000000"


def anonymous_user_uuid(cluster_id: str) -> str:
    return f"{cluster_id}-{USER_TYPE}-anonymouspublic"


def parse_token(raw: str) -> Token:
    """Parse a v1 or v2 token. Anything after a fourth ``/`` of a v2 token is ignored."""
    if len(raw) > MAX_TOKEN_LENGTH:
        raise MalformedToken("token is longer than 4096 characters")
    if raw.startswith("v2/"):
        parts = raw.split("/", 3)
        if len(parts) < 3:
            raise MalformedToken("v2 token must be v2/<token uuid>/<secret>")
        _, uuid, secret = parts[:3]
        if not is_uuid(uuid, type_=TOKEN_TYPE):
            raise MalformedToken("v2 token has a malformed token UUID")
        if not SECRET_RE.fullmatch(secret):
            raise MalformedToken("v2 token has a malformed secret")
        return Token(uuid=uuid, secret=secret)
    if "/" in raw or not SECRET_RE.fullmatch(raw):
        raise MalformedToken("token is neither a v2 token nor a bare secret")
    return Token(uuid=None, secret=raw)


def salted_secret(secret: str, remote: str) -> str:
    return hmac.new(secret.encode(), remote.encode(), hashlib.sha1).hexdigest()


def salt(token: Token, remote: str) -> Token:
    """The form of ``token`` that may be sent to cluster ``remote`` (docs/protocol.md#salting)."""
    if token.uuid is None:
        raise MalformedToken("only v2 tokens can be salted")
    if token.issuer == remote:
        return token
    if token.is_salted:
        raise CannotResalt("token is already salted and cannot be salted again")
    return Token(uuid=token.uuid, secret=salted_secret(token.secret, remote))


def for_issuer(token: Token, local_id: str) -> Token:
    """The form of a foreign token this cluster presents to its issuer (with ?remote=us).

    A token already salted (presumably for us) goes as presented; an unsalted one is
    salted for us first, so its bare secret travels no further than it already has.
    """
    return token if token.is_salted else salt(token, local_id)


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def scope_allows(scopes: list[str] | tuple[str, ...], method: str, path: str) -> bool:
    """A scope allows a request: ``all``, an exact ``"METHOD path"``, or a prefix ending in ``/``.

    HEAD is allowed by a GET scope; reading the current token is always allowed.
    """
    method = method.upper()
    methods = (method, "GET") if method == "HEAD" else (method,)
    if "GET" in methods and path == "/arvados/v1/api_client_authorizations/current":
        return True
    for scope in scopes:
        if scope == "all":
            return True
        scope_method, _, scope_path = scope.partition(" ")
        if scope_method.upper() not in methods or not scope_path:
            continue
        if scope_path == path or (scope_path.endswith("/") and path.startswith(scope_path)):
            return True
    return False


# What a credential that is not a v2 token may look like (a v1 secret, an OIDC
# access token) when it is sent to the login cluster. RFC 6750's b64token without "/"
# (which only v2 tokens carry), at most 4 kB. Anything else (quotes, spaces, control or
# non-ASCII characters) cannot be a credential at all and never leaves this cluster.
OPAQUE_CREDENTIAL_RE = re.compile(r"[A-Za-z0-9\-._~+]+=*")
NO_TOKEN = "-"  # "Bearer -": Arvados controllers' way of saying "no token"


def is_opaque_credential(value: str) -> bool:
    """Whether ``value`` could be a non-v2 credential another cluster issued.

    Not a v2 token, not ``-``, not a UUID (those are public), and of the b64token grammar.
    """
    return (
        len(value) <= MAX_TOKEN_LENGTH
        and value != NO_TOKEN
        and not value.startswith("v2/")
        and UUID_RE.fullmatch(value) is None
        and OPAQUE_CREDENTIAL_RE.fullmatch(value) is not None
    )
