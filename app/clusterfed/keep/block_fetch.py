"""Block GETs and HEADs to another cluster's block servers, streamed, without httpx's layers.

A block is up to 64 MiB, and through httpx each 64 KiB of it passes through the
response's iterators, the connection pool and anyio's stream wrappers: about half the
CPU the home cluster spent proxying a block went there. Here the body is read in chunks
of up to ``READ_CHUNK`` straight from the event loop's stream and framed by h11, over
kept-alive HTTP/1.1 connections per block server.

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
from urllib.parse import urlsplit

import h11
import httpx

READ_CHUNK = 1024 * 1024
STREAM_LIMIT = 512 * 1024  # the stream buffers up to twice this before it stops reading
MAX_IDLE_PER_SERVER = 8
USER_AGENT = b"clusterfed-keep"

Server = tuple[str, str, int, bool]  # scheme, host, port, TLS verification off


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


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
        while True:
            event = await self._pool.next_event(connection)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return

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
            try:
                connection.writer.write(data)
                await connection.writer.drain()
            except OSError as exc:
                raise httpx.WriteError(str(exc)) from exc
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
            try:
                async with asyncio.timeout(self.timeout):
                    data = await connection.reader.read(READ_CHUNK)
            except TimeoutError:
                raise httpx.ReadTimeout("the block server fell silent") from None
            except OSError as exc:
                raise httpx.ReadError(str(exc)) from exc
            try:
                connection.h11.receive_data(data)  # b"": the peer closed
            except RuntimeError as exc:  # data after the peer closed
                raise httpx.RemoteProtocolError(str(exc)) from exc

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
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=STREAM_LIMIT
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("the block server did not accept a connection") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(reader, writer)

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
