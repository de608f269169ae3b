"""The hand-written GET client (h11 on asyncio streams) clusterfed used for validation
calls until aiohttp measured cheaper; kept here only as ``bench.http_clients``'s
reference, so the comparison can be run again. Not part of the package.

GETs to a peer over kept-alive HTTP/1.1 connections, without httpx's layers.

Every cold validation makes two GETs to the token's issuer, and through httpx each cost
the worker about 1 ms of CPU, most of it not HTTP: building and merging the client's
request, the streamed response's iterator and close machinery, and the pool's check of
every idle connection with a ``select`` call before each request and after each answer.
Here a request is one write and its answer parsed by h11 as it arrives; an idle
connection the peer has closed is known without a system call, because the event loop
has already seen its end of file.

What is the same as through httpx, on purpose: the request target (httpx builds the URL
and encodes the parameters), the TLS context (``httpx.create_ssl_context``, so
``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` apply), and the exceptions raised (httpx's:
``ConnectError``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``), so the
caller's retry and status rules see no difference. Not handled here, and so left to
httpx by the caller: requests with a body, an injected transport, proxies from the
environment.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11
import httpx

READ_CHUNK = 64 * 1024
# Idle connections kept per peer; more in flight at once are closed after their answer.
MAX_IDLE_PER_PEER = 16
USER_AGENT = "clusterfed"


@dataclass(frozen=True, slots=True)
class PlainAnswer:
    status_code: int
    body: bytes
    truncated: bool  # the body passed max_bytes; what was read is in ``body``
    headers: dict[str, str]
    unreadable: bool  # encoded (gzip...) although identity was asked for


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        """Still open at both ends: the loop has seen no EOF and no error on it."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class PlainGets:
    """Kept-alive connections per peer (scheme, host, port, TLS verification)."""

    def __init__(self, *, default_headers: Mapping[str, str]) -> None:
        self._default_headers = [(k.encode(), v.encode()) for k, v in default_headers.items()]
        self._idle: dict[tuple[str, str, int, bool], deque[_Connection]] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}

    async def get(
        self,
        url: str,
        *,
        params: Any,
        headers: Mapping[str, str],
        insecure: bool,
        max_bytes: int,
    ) -> PlainAnswer:
        target = httpx.URL(url)
        if params:  # merged into the URL's own query, as httpx's client does
            target = target.copy_merge_params(params)
        scheme, host = target.scheme, target.host
        port = target.port or (443 if scheme == "https" else 80)
        peer = (scheme, host, port, insecure)
        connection = self._idle_connection(peer) or await self._connect(peer)
        try:
            answer, reusable = await self._exchange(
                connection, target, headers, max_bytes=max_bytes
            )
        except BaseException:
            connection.close()
            raise
        idle = self._idle.setdefault(peer, deque())
        if reusable and len(idle) < MAX_IDLE_PER_PEER:
            connection.h11.start_next_cycle()
            idle.append(connection)
        else:
            connection.close()
        return answer

    def _idle_connection(self, peer: tuple[str, str, int, bool]) -> _Connection | None:
        idle = self._idle.get(peer)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely closed
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self, peer: tuple[str, str, int, bool]) -> _Connection:
        scheme, host, port, insecure = peer
        tls = self._tls_context(insecure) if scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls else None, limit=READ_CHUNK
            )
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(reader, writer)

    def _tls_context(self, insecure: bool) -> ssl.SSLContext:
        context = self._tls.get(insecure)
        if context is None:
            context = self._tls[insecure] = httpx.create_ssl_context(verify=not insecure)
        return context

    async def _exchange(
        self,
        connection: _Connection,
        target: httpx.URL,
        headers: Mapping[str, str],
        *,
        max_bytes: int,
    ) -> tuple[PlainAnswer, bool]:
        host = target.netloc.decode("ascii")
        request_headers = [
            (b"Host", host.encode("ascii")),
            (b"Accept", b"*/*"),
            # Asked for plainly: a body is never decoded here.
            (b"Accept-Encoding", b"identity"),
            (b"User-Agent", USER_AGENT.encode()),
            *self._default_headers,
            *((name.encode(), value.encode()) for name, value in headers.items()),
        ]
        request = h11.Request(method="GET", target=target.raw_path, headers=request_headers)
        data = connection.h11.send(request) + (connection.h11.send(h11.EndOfMessage()) or b"")
        try:
            connection.writer.write(data)
            await connection.writer.drain()
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = await self._next_event(connection)
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body.extend(event.data)
                if len(body) > max_bytes:
                    assert response is not None
                    return _answer(response, body, truncated=True), False
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                reusable = connection.h11.our_state is h11.DONE and (
                    connection.h11.their_state is h11.DONE
                )
                return _answer(response, body, truncated=False), reusable

    async def _next_event(self, connection: _Connection) -> object:
        while True:
            try:
                event = connection.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError("server disconnected without an answer")
                if isinstance(event, h11.InformationalResponse):
                    continue  # 100 Continue and friends: the answer is still to come
                return event
            try:
                data = await connection.reader.read(READ_CHUNK)
            except OSError as exc:
                raise httpx.ReadError(str(exc)) from exc
            connection.h11.receive_data(data)  # b"" tells h11 the peer closed

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _answer(response: h11.Response, body: bytearray, *, truncated: bool) -> PlainAnswer:
    headers: dict[str, str] = {}
    for raw_name, raw_value in response.headers:  # h11 gives names lowercased
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value  # as httpx
    encoding = headers.get("content-encoding", "identity").strip().lower()
    return PlainAnswer(
        status_code=response.status_code,
        body=bytes(body),
        truncated=truncated,
        headers=headers,
        unreadable=encoding not in ("", "identity"),
    )
