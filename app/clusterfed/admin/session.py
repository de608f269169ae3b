"""The admin page's login session: a signed, expiring cookie that never holds a credential.

The design, chosen as the simplest that is sound with ``--workers N`` and no new table:

- The login form's credential is checked once. The cookie then holds
  ``<payload>.<mac>``: the payload (base64url JSON) names what the session stands for
  (``kind`` ``management``, ``system`` or ``token``, the admin user and the token's UUID,
  never its secret), a random session id and an expiry (``SESSION_SECONDS``, never past
  the token's own); the mac is HMAC-SHA256 under a key derived from the cluster's
  SystemRootToken and ManagementToken. Every worker derives the same key, so any worker
  accepts the cookie; nobody without those secrets can make or alter one, and changing
  either secret ends every session.
- Every request re-verifies what the session stands for (``admin_auth.admin_for_session``):
  a revoked or expired token, or a user no longer admin, ends it at once.
- CSRF tokens are HMACs of the session id under the same key: bound to the session, so a
  value an attacker plants in a cookie and a form is worth nothing. Before login, the login
  form's token is bound the same way to a random nonce kept in its own cookie.

With neither secret configured the key is random per process: sessions then hold only in
the worker that made them (a warning says so). Logout deletes the cookie; a copy of it
stays valid until it expires or its credential is revoked (for the ManagementToken:
rotated), which the HttpOnly, SameSite=Strict (and, over https, Secure) cookie makes hard
to obtain.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal

from clusterfed.config import ClusterConfig

log = logging.getLogger("clusterfed.admin")

SESSION_SECONDS = 12 * 3600
Kind = Literal["management", "system", "token"]
KINDS = ("management", "system", "token")
MAX_COOKIE_CHARS = 1024
_PROCESS_KEY = secrets.token_bytes(32)
_warned: list[bool] = []


@dataclass(frozen=True, slots=True)
class AdminSession:
    sid: str
    kind: Kind
    user_uuid: str | None
    token_uuid: str | None
    expires_at: int  # Unix seconds


def session_key(config: ClusterConfig) -> bytes:
    secret = f"{config.system_root_token}\0{config.management_token}"
    if not (config.system_root_token or config.management_token):
        if not _warned:
            _warned.append(True)
            log.warning(
                "neither SystemRootToken nor ManagementToken is set: admin page sessions "
                "are keyed per process and hold only in the worker that made them"
            )
        return _PROCESS_KEY
    message = f"clusterfed-admin-session\0{config.cluster_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _mac(key: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_session(
    config: ClusterConfig,
    *,
    kind: Kind,
    user_uuid: str | None,
    token_uuid: str | None,
    not_after: float | None = None,
    now: float | None = None,
) -> tuple[AdminSession, str]:
    """A new session and its cookie value."""
    expires_at = (now if now is not None else time.time()) + SESSION_SECONDS
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    session = AdminSession(secrets.token_urlsafe(16), kind, user_uuid, token_uuid, int(expires_at))
    payload = base64.urlsafe_b64encode(json.dumps(asdict(session)).encode()).rstrip(b"=")
    encoded = payload.decode()
    return session, f"{encoded}.{_mac(session_key(config), 'session', encoded)}"


def read_session(
    config: ClusterConfig, cookie: str, *, now: float | None = None
) -> AdminSession | None:
    """The session a cookie holds, or None if it is forged, altered, malformed or expired."""
    if len(cookie) > MAX_COOKIE_CHARS:
        return None
    encoded, _, mac = cookie.partition(".")
    if not _equal(mac, _mac(session_key(config), "session", encoded)):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        session = AdminSession(**fields)
    except (ValueError, TypeError, binascii.Error):
        return None  # signed by us, so never in practice; still no 500
    if session.kind not in KINDS or not isinstance(session.expires_at, int):
        return None
    if session.expires_at <= (now if now is not None else time.time()):
        return None
    return session


def csrf_token(config: ClusterConfig, binding: str) -> str:
    """The CSRF token for a session id (or, before login, for the login nonce)."""
    return _mac(session_key(config), "csrf", binding)


def csrf_matches(config: ClusterConfig, binding: str, presented: str) -> bool:
    return bool(binding) and _equal(presented, csrf_token(config, binding))


def _equal(presented: str, expected: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a cookie or form may hold anything.
    return hmac.compare_digest(presented.encode(), expected.encode())
