"""A peer that answers a validation GET with something that is not (quite) HTTP.

The peer is a raw TCP server on loopback that writes a scripted answer, in pieces if
asked, and then hangs up or goes silent. Whatever it sends, ``RemoteClient.request``
either returns an answer that is what was sent, or raises a clean 502 (``BadGateway``)
or 504 (``GatewayTimeout``), within its RemoteTimeout: never another exception, never a
hang. Hand-picked answers first (split heads, huge heads, chunked-encoding lies, early
close, wrong Content-Length, garbage status lines), then random cuts and flips of a
good answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from clusterfed.config import parse_config
from clusterfed.errors import FederationError
from clusterfed.outbound.remote import RemoteClient, RemoteResponse
from hypothesis import given, settings
from hypothesis import strategies as st

TIMEOUT = 0.5
PATH = "/arvados/v1/users/current"
BODY = b'{"uuid": "qr1hi-tpzed-000000000000000"}'
GOOD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


@dataclass
class Script:
    pieces: Sequence[bytes]  # written one by one, with a short pause between
    then: str = "close"  # "close" or "hang" (keep the connection open, say nothing)
    pause: float = 0.0


async def hostile_call(script: Script, *, calls: int = 1) -> list[RemoteResponse | int]:
    """What ``calls`` GETs in a row came back with: an answer, or the error's status."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                for piece in script.pieces:
                    writer.write(piece)
                    await writer.drain()
                    if script.pause:
                        await asyncio.sleep(script.pause)
                if script.then == "hang":
                    await asyncio.sleep(TIMEOUT * 3)
                    break
                if script.then == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = parse_config(
        {
            "Clusters": {
                "c97qk": {
                    "RemoteClusters": {"qr1hi": {"Host": f"127.0.0.1:{port}", "Scheme": "http"}},
                    "Federation": {"RemoteTimeout": f"{TIMEOUT}s"},
                }
            }
        }
    )
    remote = RemoteClient(config)
    assert remote._gets is not None  # the GET path under test
    outcomes: list[RemoteResponse | int] = []
    try:
        for _ in range(calls):
            started = time.monotonic()
            try:
                outcomes.append(await remote.request("qr1hi", "GET", PATH, token=None))
            except FederationError as exc:
                outcomes.append(exc.status_code)
            assert time.monotonic() - started < TIMEOUT + 0.5, "the call outlived its deadline"
    finally:
        await remote.aclose()
        server.close()
        await server.wait_closed()
    return outcomes


def outcome(script: Script) -> RemoteResponse | int:
    return asyncio.run(hostile_call(script))[0]


def test_a_good_answer_split_byte_by_byte_is_read_whole() -> None:
    answer = outcome(Script([GOOD[i : i + 1] for i in range(len(GOOD))], pause=0.001))
    assert isinstance(answer, RemoteResponse)
    assert (answer.status_code, answer.content) == (200, BODY)


def test_a_chunked_answer_split_inside_its_sizes_is_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    answer = outcome(Script([chunked[:50], chunked[50:53], chunked[53:]], pause=0.01))
    assert isinstance(answer, RemoteResponse) and answer.content == b"hello"


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(Script([b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000]), id="huge-head"),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\n" + b"X-Many: b\r\n" * 20_000 + b"\r\n"]),
            id="endless-header-lines",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nshort"]),
            id="chunk-longer-than-sent",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"]),
            id="chunk-size-not-hex",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n"]),
            id="chunk-size-negative",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"]),
            id="chunk-without-its-crlf",
        ),
        pytest.param(Script([b"HTTP/1.1 200 O"]), id="close-inside-status-line"),
        pytest.param(Script([GOOD[:60]]), id="close-inside-head"),
        pytest.param(Script([]), id="close-without-a-word"),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"]),
            id="body-shorter-than-content-length",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}"]),
            id="negative-content-length",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}"]),
            id="two-content-lengths",
        ),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n{}"]),
            id="content-length-not-a-number",
        ),
        pytest.param(Script([b"HELLO WORLD\r\n\r\n"]), id="garbage-status-line"),
        pytest.param(Script([b"HTTP/1.1 abc OK\r\n\r\n"]), id="status-not-a-number"),
        pytest.param(Script([b"HTTP/1.1 99999 OK\r\n\r\n"]), id="status-out-of-range"),
        pytest.param(Script([b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"]), id="header-no-colon"),
        pytest.param(Script([b"\x00\xff\x16\x03\x01" * 100]), id="binary-junk"),
        pytest.param(Script([b"HTTP/1.1 200 OK\r\n"], then="hang"), id="head-never-ends"),
        pytest.param(Script([], then="hang"), id="silent"),
        pytest.param(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"], then="hang"),
            id="body-never-ends",
        ),
    ],
)
def test_a_hostile_answer_is_a_clean_502_or_504(script: Script) -> None:
    assert outcome(script) in (502, 504)


def test_bytes_past_the_content_length_never_answer_the_next_request() -> None:
    # A peer that smuggles a second answer after the first: the next call on the same
    # peer must get an answer to itself, not the smuggled one.
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nSMUGGLED!!"
    first, second = asyncio.run(
        hostile_call(
            Script([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" + smuggled, GOOD]),
            calls=2,
        )
    )
    assert isinstance(first, RemoteResponse) and first.content == b"{}"
    assert second in (502, 504) or (
        isinstance(second, RemoteResponse) and b"SMUGGLED" not in second.content
    )


@settings(max_examples=40, deadline=None)
@given(
    cut=st.one_of(st.just(len(GOOD)), st.integers(min_value=0, max_value=len(GOOD))),
    flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), max_size=4),
    split=st.integers(min_value=1, max_value=len(GOOD)),
)
def test_cut_and_flipped_answers_are_read_or_refused_cleanly(
    cut: int, flips: list[tuple[int, int]], split: int
) -> None:
    data = bytearray(GOOD)
    for index, value in flips:
        data[index] = value
    sent = bytes(data[:cut])
    answer = outcome(Script([sent[:split], sent[split:]]))
    if not flips and cut == len(GOOD):
        assert isinstance(answer, RemoteResponse) and answer.content == BODY
    if isinstance(answer, RemoteResponse):
        # Whatever was read is what the peer sent, never more.
        assert answer.content in sent
    else:
        assert answer in (502, 504)
