"""``outbound.aiohttp_gets``: the validation calls' GETs through one aiohttp session. A
peer here is a raw asyncio server on loopback that answers as scripted, to show the edges:
kept alive and reused, closed by the peer while idle, too long, encoded against our wish,
cut off mid-answer, and what goes on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from clusterfed.config import parse_config
from clusterfed.outbound.aiohttp_gets import SessionGets
from clusterfed.outbound.remote import RemoteClient

Reply = Callable[[bytes], bytes | None]  # request head -> raw answer (None: hang up)
GZIP = "Content-Encoding: gzip\r\n"


class Peer:
    def __init__(self, reply: Reply, *, close_after_answer: bool = False) -> None:
        self.reply = reply
        self.close_after_answer = close_after_answer
        self.heads: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                answer = self.reply(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[[Peer], Awaitable[Peer]]


def json_answer(body: bytes, *, extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(peer: Peer) -> Peer:
        server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        servers.append(server)
        peer.port = server.sockets[0].getsockname()[1]
        return peer

    yield start
    await asyncio.sleep(0.05)  # the peers' handlers see our connections close, and end
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_connection_is_kept_alive_and_reused(serve: Serve) -> None:
    peer = await serve(Peer(lambda _: json_answer(b'{"ok": true}')))
    gets = SessionGets(default_headers={"Via": "HTTP/1.1 arvados-controller"})
    url = f"http://127.0.0.1:{peer.port}/arvados/v1/users/current?a=1"
    for _ in range(5):
        answer = await gets.get(
            url, params={"remote": "c97qk"}, headers={}, insecure=False, max_bytes=1000
        )
        assert (answer.status_code, answer.body, answer.truncated) == (200, b'{"ok": true}', False)
    assert peer.connections == 1 and len(peer.heads) == 5
    head = peer.heads[0].decode()
    # The query merged as httpx's client merges it; identity asked for; the marks sent.
    assert head.startswith("GET /arvados/v1/users/current?a=1&remote=c97qk HTTP/1.1\r\n")
    assert "accept-encoding: identity" in head.lower()
    assert "Via: HTTP/1.1 arvados-controller\r\n" in head
    await gets.aclose()


async def test_a_connection_the_peer_closed_while_idle_is_replaced(serve: Serve) -> None:
    peer = await serve(Peer(lambda _: json_answer(b"{}"), close_after_answer=True))
    gets = SessionGets(default_headers={})
    url = f"http://127.0.0.1:{peer.port}/x"
    for _ in range(3):
        answer = await gets.get(url, params=None, headers={}, insecure=False, max_bytes=100)
        assert answer.status_code == 200
        await asyncio.sleep(0.05)  # the peer's FIN reaches the loop
    assert peer.connections == 3  # each closed one noticed without a failed request
    await gets.aclose()


async def test_a_long_answer_is_cut_and_its_connection_not_reused(serve: Serve) -> None:
    # Long enough not to be all in the buffers when the cap is passed: the unread rest
    # makes the connection unusable. (A long answer read whole may keep its connection.)
    peer = await serve(Peer(lambda _: json_answer(b"x" * 4_000_000)))
    gets = SessionGets(default_headers={})
    url = f"http://127.0.0.1:{peer.port}/x"
    answer = await gets.get(url, params=None, headers={}, insecure=False, max_bytes=1000)
    assert answer.truncated and len(answer.body) > 1000
    assert len(answer.body) < 4_000_000
    await gets.get(url, params=None, headers={}, insecure=False, max_bytes=10_000)
    assert peer.connections == 2
    await gets.aclose()


async def test_an_encoded_answer_is_unreadable_not_misread(serve: Serve) -> None:
    peer = await serve(
        Peer(lambda _: json_answer(b"\x1f\x8b...", extra="Content-Encoding: gzip\r\n"))
    )
    gets = SessionGets(default_headers={})
    answer = await gets.get(
        f"http://127.0.0.1:{peer.port}/x", params=None, headers={}, insecure=False, max_bytes=100
    )
    assert answer.unreadable and answer.headers["content-encoding"] == "gzip"
    await gets.aclose()


async def test_a_peer_that_hangs_up_or_is_not_there_raises_httpx_errors(serve: Serve) -> None:
    peer = await serve(Peer(lambda _: None))
    gets = SessionGets(default_headers={})
    with pytest.raises(httpx.RemoteProtocolError):
        await gets.get(
            f"http://127.0.0.1:{peer.port}/x", params=None, headers={}, insecure=False, max_bytes=1
        )
    cut_off = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"
    cut = await serve(Peer(lambda _: cut_off, close_after_answer=True))
    with pytest.raises(httpx.RemoteProtocolError):
        await gets.get(
            f"http://127.0.0.1:{cut.port}/x", params=None, headers={}, insecure=False, max_bytes=1
        )
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await gets.get(
            f"http://127.0.0.1:{free}/x", params=None, headers={}, insecure=False, max_bytes=1
        )
    await gets.aclose()


async def test_gets_go_through_httpx_when_the_environment_names_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(
        {"Clusters": {"c97qk": {"RemoteClusters": {"qr1hi": {"Host": "127.0.0.1:9"}}}}}
    )
    assert RemoteClient(config)._gets is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert RemoteClient(config)._gets is None  # httpx honours the proxy; aiohttp here would not
