"""Calls to remote clusters: one pooled ``aiohttp`` session for plain GETs (every
validation call, ``aiohttp_gets.py``) and one pooled ``httpx.AsyncClient`` for the rest,
per federation.

Every call is bounded by ``RemoteTimeout`` as a whole (retries included), follows no
redirects, reads at most ``MaxResponseBytes``, and goes only to clusters listed in
``RemoteClusters``. Transport failures are translated here, once, into
``BadGateway`` (refused, reset, TLS) or ``GatewayTimeout``; a request that cannot even be
built (a caller's query that, re-encoded, passes httpx's URL limit) into a 414 or 422 that
blames the request, not the remote. Any HTTP answer comes back as a
:class:`RemoteResponse` for the caller to judge. Only transient failures are
retried (connection reset, 502, 503, 429), with jittered exponential backoff, and never
a call that is one part of a fan-out (``fanout=True``): a fan-out already multiplies what
one request costs the federation, and its part answering 5xx counts toward that remote's
circuit breaker as a failure, so a failing peer stops being asked.

A GET with 1000 bytes of parameters or more goes as Arvados's client sends it
(``sdk/go/arvados/client.go``): ``POST`` with ``X-Http-Method-Override: GET`` and the
parameters as a form body, so a fan-out naming many UUIDs passes the URL limits of the
proxies in front of a peer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from urllib.request import getproxies

import httpx

from clusterfed.config import ClusterConfig
from clusterfed.credentials import is_url_credential, without_url_credentials
from clusterfed.errors import (
    BadGateway,
    FederationError,
    GatewayTimeout,
    Unauthorized,
    Unprocessable,
)
from clusterfed.tokens import Token

from .aiohttp_gets import SessionGets
from .circuit import CircuitBreaker
from .statuses import TRANSIENT

log = logging.getLogger("clusterfed.remote")

# A persistently failing remote must cost a bounded number of calls, not RemoteTimeout.
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 1.0
# Connection reset and friends: the peer was there and dropped us; worth another try.
TRANSIENT_ERRORS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
LONG_QUERY_BYTES = 1000
HOP_HEADER = "x-clusterfed-via"
# Arvados controllers send this on every call to a peer and forward nothing that carries
# it (lib/controller/federation/conn.go); so do we, so that Arvados peers stop too.
VIA = "HTTP/1.1 arvados-controller"
URI_TOO_LONG = 414
MAX_URL_LENGTH = 65536  # httpx's own limit (httpx._urlparse), named for our message


@dataclass(frozen=True, slots=True)
class RemoteResponse:
    status_code: int
    content: bytes
    truncated: bool
    headers: Mapping[str, str]
    unreadable: bool = False  # the body could not be decoded (a broken gzip stream, say)

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None if it is anything else (HTML, garbage...)."""
        if self.truncated or self.unreadable:
            return None
        try:
            body = json.loads(self.content)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return None
        return body if isinstance(body, dict) else None


