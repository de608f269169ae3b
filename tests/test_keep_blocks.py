"""The block server (keepstore's protocol) on a real cluster serving HTTPS.

Every status a client can meet: a block stored and read back, and each refusal (no token,
unsigned, another user's signature, a forgery, an expired signature, another cluster's key,
a wrong md5, a missing block, a revoked token, too large, a corrupt stored block).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
from clusterfed.keep.signing import sign_locator, signing_key
from clusterfed.server.testing import ClusterProcess, running

from tests.support.databases import DatabaseFactory
from tests.support.keep import ROOT_TOKEN, TTL, KeepCluster, keep_config

pytestmark = pytest.mark.server

BLOCK = b"the quick brown fox jumps over the lazy dog\n" * 1000
MD5 = hashlib.md5(BLOCK).hexdigest()


@pytest.fixture(scope="module")
def keep(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeepCluster]:
    workdir = tmp_path_factory.mktemp("keep-blocks")
    config = keep_config("qr1hi", session_databases.new_url("qr1hi"), workdir)
    with running(ClusterProcess(config, workdir)) as cluster:
        yield KeepCluster(cluster, workdir / "keep")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def put(keep: KeepCluster, token: str, data: bytes = BLOCK, md5: str | None = None):
    async with httpx.AsyncClient(verify=False) as client:
        return await client.put(
            keep.url(md5 or hashlib.md5(data).hexdigest()), content=data, headers=auth(token)
        )


async def get(keep: KeepCluster, token: str | None, locator: str, method: str = "GET"):
    async with httpx.AsyncClient(verify=False) as client:
        return await client.request(method, keep.url(locator), headers=auth(token) if token else {})


async def test_put_answers_a_signed_locator_and_get_returns_the_bytes(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    stored = await put(keep, token)
    assert stored.status_code == 200, stored.text
    assert stored.headers["content-type"].startswith("text/plain")
    assert stored.headers["x-keep-replicas-stored"] == "1"
    assert stored.headers["x-keep-storage-classes-confirmed"] == "default=1"
    locator = stored.text.strip()
    assert locator.startswith(f"{MD5}+{len(BLOCK)}+A")
    key = signing_key("", ROOT_TOKEN)
    expiry = int(locator.rsplit("@", 1)[1], 16)
    assert abs(expiry - (time.time() + TTL)) < 60
    assert locator == sign_locator(f"{MD5}+{len(BLOCK)}", token, key, TTL, expiry)
    read = await get(keep, token, locator)
    assert read.status_code == 200 and read.content == BLOCK
    assert read.headers["content-length"] == str(len(BLOCK))
    head = await get(keep, token, locator, "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(BLOCK))
    # The block is one file under <root>/<md5[:3]>/<md5>, no temporary left beside it.
    assert sorted(p.name for p in (keep.volume / MD5[:3]).iterdir()) == [MD5]


async def stored_locator(keep: KeepCluster, token: str, data: bytes = BLOCK) -> str:
    stored = await put(keep, token, data)
    assert stored.status_code == 200, stored.text
    return stored.text.strip()


async def test_refusals(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    _, other = await keep.cluster.new_user()
    locator = await stored_locator(keep, token)
    plain = f"{MD5}+{len(BLOCK)}"
    key = signing_key("", ROOT_TOKEN)
    expired = sign_locator(plain, token, key, TTL, int(time.time()) - 10)
    foreign_key = sign_locator(plain, token, signing_key("", "another cluster's root"), TTL, 2**31)
    forged = f"{plain}+A{'0' * 40}@{int(time.time()) + 600:08x}"
    cases = {
        "no credential": (None, locator, 401),
        "unsigned": (token, plain, 400),
        "another user's signature": (other, locator, 400),
        "forged": (token, forged, 400),
        "expired": (token, expired, 401),
        "another cluster's key": (token, foreign_key, 400),
        "malformed": (token, f"{MD5}+x+A{'0' * 40}@7fffffff", 400),
        "missing block": (token, sign_locator("0" * 32 + "+3", token, key, TTL, 2**31), 404),
        "wrong size": (token, sign_locator(f"{MD5}+5", token, key, TTL, 2**31), 404),
        "unknown token": (token + "x", sign_locator(plain, token + "x", key, TTL, 2**31), 401),
    }
    for name, (credential, target, status) in cases.items():
        answer = await get(keep, credential, target)
        assert answer.status_code == status, (name, answer.text)
        assert BLOCK[:100] not in answer.content, name


async def test_a_revoked_token_stops_reading_at_once(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    locator = await stored_locator(keep, token)
    assert (await get(keep, token, locator)).status_code == 200
    async with httpx.AsyncClient(verify=False) as client:
        uuid = token.split("/")[1]
        revoked = await client.delete(
            f"{keep.cluster.base_url}/arvados/v1/api_client_authorizations/{uuid}",
            headers=auth(token),
        )
    assert revoked.status_code == 200, revoked.text
    assert (await get(keep, token, locator)).status_code == 401


async def test_upload_refusals(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    wrong = await put(keep, token, BLOCK, md5="0" * 32)
    assert wrong.status_code == 422, wrong.text
    assert not (keep.volume / "000").exists() or not any((keep.volume / "000").iterdir())
    assert (await put(keep, "v2/qr1hi-gj3su-000000000000000/nope")).status_code == 401
    async with httpx.AsyncClient(verify=False) as client:
        anonymous = await client.put(keep.url(MD5), content=BLOCK)
        assert anonymous.status_code == 401

        async def chunked():
            yield BLOCK

        unsized = await client.put(keep.url(MD5), content=chunked(), headers=auth(token))
        assert unsized.status_code == 411, unsized.text


async def raw_head(keep: KeepCluster, head: str) -> bytes:
    """Sends a request head alone (no body) over TLS; returns the start of the answer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", keep.cluster.port, ssl=context)
    try:
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


