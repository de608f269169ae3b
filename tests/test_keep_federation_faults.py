"""A remote block server that lies, hangs, is down or answers garbage, read through a real
home cluster over HTTPS, by the SDK's own KeepClient and by a plain client.

qr1hi is a real cluster (TLS, blocks, signing); c97qk is a stub peer that misbehaves on
purpose (tests/support/keep_stub.py), zdown a port where nothing listens. Whatever the
remote does, the client never gets wrong bytes as a complete block, nor waits past
RemoteTimeout of silence; and the peer was asked for its own +A form with the credential
salted for it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import arvados
import httpx
import pytest
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    ServerThread,
    free_port,
    remote_entry,
    running,
)
from clusterfed.tokens import parse_token, salt

from tests.support.databases import DatabaseFactory
from tests.support.keep_federation import keep_cluster_config
from tests.support.keep_stub import STUB_SIGNATURE, Peer
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk
from tests.support.tls import self_signed

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

TIMEOUT = 1.0
SIG = "89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff"
DATA = os.urandom(2 * 1024 * 1024 + 5)
MD5 = hashlib.md5(DATA).hexdigest()


def locator(cluster: str = "c97qk") -> str:
    return f"{MD5}+{len(DATA)}+R{cluster}-{SIG}"


@dataclass
class Setup:
    home: Cluster
    peer: Peer
    volume: Path


@pytest.fixture(scope="module")
def setup(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("keep-faults")
    cert, key = self_signed(workdir)
    peer = Peer(port=free_port())
    remotes = {"c97qk": remote_entry(peer.port), "zdown": remote_entry(free_port())}
    config = keep_cluster_config(
        "qr1hi",
        session_databases.new_url("qr1hi"),
        workdir,
        cert,
        key,
        remotes=remotes,
        federation={"RemoteTimeout": f"{TIMEOUT}s"},
    )
    with ServerThread(peer.app(), port=peer.port), running(ClusterProcess(config, workdir)) as home:
        yield Setup(home, peer, workdir / "qr1hi-keep")


@pytest.fixture(autouse=True)
def reset(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)
    setup.peer.mode = "honest"
    setup.peer.services = None
    setup.peer.blocks = {MD5: DATA}
    setup.peer.seen.clear()


def plain_read(home: Cluster, token: str, wanted: str) -> tuple[int, bytes, bool]:
    """(status, bytes, whether the answer was complete) as a plain HTTPS client sees it."""
    received = bytearray()
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(verify=False, timeout=30) as client,
        client.stream("GET", f"{home.base_url}/{wanted}", headers=headers) as answer,
    ):
        try:
            for chunk in answer.iter_raw():
                received.extend(chunk)
        except httpx.HTTPError:
            return answer.status_code, bytes(received), False
    return answer.status_code, bytes(received), True


def keep_get(home: Cluster, token: str, wanted: str) -> bytes:
    return arvados.KeepClient(api_client=sdk(home, token), num_retries=0).get(wanted)


async def test_the_sdk_reads_a_remote_block_through_home(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    assert await in_thread(lambda: keep_get(setup.home, token, locator())) == DATA
    salted = salt(parse_token(token), "c97qk").encode()
    method, asked, authorization = setup.peer.seen[-1]
    assert (method, asked) == ("GET", f"{MD5}+{len(DATA)}+A{SIG}")
    assert authorization == f"Bearer {salted}"


async def test_wrong_bytes_never_reach_the_client_as_a_block(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    setup.peer.mode = "wrong-bytes"
    status, body, complete = await in_thread(lambda: plain_read(setup.home, token, locator()))
    assert status == 200 and not complete
    assert len(body) < len(DATA)
    with pytest.raises(arvados.errors.KeepReadError):
        await in_thread(lambda: keep_get(setup.home, token, locator()))


async def test_a_silent_remote_is_a_504_within_remote_timeout(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    setup.peer.mode = "hang-before-answer"
    started = time.monotonic()
    status, _, complete = await in_thread(lambda: plain_read(setup.home, token, locator()))
    assert (status, complete) == (504, True)
    assert time.monotonic() - started < TIMEOUT + 2


async def test_a_remote_silent_midway_never_completes_and_never_hangs(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    setup.peer.mode = "hang-midway"
    started = time.monotonic()
    status, body, complete = await in_thread(lambda: plain_read(setup.home, token, locator()))
    assert status == 200 and not complete and len(body) < len(DATA)
    assert time.monotonic() - started < TIMEOUT + 2


async def test_a_remote_that_is_down_is_a_502(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    status, body, _ = await in_thread(lambda: plain_read(setup.home, token, locator("zdown")))
    assert status == 502
    assert token.split("/")[2].encode() not in body


async def test_a_remote_answering_garbage_is_a_502(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    setup.peer.mode = "html"
    assert (await in_thread(lambda: plain_read(setup.home, token, locator())))[:1] == (502,)
    with pytest.raises(arvados.errors.KeepReadError):
        await in_thread(lambda: keep_get(setup.home, token, locator()))


async def test_nothing_is_asked_of_a_remote_for_a_credential_home_does_not_accept(
    setup: Setup,
) -> None:
    stranger = "v2/qr1hi-gj3su-000000000000000/" + "x" * 40
    status, _, _ = await in_thread(lambda: plain_read(setup.home, stranger, locator()))
    assert status == 401
    assert setup.peer.seen == []


async def test_head_asks_the_remote_for_a_head_only(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    answer = await in_thread(
        lambda: httpx.head(
            f"{setup.home.base_url}/{locator()}",
            headers={"Authorization": f"Bearer {token}"},
            verify=False,
        )
    )
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(len(DATA))
    blocks = [(method, asked) for method, asked, _ in setup.peer.seen if "/" not in asked]
    assert blocks == [("HEAD", f"{MD5}+{len(DATA)}+A{SIG}")]


def local_copy(home: Cluster, token: str, wanted: str, method: str) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Keep-Signature": "local, 2026-01-01T00:00:00Z",
    }
    return httpx.request(method, f"{home.base_url}/{wanted}", headers=headers, verify=False)


async def test_a_local_copy_is_stored_here_and_signed_here(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    data = os.urandom(1024 * 1024 + 3)
    setup.peer.blocks = {hashlib.md5(data).hexdigest(): data}
    wanted = f"{hashlib.md5(data).hexdigest()}+{len(data)}+Rc97qk-{SIG}"
    answer = await in_thread(lambda: local_copy(setup.home, token, wanted, "HEAD"))
    assert answer.status_code == 200
    copied = answer.headers["x-keep-locator"]
    assert copied.startswith(f"{hashlib.md5(data).hexdigest()}+{len(data)}+A")
    # The local locator now reads the block from qr1hi alone.
    setup.peer.blocks = {}
    status, body, complete = await in_thread(lambda: plain_read(setup.home, token, copied))
    assert (status, complete, body == data) == (200, True, True)
    answer = await in_thread(lambda: local_copy(setup.home, token, wanted, "GET"))
    assert answer.status_code == 404  # c97qk no longer has it: no signature without it


async def test_a_lying_remote_leaves_no_local_copy(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    setup.peer.mode = "wrong-bytes"
    answer = await in_thread(lambda: local_copy(setup.home, token, locator(), "HEAD"))
    assert answer.status_code == 502
    assert "x-keep-locator" not in answer.headers
    assert not list(setup.volume.rglob(MD5))  # nothing stored under the block's name
    setup.peer.mode = "honest"
    answer = await in_thread(lambda: local_copy(setup.home, token, locator(), "HEAD"))
    assert answer.status_code == 200 and list(setup.volume.rglob(MD5))


def create_on_peer(home: Cluster, token: str, manifest: str) -> httpx.Response:
    return httpx.post(
        f"{home.base_url}/arvados/v1/collections",
        params={"cluster_id": "c97qk"},
        json={"collection": {"name": "sent along", "manifest_text": manifest}},
        headers={"Authorization": f"Bearer {token}"},
        verify=False,
        timeout=30,
    )


def put_home(home: Cluster, token: str, data: bytes) -> str:
    answer = httpx.put(
        f"{home.base_url}/{hashlib.md5(data).hexdigest()}",
        content=data,
        headers={"Authorization": f"Bearer {token}"},
        verify=False,
    )
    assert answer.status_code == 200, answer.text
    return answer.text.strip()


async def test_a_collection_created_on_the_peer_sends_its_home_blocks_first(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    data = os.urandom(1024 * 1024 + 9)
    md5 = hashlib.md5(data).hexdigest()
    signed_home = await in_thread(lambda: put_home(setup.home, token, data))
    manifest = f". {signed_home} {signed_home} 0:{2 * len(data)}:twice.bin\n"
    setup.peer.blocks = {}
    answer = await in_thread(lambda: create_on_peer(setup.home, token, manifest))
    assert answer.status_code == 200, answer.text
    salted = f"Bearer {salt(parse_token(token), 'c97qk').encode()}"
    # One PUT of the block (named twice) with the salted token, then the create.
    puts = [entry for entry in setup.peer.seen if entry[0] == "PUT"]
    assert puts == [("PUT", md5, salted)]
    assert setup.peer.blocks == {md5: data}
    assert setup.peer.seen[-1] == ("POST", "/arvados/v1/collections", salted)
    theirs = f"{md5}+{len(data)}+A{STUB_SIGNATURE}"
    assert setup.peer.created[-1]["collection"]["manifest_text"] == (
        f". {theirs} {theirs} 0:{2 * len(data)}:twice.bin\n"
    )
    # What the client gets back says where the block is: c97qk's signature, as +R.
    assert answer.json()["manifest_text"].split(" ")[1] == theirs.replace("+A", "+Rc97qk-")


async def test_a_peer_that_answers_a_put_with_garbage_gets_no_create(setup: Setup) -> None:
    _, token = await setup.home.new_user()
    signed_home = await in_thread(lambda: put_home(setup.home, token, os.urandom(4096)))
    setup.peer.mode = "put-garbage"
    created = len(setup.peer.created)
    answer = await in_thread(
        lambda: create_on_peer(setup.home, token, f". {signed_home} 0:4096:x\n")
    )
    assert answer.status_code == 502
    assert len(setup.peer.created) == created
