"""GETs to a peer (every validation call) through one ``aiohttp.ClientSession``.

Every cold validation makes two GETs to the token's issuer. Measured against a real
issuer on loopback (``bench/http_clients.py``; figures in docs/http-client.md), aiohttp's
session costs this process less CPU per GET than both a hand-written h11 client and a
tuned ``httpx.AsyncClient``, so these calls go through it; everything else (requests with
a body, an injected transport, proxies from the environment) stays with httpx.

What is the same as through httpx, on purpose: the request target (httpx builds the URL
and encodes the parameters, and aiohttp sends it as built), the TLS context
(``httpx.create_ssl_context``, so ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` apply), and the
exceptions raised. aiohttp's are translated here, at one boundary, into httpx's
(``ConnectError``, ``ReadError``, ``RemoteProtocolError``), so the caller's retry and
status rules see no difference. Bodies are asked for and kept as sent (``identity``); an
encoded one is reported, never decoded. The caller's deadline bounds every call, so the
session has no timeout of its own.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from yarl import URL

READ_CHUNK = 64 * 1024
# Idle connections are kept per peer; this bounds connections in flight to all peers.
MAX_CONNECTIONS = 256
USER_AGENT = "clusterfed"
TARGET_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class GetAnswer:
    status_code: int
    body: bytes
    truncated: bool  # the body passed max_bytes; what was read is in ``body``
    headers: dict[str, str]
    unreadable: bool  # encoded (gzip...) although identity was asked for


class SessionGets:
    """One aiohttp session (made on first use, inside the running loop) for all peers."""

    def __init__(self, *, default_headers: Mapping[str, str]) -> None:
        self._default_headers = {
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
            **default_headers,
        }
        self._session: aiohttp.ClientSession | None = None
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._targets: dict[Any, tuple[URL, bool]] = {}

    def _open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0),
                headers=self._default_headers,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("Content-Type",),
            )
        return session

    async def get(
        self,
        url: str,
        *,
        params: Any,
        headers: Mapping[str, str],
        insecure: bool,
        max_bytes: int,
    ) -> GetAnswer:
        target, https = self._target(url, params)
        tls = self._tls_context(insecure) if https else False
        try:
            async with self._open().get(
                target, headers=headers, ssl=tls, allow_redirects=False
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        response.close()  # the rest is not read: the connection goes
                        return _answer(response, body, truncated=True)
                return _answer(response, body, truncated=False)
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError("server disconnected without an answer") from exc
        except aiohttp.ClientOSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except aiohttp.InvalidURL as exc:
            raise httpx.InvalidURL(str(exc)) from exc
        except aiohttp.ClientError as exc:
            # Answers that are not HTTP: a garbage status line, a head too long, a body
            # shorter than its Content-Length, a lying chunked encoding.
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc

    def _target(self, url: str, params: Any) -> tuple[URL, bool]:
        """The URL as httpx builds it (parameters merged into the URL's own query, and
        httpx.InvalidURL for one it refuses), sent as built. Validation calls repeat the
        same few URLs, so the last ones built are kept: building costs more than sending."""
        key = (url, tuple(params.items()) if isinstance(params, Mapping) else params)
        try:
            return self._targets[key]
        except (KeyError, TypeError):  # TypeError: parameters that cannot be a key
            pass
        target = httpx.URL(url)
        if params:
            target = target.copy_merge_params(params)
        built = URL(str(target), encoded=True), target.scheme == "https"
        if len(self._targets) >= TARGET_CACHE_SIZE:
            self._targets.clear()
        with contextlib.suppress(TypeError):
            self._targets[key] = built
        return built

    def _tls_context(self, insecure: bool) -> ssl.SSLContext:
        context = self._tls.get(insecure)
        if context is None:
            context = self._tls[insecure] = httpx.create_ssl_context(verify=not insecure)
        return context

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _answer(response: aiohttp.ClientResponse, body: bytearray, *, truncated: bool) -> GetAnswer:
    headers: dict[str, str] = {}
    for raw_name, value in response.headers.items():
        name = raw_name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value  # as httpx
    encoding = headers.get("content-encoding", "identity").strip().lower()
    return GetAnswer(
        status_code=response.status,
        body=bytes(body),
        truncated=truncated,
        headers=headers,
        unreadable=encoding not in ("", "identity"),
    )