async def test_over_64_mib_is_refused_from_its_content_length(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    # The answer comes from the declared length, before any body is read (and no
    # "100 Continue" invites one).
    answer = await raw_head(
        keep,
        f"PUT /{'0' * 32} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {(1 << 26) + 1}\r\nExpect: 100-continue\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # An API path keeps its own, smaller cap.
    answer = await raw_head(
        keep,
        f"POST /arvados/v1/collections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {16 << 20}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


async def test_a_corrupt_stored_block_is_never_served(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    data = os.urandom(4096)
    locator = await stored_locator(keep, token, data)
    md5 = hashlib.md5(data).hexdigest()
    path = keep.volume / md5[:3] / md5
    path.write_bytes(b"\0" * len(data))
    for method in ("GET", "HEAD"):
        answer = await get(keep, token, locator, method)
        assert answer.status_code == 502, answer.text
    assert data not in (await get(keep, token, locator)).content


async def test_a_whole_64_mib_block_passes_the_body_cap(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    data = os.urandom(1 << 26)
    locator = await stored_locator(keep, token, data)
    assert locator.startswith(f"{hashlib.md5(data).hexdigest()}+{1 << 26}+A")
    digest = hashlib.md5()
    async with (
        httpx.AsyncClient(verify=False) as client,
        client.stream("GET", keep.url(locator), headers=auth(token)) as answer,
    ):
        assert answer.status_code == 200
        async for chunk in answer.aiter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()


async def test_a_large_corrupt_block_is_cut_short(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    data = os.urandom(6 << 20)
    locator = await stored_locator(keep, token, data)
    md5 = hashlib.md5(data).hexdigest()
    (keep.volume / md5[:3] / md5).write_bytes(data[:-1] + b"\0")
    assert (await get(keep, token, locator, "HEAD")).status_code == 502
    received = b""
    with pytest.raises(httpx.HTTPError):
        async with (
            httpx.AsyncClient(verify=False) as client,
            client.stream("GET", keep.url(locator), headers=auth(token)) as answer,
        ):
            async for chunk in answer.aiter_bytes():
                received += chunk
    assert len(received) < len(data)
