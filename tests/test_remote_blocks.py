"""The remote block reader (clusterfed.keep.remote_blocks) as a host's block server uses it.

``home`` is a minimal block server built on the library alone (RemoteBlocks and
RemoteBlockResponse, as a host mounts them); ``c97qk`` is a stub peer whose behaviour
each test chooses: honest, lying, silent, or answering garbage. Every assertion is on
what a client receives over a real connection and on what the peer was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from clusterfed.config import parse_config
from clusterfed.errors import FederationError
from clusterfed.keep import remote_blocks
from clusterfed.keep.block_response import RemoteBlockResponse
from clusterfed.keep.remote_blocks import SERVICES_PATH, RemoteBlocks
from clusterfed.outbound.circuit import FAILURE_THRESHOLD
from clusterfed.outbound.remote import RemoteClient
from clusterfed.server.testing import ServerThread, cluster_config, free_port, remote_entry
from clusterfed.tokens import parse_token, salt

from tests.support.keep_stub import Peer

# SPEC 1's salting vector: this secret salted for c97qk.
SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
TOKEN = f"v2/qr1hi-gj3su-000000000000001/{SECRET}"
SALTED = "v2/qr1hi-gj3su-000000000000001/6c4c81062473350d6b113b60c12b300c7fb8a8cb"
SIG = "89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff"
OTHER = f"v2/qr1hi-gj3su-000000000000002/{SECRET[::-1]}"
OTHER_SALTED = salt(parse_token(OTHER), "c97qk").encode()
TIMEOUT = 1.0
BLOCK = os.urandom(3 * 1024 * 1024 + 17)
MD5 = hashlib.md5(BLOCK).hexdigest()


def remote_locator(data: bytes = BLOCK, cluster: str = "c97qk") -> str:
    return f"{hashlib.md5(data).hexdigest()}+{len(data)}+R{cluster}-{SIG}"


class Home:
    """A block server built on the library: GET/HEAD /<+R locator> read from c97qk."""

    def __init__(self, peer_port: int, *, remotes: dict[str, Any] | None = None) -> None:
        body = cluster_config(
            "qr1hi",
            "sqlite+aiosqlite:///unused.db",
            remotes=remotes or {"c97qk": remote_entry(peer_port)},
            federation={"RemoteTimeout": f"{TIMEOUT}s"},
        )
        self.config = parse_config(body, source="<test>")
        self.blocks: RemoteBlocks | None = None
        self.remote: RemoteClient | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self.blocks is not None:
                await self.blocks.aclose()
                await self.remote.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self.blocks is None:
            self.remote = RemoteClient(self.config)
            self.blocks = RemoteBlocks(self.config, self.remote)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        token = parse_token(auth.split(" ", 1)[1]) if auth else None
        try:
            block = await self.blocks.open(scope["path"][1:], token, method=scope["method"])
        except FederationError as exc:
            await exc.response()(scope, receive, send)
            return
        await RemoteBlockResponse(block)(scope, receive, send)


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    peer = Peer(port=free_port())
    with ServerThread(peer.app(), port=peer.port):
        yield peer


@pytest.fixture(scope="module")
def home(peer: Peer) -> Iterator[ServerThread]:
    with ServerThread(Home(peer.port)) as server:
        yield server


@pytest.fixture(autouse=True)
def reset(peer: Peer) -> None:
    peer.mode = "honest"
    peer.services = None
    peer.blocks = {MD5: BLOCK}
    peer.seen.clear()
    peer.sent = peer.completed = 0
    peer.refused = set()
    peer.list_delay = 0.0


def read(home: ServerThread, locator: str, *, token: str | None = TOKEN) -> tuple[int, bytes, str]:
    """(status, bytes received, how the body ended: complete or the error that ended it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    received = bytearray()
    url = f"{home.base_url}/{locator}"
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as response:
        try:
            for chunk in response.iter_raw():
                received.extend(chunk)
        except httpx.HTTPError as exc:
            return response.status_code, bytes(received), type(exc).__name__
    return response.status_code, bytes(received), "complete"


@pytest.mark.parametrize("backlog", [1, 100_000, 64 * 1024 * 1024])
async def test_the_md5_thread_keeps_up_or_holds_the_reader_back(
    backlog: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # backlog 1: the reader waits for every chunk to be hashed; a lost wake-up would hang.
    monkeypatch.setattr(remote_blocks, "HASH_BACKLOG", backlog)
    hasher = remote_blocks._Hasher()
    most_behind = 0
    async with asyncio.timeout(10):
        for start in range(0, len(BLOCK), 65536):
            await hasher.feed(BLOCK[start : start + 65536])
            most_behind = max(most_behind, hasher._fed - hasher._hashed)
        assert await hasher.hexdigest() == MD5
    assert most_behind <= backlog + 65536
    hasher.stop()


def test_a_block_is_read_from_its_cluster_with_the_salted_credential(
    home: ServerThread, peer: Peer
) -> None:
    status, body, ended = read(home, remote_locator())
    assert (status, ended) == (200, "complete")
    assert body == BLOCK
    # The peer was asked for its own +A form, with the credential salted for it.
    assert peer.seen[-1] == ("GET", f"{MD5}+{len(BLOCK)}+A{SIG}", f"Bearer {SALTED}")
    assert all(auth == f"Bearer {SALTED}" for _, _, auth in peer.seen)
    # The list of block servers is remembered: a second read asks only for the block.
    asked = len(peer.seen)
    assert read(home, remote_locator())[0] == 200
    assert len(peer.seen) == asked + 1


def test_each_first_lookup_of_the_block_servers_is_made_with_its_callers_credential(
    home: ServerThread, peer: Peer
) -> None:
    assert read(home, remote_locator())[0] == 200  # the Home's reader is made
    home.server.config.app.blocks.forget("c97qk")
    peer.seen.clear()
    # c97qk refuses TOKEN's salted copy the list, and both callers ask at once.
    peer.refused = {f"Bearer {SALTED}"}
    peer.list_delay = 0.3
    with ThreadPoolExecutor(2) as pool:
        refused, accepted = pool.map(
            lambda token: read(home, remote_locator(), token=token)[:2], [TOKEN, OTHER]
        )
    assert refused[0] == 403  # TOKEN's own refusal
    assert accepted == (200, BLOCK)  # not TOKEN's refusal, nor a list asked for as TOKEN
    lookups = sorted(auth or "" for _, path, auth in peer.seen if path == SERVICES_PATH)
    assert lookups == sorted([f"Bearer {SALTED}", f"Bearer {OTHER_SALTED}"])
    # The list itself, public, serves every caller once had: no lookup for TOKEN now.
    peer.seen.clear()
    assert read(home, remote_locator())[0] == 200
    assert [path for _, path, _ in peer.seen] == [f"{MD5}+{len(BLOCK)}+A{SIG}"]


def test_head_answers_the_size_without_the_bytes(home: ServerThread, peer: Peer) -> None:
    response = httpx.head(
        f"{home.base_url}/{remote_locator()}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(BLOCK))
    assert peer.seen[-1][0] == "HEAD"


@pytest.mark.parametrize("data", [BLOCK, b"foo"], ids=["3MiB", "3 bytes"])
def test_wrong_bytes_never_make_a_complete_answer(
    home: ServerThread, peer: Peer, data: bytes
) -> None:
    peer.blocks = {hashlib.md5(data).hexdigest(): data}
    peer.mode = "wrong-bytes"
    _, body, ended = read(home, remote_locator(data))
    assert ended != "complete"
    assert len(body) < len(data)  # the last bytes were held back
    assert body == data[: len(body)]
    # The connection was closed, not left to hang: the next read is fine.
    peer.mode = "honest"
    assert read(home, remote_locator(data))[1:] == (data, "complete")


def test_a_remote_that_breaks_off_gives_no_complete_answer(home: ServerThread, peer: Peer) -> None:
    peer.mode = "short"
    _, body, ended = read(home, remote_locator())
    assert ended != "complete"
    assert len(body) < len(BLOCK)


def test_a_remote_that_announces_another_size_is_a_502(home: ServerThread, peer: Peer) -> None:
    peer.mode = "html"
    status, body, ended = read(home, remote_locator())
    assert (status, ended) == (502, "complete")
    assert b"offered" in body


def test_silence_before_the_answer_is_a_504_within_remote_timeout(
    home: ServerThread, peer: Peer
) -> None:
    peer.mode = "hang-before-answer"
    started = time.monotonic()
    status, _, _ = read(home, remote_locator())
    assert status == 504
    assert time.monotonic() - started < TIMEOUT + 1.5


def test_silence_midway_ends_the_answer_within_remote_timeout(
    home: ServerThread, peer: Peer
) -> None:
    peer.mode = "hang-midway"
    started = time.monotonic()
    status, body, ended = read(home, remote_locator())
    assert status == 200 and ended != "complete"
    assert len(body) < len(BLOCK)
    assert time.monotonic() - started < TIMEOUT + 1.5


def test_a_client_that_hangs_up_stops_the_read_from_the_remote(
    home: ServerThread, peer: Peer
) -> None:
    big = os.urandom(16 * 1024 * 1024)  # about 1.3 s at the slow peer's pace
    peer.blocks = {hashlib.md5(big).hexdigest(): big}
    peer.mode = "slow"
    url = f"{home.base_url}/{remote_locator(big)}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw())
    # Leaving the block closed the connection with most of the block unread.
    deadline = time.monotonic() + 10
    while peer.streaming and time.monotonic() < deadline:
        time.sleep(0.01)
    # The peer's answer was broken off by the home, not read to its end.
    assert (peer.streaming, peer.completed) == (0, 0)
    assert peer.sent < len(big) // 2


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("status-500", 502), ("status-403", 403), ("status-401", 403), ("garbage-services", 502)],
)
def test_what_the_remote_answers_becomes_a_block_server_status(
    home: ServerThread, peer: Peer, mode: str, expected: int
) -> None:
    home.server.config.app.blocks.forget("c97qk")  # the list is asked for again
    peer.mode = mode
    status, body, ended = read(home, remote_locator())
    assert (status, ended) == (expected, "complete")
    assert SALTED.split("/")[2].encode() not in body and SECRET.encode() not in body


def test_a_block_the_remote_does_not_have_is_a_404(home: ServerThread, peer: Peer) -> None:
    peer.blocks = {}
    assert read(home, remote_locator())[0] == 404


def test_a_block_server_that_is_down_is_a_502(home: ServerThread, peer: Peer) -> None:
    app = home.server.config.app
    app.blocks.forget("c97qk")
    peer.services = [
        {
            "uuid": "c97qk-bi6l4-000000000000009",
            "service_host": "127.0.0.1",
            "service_port": free_port(),
            "service_ssl_flag": False,
        }
    ]
    assert read(home, remote_locator())[0] == 502
    app.blocks.forget("c97qk")


def test_a_block_server_that_stays_down_opens_the_circuit(home: ServerThread, peer: Peer) -> None:
    assert read(home, remote_locator())[0] == 200
    app = home.server.config.app
    app.blocks.forget("c97qk")
    peer.seen.clear()
    peer.services = [
        {
            "uuid": "c97qk-bi6l4-000000000000009",
            "service_host": "127.0.0.1",
            "service_port": free_port(),
            "service_ssl_flag": False,
        }
    ]
    try:
        assert [read(home, remote_locator())[0] for _ in range(FAILURE_THRESHOLD)] == [
            502
        ] * FAILURE_THRESHOLD
        # Its list was asked for once: the failures did not each ask for it again.
        assert [path for _, path, _ in peer.seen] == ["/arvados/v1/keep_services/accessible"]
        status, body, _ = read(home, remote_locator())
        assert status == 502 and b"circuit open" in body
        assert len(peer.seen) == 1
    finally:
        app.remote.circuits["c97qk"].record_success()
        app.blocks.forget("c97qk")


def test_a_cluster_that_is_down_is_a_502() -> None:
    with ServerThread(Home(free_port())) as home:
        started = time.monotonic()
        assert read(home, remote_locator())[0] == 502
        assert time.monotonic() - started < TIMEOUT + 1.5


@pytest.mark.parametrize(
    ("locator", "token", "expected"),
    [
        (remote_locator(cluster="zzzzz"), TOKEN, 400),  # not in RemoteClusters
        (remote_locator(), None, 401),
        (remote_locator(), SECRET, 400),  # a v1 token cannot travel
        (remote_locator(), SALTED, 400),  # nor a salted one
        (f"{MD5}+{len(BLOCK)}+A{SIG}", TOKEN, 400),  # no +R: not a remote block
        (f"{MD5}+R c97qk", TOKEN, 400),
    ],
    # Named, not by their random locators: pytest-xdist workers must collect alike.
    ids=["unknown-cluster", "no-token", "v1-token", "salted-token", "local-signature", "bad-hint"],
)
def test_requests_that_reach_no_cluster(
    home: ServerThread, peer: Peer, locator: str, token: str | None, expected: int
) -> None:
    assert read(home, locator, token=token)[0] == expected
    assert peer.seen == []
