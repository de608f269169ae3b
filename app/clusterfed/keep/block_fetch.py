"""Block GETs and HEADs to another cluster's block servers, streamed, without httpx's layers.

A block is up to 64 MiB, and through httpx each 64 KiB of it passes through the
response's iterators, the connection pool and anyio's stream wrappers: about half the
CPU the home cluster spent proxying a block went there, and a stream reader and h11 would
copy each byte four more times. Here the answer's head is parsed by h11, and the body of
a large block (``DIRECT_BODY`` bytes or more, with a ``Content-Length``) is handed on as
the socket delivered it, counted against its length; a small answer is framed by h11 and
its connection kept alive for the next request to that block server.

What the caller sees is what httpx would give it, on purpose: ``status_code``,
``headers``, ``aiter_raw()`` and ``aclose()`` on the answer, and httpx's exceptions
(``ConnectError``, ``ConnectTimeout``, ``ReadError``, ``ReadTimeout``,
``RemoteProtocolError``), so the reader's status rules do not depend on which client
fetched the block. Every wait (connecting, each read) is bounded by ``timeout``: silence
past it is a timeout, however long the whole block takes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx

HIGH_WATER = 4 * 1024 * 1024  # bytes received but not yet taken before reading pauses
LOW_WATER = 1024 * 1024
DIRECT_BODY = 1024 * 1024
MAX_IDLE_PER_SERVER = 8
USER_AGENT = b"clusterfed-keep"

Server = tuple[str, str, int, bool]  # scheme, host, port, TLS verification off


class _Pipe(asyncio.Protocol):
    """What the socket delivers, queued as delivered; reading pauses past HIGH_WATER."""

    def __init__(self) -> None:
        self.transport: Any = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        # Any: uvloop's transports are not asyncio.Transport instances, and need not be.
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    async def read(self) -> bytes:
        """The next bytes received; b"" once the peer has closed."""
        while not self._chunks:
            if self._closed:
                if self._error is not None:
                    raise httpx.ReadError(str(self._error))
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return data


class _Connection:
    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        return self.pipe.open

    def write(self, data: bytes) -> None:
        assert self.pipe.transport is not None
        self.pipe.transport.write(data)

    def close(self) -> None:
        if self.pipe.transport is not None:
            self.pipe.transport.close()


class StreamedAnswer:
    """One answer whose body is read as the caller asks for it."""

    def __init__(
        self,
        pool: BlockConnections,
        server: Server,
        connection: _Connection,
        response: h11.Response,
    ) -> None:
        self._pool = pool
        self._server = server
        self._connection: _Connection | None = connection
        self.status_code = response.status_code
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers
        }
        self._complete = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        connection = self._connection
        assert connection is not None, "the answer was closed"
        taken = 0
        while True:  # what h11 already holds, and every answer it frames whole
            event = connection.h11.next_event()
            if event is h11.NEED_DATA:
                length = self._direct_length()
                if length is not None:
                    break
                event = await self._pool.next_event(connection)
            if isinstance(event, h11.Data):
                taken += len(event.data)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("the block server closed the connection")
        # The rest of a large body, as delivered; h11 no longer knows where the connection
        # stands, so it is not reused.
        remaining = length - taken
        while remaining > 0:
            data = await self._pool.read(connection)
            if not data:
                raise httpx.RemoteProtocolError("the block server closed before the whole body")
            if len(data) > remaining:
                raise httpx.RemoteProtocolError("the block server sent more than its length")
            remaining -= len(data)
            yield data

    def _direct_length(self) -> int | None:
        declared = self.headers.get("content-length", "")
        if "transfer-encoding" in self.headers or not declared.isdigit():
            return None
        length = int(declared)
        return length if length >= DIRECT_BODY else None

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete:  # release() keeps it only if h11 says it may be reused
            self._pool.release(self._server, connection)
        else:
            connection.close()  # a body left unread cannot share the connection


class BlockConnections:
    """Kept-alive connections per block server."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[Server, deque[_Connection]] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], insecure: bool
    ) -> StreamedAnswer:
        """Sends the request and reads the answer's head; the body is the caller's to read."""
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        server: Server = (scheme, host, port, insecure)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._idle_connection(server) or await self._connect(server)
        try:
            request = h11.Request(
                method=method,
                target=target,
                headers=[
                    (b"Host", parts.netloc.encode("ascii")),
                    (b"Accept-Encoding", b"identity"),
                    (b"User-Agent", USER_AGENT),
                    *((name.encode(), value.encode()) for name, value in headers.items()),
                ],
            )
            data = connection.h11.send(request) + (connection.h11.send(h11.EndOfMessage()) or b"")
            if not connection.usable():
                raise httpx.WriteError("the connection to the block server is closed")
            connection.write(data)
            while True:
                event = await self.next_event(connection)
                if isinstance(event, h11.Response):
                    return StreamedAnswer(self, server, connection, event)
        except BaseException:
            connection.close()
            raise

    async def next_event(self, connection: _Connection) -> object:
        while True:
            try:
                event = connection.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError("the block server closed the connection")
                if isinstance(event, h11.InformationalResponse):
                    continue
                return event
            data = await self.read(connection)
            try:
                connection.h11.receive_data(data)  # b"": the peer closed
            except RuntimeError as exc:  # data after the peer closed
                raise httpx.RemoteProtocolError(str(exc)) from exc

    async def read(self, connection: _Connection) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await connection.pipe.read()
        except TimeoutError:
            raise httpx.ReadTimeout("the block server fell silent") from None

    def release(self, server: Server, connection: _Connection) -> None:
        idle = self._idle.setdefault(server, deque())
        if (
            connection.h11.our_state is h11.DONE
            and connection.h11.their_state is h11.DONE
            and len(idle) < MAX_IDLE_PER_SERVER
        ):
            connection.h11.start_next_cycle()
            idle.append(connection)
        else:
            connection.close()

    def _idle_connection(self, server: Server) -> _Connection | None:
        idle = self._idle.get(server)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self, server: Server) -> _Connection:
        scheme, host, port, insecure = server
        tls = self._tls_context(insecure) if scheme == "https" else None
        try:
            async with asyncio.timeout(self.timeout):
                _, pipe = await asyncio.get_running_loop().create_connection(
                    _Pipe, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("the block server did not accept a connection") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(pipe)

    def _tls_context(self, insecure: bool) -> ssl.SSLContext:
        context = self._tls.get(insecure)
        if context is None:
            context = self._tls[insecure] = httpx.create_ssl_context(verify=not insecure)
        return context

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
