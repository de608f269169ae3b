"""What every forwarded request shares: the caller's token salted for the target, and
turning a remote's answer into ours (loop protection is ``params.serve_locally``).

A remote's answer is relayed with its status and its JSON body (re-rendered, so nothing
but JSON reaches the caller: an HTML error page from a proxy in front of the remote is a
502 here, not something for a client to parse).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from clusterfed.credentials import authorization_header, parse_authorization
from clusterfed.errors import BadGateway, FederationError, Unauthorized, Unprocessable
from clusterfed.outbound.remote import RemoteResponse
from clusterfed.outbound.statuses import list_part_error
from clusterfed.tokens import CannotResalt, MalformedToken, Token, salt

from .manifests import hint_answer

MAX_RELAYED_MESSAGE = 300


def token_for(scope: Scope, cluster_id: str) -> Token | None:
    """The caller's token as it may be sent to ``cluster_id``; None for an anonymous call."""
    try:
        token = parse_authorization(authorization_header(scope))
    except MalformedToken as exc:
        raise Unauthorized(f"malformed credential: {exc}") from None
    if token is None:
        return None
    if not token.is_v2:
        raise Unprocessable(
            f"this request must go to cluster {cluster_id}, and a v1 token cannot be "
            "sent to another cluster; use a v2 token"
        )
    try:
        if token.is_salted:
            # Salted for us, it cannot be salted again, and sent unchanged to its issuer
            # it would be refused there (a salted token is good only for validation).
            raise CannotResalt("already salted")
        return salt(token, cluster_id)
    except CannotResalt:
        raise Unprocessable(
            f"this request must go to cluster {cluster_id}, but the token presented is "
            "already salted for this cluster and cannot be salted again; present the "
            "unsalted token"
        ) from None


def remote_json(response: RemoteResponse, cluster_id: str) -> Any:
    if response.truncated:
        raise BadGateway(f"cluster {cluster_id} answered with a body larger than allowed")
    if response.unreadable:
        raise BadGateway(f"cluster {cluster_id} answered with a body that cannot be decoded")
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadGateway(
            f"cluster {cluster_id} answered {response.status_code} with a body that is not JSON"
        ) from None


def relay(response: RemoteResponse, cluster_id: str, *, hints: bool) -> Response:
    """Our answer for a request forwarded whole to ``cluster_id``."""
    if not response.content and not (response.truncated or response.unreadable):
        return Response(status_code=response.status_code)
    body = remote_json(response, cluster_id)
    if hints and 200 <= response.status_code < 300:
        hint_answer(body, cluster_id)
    return JSONResponse(body, status_code=response.status_code)


def first_error(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        return errors[0][:MAX_RELAYED_MESSAGE]
    return "no error message"


def part_failed(cluster_id: str, status: int, body: Any) -> FederationError:
    """The error for a whole merged list when one cluster's part of it failed.

    What each status becomes is ``outbound.statuses.list_part_error``'s rule.
    """
    return list_part_error(cluster_id, status, first_error(body))
