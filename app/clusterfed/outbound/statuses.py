"""What another cluster's HTTP status means here: one rule per kind of call, one place.

- A **validation**'s token call (docs/protocol.md#status-mapping): 4xx is a rejection (401, and
  remembered in the negative cache); 429 still there after the retries is "not now"
  (503, never remembered); 5xx keeps its status.
- A validation's **user** call: 4xx/5xx keep their status (the caller falls back on the
  mirror it has).
- A **permission check**: 401 means the home refused the user's token; any
  other status but 200 is no answer, and the check fails closed (502).
- A **part of a merged list**: a remote's 401 becomes 502 (the caller's
  credentials are fine here, and a 401 would make a client drop a working token); other
  4xx keep their status (a filter the clusters refuse is the caller's to fix); 5xx too.
- A **block** read from, or written to, another cluster's block server (and its list
  of block servers): 404 is "no such block"; 400, 401 and 403 mean the remote refused the
  credential or the signature (403 here: the caller's credentials are fine on this
  cluster, and the Keep client gives up on it rather than retrying); anything else but
  200 is no usable answer (502), which the Keep client retries.
- The statuses worth a retry are the transient ones (``TRANSIENT``).

Each function returns the error to raise, or None when the status is an answer to read.
"""

from __future__ import annotations

from clusterfed.errors import (
    BadGateway,
    FederationError,
    Forbidden,
    NotFound,
    RemoteError,
    Unauthorized,
)

TRANSIENT = frozenset({429, 502, 503})  # retried within RemoteTimeout


class IssuerRejected(Unauthorized):
    """The issuer answered 4xx for the token: remembered in the negative cache."""


def token_call_error(issuer: str, status: int) -> FederationError | None:
    if status == 429:
        # Still rate-limited after the retries: the issuer said "not now", not "no".
        # Answering 503 keeps it out of the negative cache and lets StaleIfError apply.
        return FederationError(f"issuer {issuer} is rate-limiting validations", status_code=503)
    if 400 <= status < 500:
        return IssuerRejected(f"issuer {issuer} rejected the token ({status})")
    if status >= 500:
        return FederationError(f"issuer {issuer} failed ({status})", status_code=status)
    return None


def user_call_error(issuer: str, status: int) -> FederationError | None:
    if status >= 400:
        return FederationError(
            f"issuer {issuer} answered {status} for the token's user", status_code=status
        )
    return None


def permission_check_error(home: str, status: int) -> FederationError | None:
    if status == 401:
        return Unauthorized(f"{home} did not accept the user's token for a permission check")
    if status != 200:
        return BadGateway(f"{home} could not answer a permission check (status {status})")
    return None


def list_part_error(cluster_id: str, status: int, message: str) -> FederationError:
    text = f"cluster {cluster_id} answered {status}: {message}"
    if status == 401:
        return BadGateway(text)
    if status >= 500:
        return RemoteError(text, status_code=status)
    return FederationError(text, status_code=status)


def remote_block_error(cluster_id: str, status: int) -> FederationError | None:
    if status == 200:
        return None
    if status == 404:
        return NotFound(f"cluster {cluster_id} has no such block")
    if status in (400, 401, 403):
        return Forbidden(
            f"cluster {cluster_id} refused the credential or the block's signature ({status})"
        )
    return BadGateway(f"cluster {cluster_id}'s block server answered {status}")
