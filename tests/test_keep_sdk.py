"""The real Arvados tools against one cluster serving HTTPS: ``arv-put``, ``arv-get``,
``arv-ls``, ``CollectionReader``, ``Collection.save_new`` and the SDK's ``KeepClient``
meeting each refusal of the block server.

The command-line tools run as subprocesses with a HOME of their own and
``ARVADOS_API_HOST_INSECURE=1`` (the certificate is self-signed); SDK calls run in a
thread, as they block.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import arvados
import arvados.collection
import arvados.errors
import arvados.keep
import httpx
import pytest
from clusterfed.keep.signing import sign_locator, signing_key
from clusterfed.server.testing import ClusterProcess, running

from tests.support.databases import DatabaseFactory
from tests.support.keep import ROOT_TOKEN, TTL, KeepCluster, keep_config
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk

pytestmark = pytest.mark.server

BIN = Path(sys.executable).parent
KEY = signing_key("", ROOT_TOKEN)


@pytest.fixture(scope="module")
def keep(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeepCluster]:
    workdir = tmp_path_factory.mktemp("keep-sdk")
    config = keep_config("qr1hi", session_databases.new_url("qr1hi"), workdir)
    with running(ClusterProcess(config, workdir)) as cluster:
        yield KeepCluster(cluster, workdir / "keep")


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)


def tool(
    keep: KeepCluster, token: str, home: Path, *args: str
) -> subprocess.CompletedProcess[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ARVADOS_API_HOST": keep.cluster.host,
        "ARVADOS_API_TOKEN": token,
        "ARVADOS_API_HOST_INSECURE": "1",
    }
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, capture_output=True, timeout=120, check=False
    )


async def test_arv_put_then_arv_get_returns_the_same_bytes(
    keep: KeepCluster, tmp_path: Path
) -> None:
    _, token = await keep.cluster.new_user()
    source = tmp_path / "data"
    source.mkdir()
    (source / "small.txt").write_bytes(b"hello keep\n")
    big = os.urandom(3 << 20)
    (source / "big.bin").write_bytes(big)
    put = await in_thread(
        lambda: tool(keep, token, tmp_path, "arv-put", "--no-resume", "--no-cache", f"{source}/")
    )
    assert put.returncode == 0, put.stderr.decode()
    uuid = put.stdout.decode().strip()
    assert uuid.startswith("qr1hi-4zz18-"), put.stdout
    listed = await in_thread(lambda: tool(keep, token, tmp_path, "arv-ls", uuid))
    assert listed.returncode == 0, listed.stderr.decode()
    assert sorted(listed.stdout.decode().split()) == ["./big.bin", "./small.txt"]
    for name, data in (("big.bin", big), ("small.txt", b"hello keep\n")):
        got = await in_thread(
            lambda n=name: tool(keep, token, tmp_path, "arv-get", f"{uuid}/{n}", "-")
        )
        assert got.returncode == 0, got.stderr.decode()
        assert got.stdout == data
    # Stored without signatures, answered signed for whoever reads.
    api = sdk(keep.cluster, token)
    record = await in_thread(
        lambda: (
            api.collections()
            .get(uuid=uuid, select=["unsigned_manifest_text", "manifest_text"])
            .execute()
        )
    )
    assert "+A" not in record["unsigned_manifest_text"] and "+A" in record["manifest_text"]


async def test_collection_save_new_then_collection_reader(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    api = sdk(keep.cluster, token)
    data = os.urandom(200_000)

    def save() -> str:
        collection = arvados.collection.Collection(api_client=api)
        with collection.open("sub/file.bin", "wb") as handle:
            handle.write(data)
        collection.save_new(name="saved by the SDK")
        return collection.manifest_locator()

    uuid = await in_thread(save)

    def read() -> bytes:
        reader = arvados.collection.CollectionReader(uuid, api_client=api)
        with reader.open("sub/file.bin", "rb") as handle:
            return handle.read()

    assert await in_thread(read) == data


async def test_the_sdk_meets_each_refusal(keep: KeepCluster) -> None:
    user_uuid, token = await keep.cluster.new_user()
    _, other = await keep.cluster.new_user()
    api = sdk(keep.cluster, token)
    client = arvados.keep.KeepClient(api_client=api, num_retries=0)
    data = os.urandom(1000)
    locator = await in_thread(lambda: client.put(data, copies=1))
    assert await in_thread(lambda: client.get(locator)) == data
    plain = f"{hashlib.md5(data).hexdigest()}+{len(data)}"
    theirs = arvados.keep.KeepClient(api_client=sdk(keep.cluster, other), num_retries=0)
    refused = {
        "unsigned": plain,
        "another user's signature": await in_thread(lambda: theirs.put(data, copies=1)),
        "forged": f"{plain}+A{'0' * 40}@{int(time.time()) + 600:08x}",
        "expired": sign_locator(plain, token, KEY, TTL, int(time.time()) - 5),
        "another cluster's key": sign_locator(plain, token, b"another key", TTL, 2**31),
    }
    for name, bad in refused.items():
        client.block_cache.clear() if hasattr(client.block_cache, "clear") else None
        with pytest.raises(arvados.errors.KeepReadError):
            await in_thread(
                lambda b=bad: arvados.keep.KeepClient(api_client=api, num_retries=0).get(b)
            )
        assert name
    missing = sign_locator(f"{'0' * 32}+5", token, KEY, TTL, 2**31)
    with pytest.raises(arvados.errors.NotFoundError):
        await in_thread(lambda: arvados.keep.KeepClient(api_client=api, num_retries=0).get(missing))
    # A wrong md5 on upload: the SDK hashes what it sends, so send it as the SDK would.
    async with httpx.AsyncClient(verify=False) as raw:
        wrong = await raw.put(
            keep.url("0" * 32), content=data, headers={"Authorization": f"Bearer {token}"}
        )
    assert wrong.status_code == 422
    # A revoked token reads nothing more, even with signatures made for it.
    await in_thread(
        lambda: api.api_client_authorizations().delete(uuid=token.split("/")[1]).execute()
    )
    with pytest.raises(arvados.errors.KeepReadError):
        await in_thread(lambda: arvados.keep.KeepClient(api_client=api, num_retries=0).get(locator))
    assert user_uuid
