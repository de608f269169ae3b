"""``FederatedRouter``: pure ASGI; sends requests about other clusters' objects there.

    app.add_middleware(FederatedRouter, federation=federation)
    app.add_middleware(FederationMiddleware, federation=federation)  # outermost

- ``GET/PUT/PATCH/DELETE /arvados/v1/<resource>/<uuid>`` for a UUID of another cluster
  goes to that cluster, with the caller's token salted for it; its answer is ours.
- ``POST /arvados/v1/<resource>`` goes to another cluster when the query or the body says
  ``cluster_id=<id>``, or when its ``owner_uuid`` is a project (group) of another cluster.
  Only a project: a foreign user's UUID as owner is how that user owns objects *here*.
- ``GET /arvados/v1/<resource>`` with ``cluster_id`` goes to that cluster; with
  ``federated=true`` or with ``uuid`` filters naming other clusters it is merged
  (``lists``). Anything else is the host's.

Mount it inside ``FederationMiddleware``: a foreign token is then validated and its scopes
enforced before anything is sent on its behalf, and the local part of a fan-out sees the
identity the middleware left in ``scope["state"]``. The middleware never rewrites the
``Authorization`` header, so the router still salts the caller's original token.

- ``GET /arvados/v1/collections/<portable data hash>`` is the host's when it has the
  collection, else asked of every ``Proxy`` remote in parallel; the first answer whose
  manifest hashes to that PDH wins (``lib/controller/federation/conn.go`` does the same).

Nothing is sent elsewhere for a request without a credential this cluster accepts
(``gate.require_accepted``: 401 here, before any routing). A request that would reach
more than one cluster (a merged list, a lookup by hash asked of the Proxy remotes) spends
one of its client's ``FanoutRate`` budget (429 past it), and its calls to other clusters
are never retried; one answering 5xx counts toward that cluster's circuit breaker.

Requests arrive in one shape whatever the client sent (``wire.ArvadosRequests``). A
request that must be served here (``params.serve_locally``: ``Via: ... arvados-controller``
from a peer, ``forwarded_for``, ``bypass_federation``) is served here or nowhere: a UUID
of a third cluster then answers 404 from the host. Lists and lookups sent to other
clusters say ``forwarded_for=<us>-``, as Arvados's do, so no peer fans them out again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Collection
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clusterfed.credentials import authorization_header, bearer_credential, parse_authorization
from clusterfed.errors import (
    BadGateway,
    FederationError,
    NotFound,
    RemoteError,
    Unauthorized,
    Unprocessable,
)
from clusterfed.jsonbody import loads_client_json
from clusterfed.keep.copying import copy_to_remote
from clusterfed.keep.manifests import portable_data_hash
from clusterfed.params import NOT_JSON, QueryItems, body_document, query_items, serve_locally
from clusterfed.service import Federation
from clusterfed.tokens import GROUP_TYPE, MalformedToken, is_cluster_id, is_uuid, uuid_cluster
from clusterfed.trust.revocation import revocation_target, route_revocation
from clusterfed.trust.throttle import RateLimit, TooManyRequests, client_address, parse_networks

from .forwarding import first_error, part_failed, relay, remote_json, token_for
from .gate import require_accepted
from .inprocess import call_app, replay, request_body, with_body
from .lists import ROUTING_PARAMS, flag, page_from_answer, plan_list, run_list
from .manifests import hint_collection, is_portable_data_hash, without_hints
from .merge import Page

log = logging.getLogger("clusterfed.routing")

API_PREFIX = "/arvados/v1/"
ROUTED_RESOURCES = ("collections", "groups", "links")
OBJECT_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"PUT", "PATCH", "POST"})
HINTED_RESOURCE = "collections"
WARNING_HEADER = "X-Clusterfed-Warning"
LOCAL_ONLY_WARNING = (
    "federated=true searched only {local}: no remote cluster has Proxy: true in its config"
)


class FederatedRouter:
    def __init__(
        self, app: ASGIApp, *, federation: Federation, resources: Collection[str] = ROUTED_RESOURCES
    ) -> None:
        self.app = app
        self.federation = federation
        self.remote = federation.remote
        self.local_id = federation.cluster_id
        remotes = federation.config.remote_clusters
        self.known = frozenset(remotes)
        self.proxies = tuple(sorted(cluster for cluster, spec in remotes.items() if spec.proxy))
        self.resources = frozenset(resources)
        settings = federation.config.federation
        # The cluster's budget, shared by every worker like the other limits.
        self.fanouts = RateLimit("fanout", settings.fanout_rate, budget=federation.budget)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        revoked = revocation_target(scope["method"], scope["path"])
        route = None if revoked else self._route(scope["path"])
        # Only a routed path pays for reading the query that may say "serve it here".
        if (revoked is None and route is None) or serve_locally(scope):
            await self.app(scope, receive, send)
            return
        if revoked is not None:
            if uuid_cluster(revoked) == self.local_id:
                await self.app(scope, receive, send)
            else:
                await (await self._revoke(scope, revoked))(scope, receive, send)
            return
        assert route is not None
        resource, uuid = route
        response: Response | None = None
        try:
            if uuid is not None:
                response = await self._object(scope, receive, resource, uuid)
            elif scope["method"] == "GET":
                response = await self._list(scope, receive, resource)
            elif scope["method"] == "POST":
                body, receive = await request_body(scope, receive)
                target, sent = self._create_target(scope, resource, body)
                if target is not None:
                    response = await self._forward(scope, target, resource, "POST", content=sent)
                elif sent != body:
                    # The host gets the body without our cluster_id.
                    scope = with_body(scope, sent)
                    receive = replay(sent, receive)
        except FederationError as exc:
            response = exc.response()
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def _leaving(self, scope: Scope, clusters: Collection[str]) -> None:
        """Before anything is sent to ``clusters`` for this request: it must carry a
        credential this cluster accepts, and reaching several clusters costs its client
        one of its fan-out budget. Raises 401 or 429."""
        remote = sorted(cluster for cluster in clusters if cluster != self.local_id)
        if not remote:
            return
        where = f"cluster {remote[0]}" if len(remote) == 1 else "other clusters"
        await require_accepted(scope, self.federation, goes_to=where)
        if len(clusters) > 1:
            client = client_address(scope, self.trusted_proxies)
            wait = await self.fanouts.acquire(client or "")
            if wait:
                raise TooManyRequests(
                    "too many requests that reach several clusters from this client; "
                    f"retry in {math.ceil(wait)}s",
                    retry_after=wait,
                    reason="fanout",
                )

    async def _revoke(self, scope: Scope, uuid: str) -> Response:
        """A token is revoked at its issuer, whoever is asked (docs/protocol.md#revocation)."""
        try:
            presented = parse_authorization(authorization_header(scope))
        except MalformedToken as exc:
            return Unauthorized(f"malformed credential: {exc}").response()
        try:
            await self._leaving(scope, [uuid_cluster(uuid)])
            answer = await route_revocation(
                uuid=uuid,
                presented=presented,
                salted_for_issuer=lambda: token_for(scope, uuid_cluster(uuid)),
                remote=self.remote,
                clusters=self.federation.config.remote_clusters,
                forget=self.federation.forget_token,
                path=scope["path"],
            )
        except FederationError as exc:
            return exc.response()
        return relay(answer, uuid_cluster(uuid), hints=False)

    def _route(self, path: str) -> tuple[str, str | None] | None:
        if not path.startswith(API_PREFIX):
            return None
        parts = path[len(API_PREFIX) :].split("/")
        if parts[0] not in self.resources or len(parts) > 2:
            return None
        return parts[0], (parts[1] or None) if len(parts) == 2 else None

    def _check_cluster(self, cluster_id: Any) -> str:
        if not is_cluster_id(cluster_id):
            raise Unprocessable("cluster_id must be 5 characters of [a-z0-9]")
        if cluster_id != self.local_id and cluster_id not in self.known:
            raise Unprocessable(f"cluster_id {cluster_id} is neither this cluster nor a remote")
        return cluster_id

    def _remote_for(self, uuid: str) -> str:
        cluster = uuid_cluster(uuid)
        if cluster not in self.known:
            # Never contacted: only RemoteClusters are, and nothing here can hold it.
            raise NotFound(f"{uuid} is on cluster {cluster}, which is not a remote of this one")
        return cluster

    async def _object(
        self, scope: Scope, receive: Receive, resource: str, uuid: str
    ) -> Response | None:
        method = scope["method"]
        if method == "GET" and resource == HINTED_RESOURCE and is_portable_data_hash(uuid):
            return await self._by_hash(scope, receive, uuid)
        if not is_uuid(uuid) or uuid_cluster(uuid) == self.local_id or method not in OBJECT_METHODS:
            return None
        cluster = self._remote_for(uuid)
        content = (await request_body(scope, receive))[0] if method in BODY_METHODS else None
        return await self._forward(scope, cluster, resource, method, content=content)

    def _create_target(self, scope: Scope, resource: str, body: bytes) -> tuple[str | None, bytes]:
        """Where a create goes (None: here), and the body to send there."""
        cluster: Any = dict(query_items(scope)).get("cluster_id")
        document = body_document(scope, body) if body else None
        if document is NOT_JSON:
            return None, body  # not JSON: the host refuses it in its own words
        if isinstance(document, dict) and "cluster_id" in document:
            # A routing parameter, not an attribute: no cluster would accept it in a body.
            document = dict(document)  # the request's one parse stays as it came
            in_body = document.pop("cluster_id")
            cluster = cluster if cluster is not None else in_body
            body = json.dumps(document).encode()
        if cluster is not None:
            self._check_cluster(cluster)
            return (None if cluster == self.local_id else cluster), body
        owner = _owner_uuid(document, resource)
        if is_uuid(owner, type_=GROUP_TYPE) and uuid_cluster(owner) != self.local_id:
            return self._remote_for(owner), body
        return None, body

    async def _list(self, scope: Scope, receive: Receive, resource: str) -> Response | None:
        query = query_items(scope)
        cluster = dict(query).get("cluster_id")
        if cluster is not None:
            if self._check_cluster(cluster) == self.local_id:
                return None
            return await self._forward(scope, cluster, resource, "GET", extra=self._mark)
        plan = plan_list(
            scope["path"],
            resource,
            query,
            local_id=self.local_id,
            known=self.known,
            proxies=self.proxies,
        )
        if plan is None:
            return None
        await self._leaving(scope, plan.clusters)

        async def fetch(
            cluster: str, params: list[tuple[str, str]], offset: int, asked: int
        ) -> Page:
            if cluster == self.local_id:
                return await self._local_page(scope, receive, params, offset, asked)
            return await self._remote_page(scope, cluster, params, offset, asked)

        response = JSONResponse(await run_list(plan, fetch, local_id=self.local_id))
        if not self.proxies and flag(dict(query), "federated"):
            self._warn_local_only(response, resource)
        return response

    def _warn_local_only(self, response: Response, resource: str) -> None:
        """``federated=true`` asked for every cluster, but no remote has ``Proxy: true``:
        only this cluster was searched. A caller that does not read the header still
        gets a correct list, of this cluster's items; the log tells the operator why."""
        response.headers[WARNING_HEADER] = LOCAL_ONLY_WARNING.format(local=self.local_id)
        log.warning(
            "federated=true list of %s served by %s alone: no remote cluster has Proxy: true",
            resource,
            self.local_id,
        )

    async def _local_page(
        self,
        scope: Scope,
        receive: Receive,
        params: list[tuple[str, str]],
        offset: int,
        asked: int,
    ) -> Page:
        captured = await call_app(
            self.app,
            scope,
            receive,
            method="GET",
            path=scope["path"],
            query_string=urlencode(params).encode(),
            query=params,
        )
        try:
            body = json.loads(captured.content)
        except (ValueError, RecursionError):
            body = None
        if captured.status_code != 200:
            # Our own refusal (bad filters, bad credentials) is the caller's answer as is.
            raise FederationError(first_error(body), status_code=captured.status_code)
        page = page_from_answer(self.local_id, body, offset=offset, requested=asked)
        if page is None:
            raise FederationError("this cluster's own list answer was not a list")
        return page

    async def _remote_page(
        self, scope: Scope, cluster: str, params: list[tuple[str, str]], offset: int, asked: int
    ) -> Page:
        query = urlencode([*params, *self._mark])
        response = await self.remote.request(
            cluster, "GET", f"{scope['path']}?{query}", token=token_for(scope, cluster), fanout=True
        )
        body = remote_json(response, cluster)
        if response.status_code != 200:
            raise part_failed(cluster, response.status_code, body)
        page = page_from_answer(cluster, body, offset=offset, requested=asked)
        if page is None:
            raise BadGateway(f"cluster {cluster} did not answer with a list")
        return page

    @property
    def _mark(self) -> QueryItems:
        """Arvados's mark on a call a fan-out makes: the peer answers it alone."""
        return [("forwarded_for", f"{self.local_id}-")]

    async def _by_hash(self, scope: Scope, receive: Receive, pdh: str) -> Response:
        """A collection by portable data hash: here if we have it, else any Proxy remote's."""
        local = await call_app(
            self.app,
            scope,
            receive,
            method="GET",
            path=scope["path"],
            query_string=scope["query_string"],
            query=query_items(scope),
        )
        if local.status_code != 404 or not self.proxies:
            return Response(local.content, local.status_code, media_type="application/json")
        await self._leaving(scope, [self.local_id, *self.proxies])
        query = [(k, v) for k, v in query_items(scope) if k not in ROUTING_PARAMS] + self._mark
        path = f"{scope['path']}?{urlencode(query)}"
        asks = [
            asyncio.create_task(self._hash_from(scope, cluster, path, pdh))
            for cluster in self.proxies
        ]
        failures: list[FederationError] = []
        try:
            for asked in asyncio.as_completed(asks):
                try:
                    found = await asked
                except FederationError as exc:
                    failures.append(exc)
                    continue
                if found is not None:
                    return JSONResponse(found)
        finally:
            for ask in asks:
                ask.cancel()
        unanswered = [exc.message for exc in failures if isinstance(exc, RemoteError)]
        if unanswered:
            raise BadGateway(
                f"{pdh} is not here, and not every cluster could be asked: " + "; ".join(unanswered)
            )
        raise NotFound(f"{pdh} not found")

    async def _hash_from(self, scope: Scope, cluster: str, path: str, pdh: str) -> Any:
        """``cluster``'s collection with that hash, checked; None when it has none."""
        response = await self.remote.request(
            cluster, "GET", path, token=token_for(scope, cluster), fanout=True
        )
        body = remote_json(response, cluster)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise part_failed(cluster, response.status_code, body)
        manifest = body.get("manifest_text") if isinstance(body, dict) else None
        # The hash of the portable form: the remote signs each locator for the caller.
        if not isinstance(manifest, str) or portable_data_hash(manifest) != without_hints(pdh):
            log.warning("cluster %s answered %s with a manifest of another hash", cluster, pdh)
            raise BadGateway(f"cluster {cluster} answered {pdh} with a manifest of another hash")
        hint_collection(body, cluster)
        return body

    async def _forward(
        self,
        scope: Scope,
        cluster: str,
        resource: str,
        method: str,
        *,
        content: bytes | None = None,
        extra: QueryItems = (),
    ) -> Response:
        await self._leaving(scope, [cluster])
        token = token_for(scope, cluster)
        if resource == HINTED_RESOURCE and method in BODY_METHODS and content:
            content = await self._copy_blocks(scope, cluster, content)
        query = [(k, v) for k, v in query_items(scope) if k not in ROUTING_PARAMS] + [*extra]
        path = scope["path"] + (f"?{urlencode(query)}" if query else "")
        headers = {"content-type": "application/json"} if content else None
        log.debug("forwarding %s %s to %s", method, scope["path"], cluster)
        response = await self.remote.request(
            cluster, method, path, token=token, content=content or None, headers=headers
        )
        return relay(response, cluster, hints=resource == HINTED_RESOURCE)

    async def _copy_blocks(self, scope: Scope, cluster: str, content: bytes) -> bytes:
        """The body of a collection create or update for ``cluster``, once the blocks
        signed here that its manifest names are there too (``keep.copying``)."""
        local = self.federation.local_blocks
        header = authorization_header(scope)
        credential = bearer_credential(header) if header is not None else None
        if local is None or credential is None:
            return content
        try:
            document = loads_client_json(content)
        except ValueError:
            return content
        inner = document.get("collection") if isinstance(document, dict) else None
        collection = inner if isinstance(inner, dict) else document
        manifest = collection.get("manifest_text") if isinstance(collection, dict) else None
        if not isinstance(manifest, str) or not manifest:
            return content
        rewritten = await copy_to_remote(
            manifest,
            cluster_id=cluster,
            credential=credential,
            token=parse_authorization(header),
            signer=self.federation.signer,
            local=local,
            remote=self.federation.remote_blocks,
        )
        if rewritten == manifest:
            return content
        collection["manifest_text"] = rewritten
        return json.dumps(document).encode()


def _owner_uuid(document: Any, resource: str) -> Any:
    if not isinstance(document, dict):
        return None
    inner = document.get(resource.removesuffix("s"))
    if set(document) == {resource.removesuffix("s")} and isinstance(inner, dict):
        document = inner
    return document.get("owner_uuid")
