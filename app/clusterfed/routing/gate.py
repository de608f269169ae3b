"""What a request must show before anything is sent elsewhere on its behalf.

Nothing leaves the cluster for a request that has not shown a credential this cluster
accepts. A stranger (no credential, a malformed one, a made-up token of this cluster) is
answered here, 401, before any routing, fan-out or call to a peer: otherwise every such
request would cost each peer a request, and spend the per-client budgets peers keep for
this cluster on everyone's behalf. The one outbound call a stranger can cause is the
validation of a foreign token at its issuer, which the validator throttles.

Accepted means:
- a foreign credential: ``FederationMiddleware`` validated it and left its identity in
  the scope (it answers 401 itself for one its issuer refuses);
- a credential of this cluster: the host says it is valid. A success the host cached
  (``Federation.local_tokens``) answers at once; else the host's ``LocalCredentials``
  is asked, else its ``knows_credential``. A host that gave neither cannot vouch for its
  own credentials, so none is forwarded.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from clusterfed.credentials import authorization_header, parse_authorization
from clusterfed.errors import Unauthorized
from clusterfed.identity import get_identity
from clusterfed.service import Federation
from clusterfed.tokens import MalformedToken


async def require_accepted(scope: Scope, federation: Federation, *, goes_to: str) -> None:
    """Raise :class:`Unauthorized` unless the request carries a credential this cluster
    accepts; ``goes_to`` says where the request would go, for the message."""
    if get_identity(scope) is not None:
        return
    try:
        token = parse_authorization(authorization_header(scope))
    except MalformedToken as exc:
        raise Unauthorized(f"malformed credential: {exc}") from None
    if token is None:
        raise Unauthorized(f"this request goes to {goes_to}: send a credential")
    if token.issuer is not None and token.issuer != federation.cluster_id:
        # A foreign token reaches here only when the middleware did not accept it.
        raise Unauthorized("token was not issued by this cluster and is not accepted here")
    cache = federation.local_tokens
    if cache.enabled and cache.get(cache.key(token.encode(), "")) is not None:
        return
    if federation.local_credentials is not None:
        credential = token.encode()
        if await federation.local_credentials.login(Request(scope), credential) is not None:
            return
    elif (knows := federation.login.knows_credential) is not None and await knows(token.secret):
        return
    raise Unauthorized("token is not valid on this cluster")