class RemoteClient:
    def __init__(
        self, config: ClusterConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.local_id = config.cluster_id
        self.clusters = dict(config.remote_clusters)
        self.timeout = config.federation.remote_timeout
        self.max_bytes = config.federation.max_response_bytes
        self.circuits = {cluster_id: CircuitBreaker() for cluster_id in self.clusters}
        self._transport = transport
        self._clients: dict[bool, httpx.AsyncClient] = {}
        # Plain GETs (every validation call) go through aiohttp, which costs less CPU per
        # call (aiohttp_gets.py); not when a transport is injected or the environment
        # names a proxy, which httpx honours.
        self._gets: SessionGets | None = None
        if transport is None and not getproxies():
            self._gets = SessionGets(default_headers={HOP_HEADER: self.local_id, "Via": VIA})

    def _client(self, insecure: bool) -> httpx.AsyncClient:
        # Created on first use, inside the running loop; one per TLS-verification mode.
        client = self._clients.get(insecure)
        if client is None:
            client = httpx.AsyncClient(
                verify=not insecure,
                follow_redirects=False,
                limits=POOL_LIMITS,
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                headers={HOP_HEADER: self.local_id, "Via": VIA},
            )
            self._clients[insecure] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
        if self._gets is not None:
            await self._gets.aclose()

    def refuses_now(self, cluster_id: str) -> bool:
        """Would a request to ``cluster_id`` be refused now, unsent (its circuit open)?"""
        circuit = self.circuits.get(cluster_id)
        return circuit is not None and circuit.refuses()

    async def request(
        self,
        cluster_id: str,
        method: str,
        path: str,
        *,
        token: Token | None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        fanout: bool = False,
    ) -> RemoteResponse:
        remote = self.clusters.get(cluster_id)
        if remote is None:
            raise Unauthorized(f"cluster {cluster_id} is not in RemoteClusters")
        # Whatever a caller's query held, no credential leaves in a URL (nor in the form
        # body a long GET becomes): the token travels in the Authorization header only.
        path = without_url_credentials(path)
        if params is not None:
            params = {k: v for k, v in params.items() if not is_url_credential(str(k))}
        circuit = self.circuits[cluster_id]
        trial = circuit.allow()
        if trial is None:
            raise BadGateway(f"remote cluster {cluster_id} is unreachable (circuit open)")
        request_headers = dict(headers or {})
        if method == "GET" and content is None and json_body is None:
            long_get = _as_post(path, params)
            if long_get is not None:
                path, content = long_get
                method, params = "POST", None
                request_headers["X-Http-Method-Override"] = "GET"
                request_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token is not None:
            request_headers["Authorization"] = f"Bearer {token.encode()}"
        url = f"{remote.base_url}{path}"
        deadline = time.monotonic() + self.timeout
        attempt = 0
        max_attempts = 1 if fanout else MAX_ATTEMPTS
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    attempt += 1
                    try:
                        response = await self._send(
                            remote.insecure,
                            method,
                            url,
                            params,
                            json_body,
                            content,
                            request_headers,
                        )
                    except TRANSIENT_ERRORS as exc:
                        if not await _backoff(attempt, deadline, max_attempts):
                            raise BadGateway(
                                f"remote cluster {cluster_id}: {_describe(exc)}"
                            ) from exc
                        continue
                    if response.status_code in TRANSIENT and await _backoff(
                        attempt, deadline, max_attempts
                    ):
                        continue
                    if fanout and response.status_code >= 500:
                        circuit.record_failure(f"answered {response.status_code}")
                    else:
                        circuit.record_success()
                    return response
        except TimeoutError:
            circuit.record_failure("timeout")
            raise GatewayTimeout(
                f"remote cluster {cluster_id} did not answer within {self.timeout:g}s"
            ) from None
        except BadGateway as exc:
            circuit.record_failure(exc.message)
            raise
        except httpx.TimeoutException:
            circuit.record_failure("timeout")
            raise GatewayTimeout(f"remote cluster {cluster_id} did not answer in time") from None
        except httpx.InvalidURL as exc:
            # Not an httpx.HTTPError: nothing was sent, the remote is not to blame.
            raise _not_forwardable(cluster_id, exc) from None
        except httpx.HTTPError as exc:
            # Transport failures, and answers httpx cannot read (a broken gzip body, say):
            # either way no usable answer came back.
            reason = _describe(exc)
            circuit.record_failure(reason)
            raise BadGateway(f"remote cluster {cluster_id}: {reason}") from exc
        finally:
            if trial:
                circuit.end_trial()  # a no-op when a verdict was recorded above

    async def _send(
        self,
        insecure: bool,
        method: str,
        url: str,
        params: Any,
        json_body: Any,
        content: bytes | None,
        headers: dict[str, str],
    ) -> RemoteResponse:
        if self._gets is not None and method == "GET" and content is None and json_body is None:
            answer = await self._gets.get(
                url, params=params, headers=headers, insecure=insecure, max_bytes=self.max_bytes
            )
            return RemoteResponse(
                answer.status_code, answer.body, answer.truncated, answer.headers, answer.unreadable
            )
        client = self._client(insecure)
        request = client.build_request(
            method, url, params=params, json=json_body, content=content, headers=headers
        )
        response = await client.send(request, stream=True)
        try:
            body = bytearray()
            truncated = unreadable = False
            try:
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        truncated = True
                        break
            except httpx.DecodingError:
                # The remote answered, so it is reachable; what it said is unusable, which
                # the caller judges like any other invalid answer.
                unreadable = True
            return RemoteResponse(
                response.status_code, bytes(body), truncated, dict(response.headers), unreadable
            )
        finally:
            await response.aclose()


def _as_post(path: str, params: Mapping[str, Any] | None) -> tuple[str, bytes] | None:
    """(path, form body) for a GET whose parameters are too long for a URL; else None."""
    base, _, query = path.partition("?")
    encoded = "&".join(part for part in (query, urlencode(params or {})) if part)
    if len(encoded) < LONG_QUERY_BYTES:
        return None
    return base, encoded.encode()


async def _backoff(attempt: int, deadline: float, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Sleep before another attempt; False when attempts or time have run out."""
    if attempt >= max_attempts:
        return False
    delay = random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
    if time.monotonic() + delay >= deadline:
        return False
    await asyncio.sleep(delay)
    return True


def _not_forwardable(cluster_id: str, exc: httpx.InvalidURL) -> FederationError:
    # httpx's message only, never the URL: its query may hold anything the caller sent.
    if "too long" in str(exc):
        return FederationError(
            f"this request must go to cluster {cluster_id}, and its parameters are too long "
            f"to forward there (the URL would pass {MAX_URL_LENGTH} characters); send fewer "
            "or shorter parameters, e.g. split a long 'uuid in' filter",
            status_code=URI_TOO_LONG,
        )
    return Unprocessable(
        f"this request must go to cluster {cluster_id}, and its URL cannot be built "
        "to forward it there"
    )


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, TRANSIENT_ERRORS):
        return "connection reset"
    if isinstance(exc, httpx.DecodingError):
        return "unreadable answer"
    return type(exc).__name__
