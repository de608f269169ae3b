"""Collections and Keep signatures on a real cluster serving HTTPS.

A manifest must name only blocks signed for the caller (403 naming the first that is
not; admins exempt), is stored without signatures, hashes to its portable form (a given
hash that disagrees is 422), and every answer carrying it signs it for the caller.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from clusterfed.keep.manifests import portable_data_hash, strip_signatures
from clusterfed.keep.signing import sign_locator, signing_key, verify_locator
from clusterfed.server.testing import ClusterProcess, running

from tests.support.databases import DatabaseFactory
from tests.support.keep import ROOT_TOKEN, TTL, KeepCluster, keep_config

pytestmark = pytest.mark.server

KEY = signing_key("", ROOT_TOKEN)
COLLECTIONS = "/arvados/v1/collections"


@pytest.fixture(scope="module")
def keep(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeepCluster]:
    workdir = tmp_path_factory.mktemp("keep-collections")
    config = keep_config("qr1hi", session_databases.new_url("qr1hi"), workdir)
    with running(ClusterProcess(config, workdir)) as cluster:
        yield KeepCluster(cluster, workdir / "keep")


@pytest.fixture(scope="module")
def unsigned_keep(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeepCluster]:
    workdir = tmp_path_factory.mktemp("keep-unsigned")
    config = keep_config("c97qk", session_databases.new_url("c97qk"), workdir, BlobSigning=False)
    with running(ClusterProcess(config, workdir)) as cluster:
        yield KeepCluster(cluster, workdir / "keep")


async def call(
    keep: KeepCluster, token: str, method: str, path: str, body: Any = None, **params: str
) -> httpx.Response:
    async with httpx.AsyncClient(verify=False, base_url=keep.cluster.base_url) as client:
        return await client.request(
            method, path, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
        )


def manifest_of(*locators: str) -> str:
    size = sum(int(loc.split("+")[1]) for loc in locators)
    return f". {' '.join(locators)} 0:{size}:file.txt\n"


def assert_signed_for(manifest: str, token: str) -> None:
    tokens = manifest.split()[1:-1]
    assert tokens
    for locator in tokens:
        verify_locator(locator, token, KEY, TTL)
        expiry = int(locator.rsplit("@", 1)[1], 16)
        assert abs(expiry - (time.time() + TTL)) < 60


async def test_a_signed_manifest_is_stored_plain_and_answered_signed(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    first = await keep.put(token, os.urandom(100))
    second = await keep.put(token, os.urandom(50))
    manifest = manifest_of(first, second)
    plain = strip_signatures(manifest)
    assert "+A" not in plain
    made = await call(keep, token, "POST", COLLECTIONS, {"collection": {"manifest_text": manifest}})
    assert made.status_code == 200, made.text
    created = made.json()
    data = plain.encode()
    assert created["portable_data_hash"] == f"{hashlib.md5(data).hexdigest()}+{len(data)}"
    assert created["portable_data_hash"] == portable_data_hash(manifest)
    assert_signed_for(created["manifest_text"], token)
    uuid = created["uuid"]

    got = (await call(keep, token, "GET", f"{COLLECTIONS}/{uuid}")).json()
    assert strip_signatures(got["manifest_text"]) == plain
    assert_signed_for(got["manifest_text"], token)
    assert "unsigned_manifest_text" not in got
    selected = await call(
        keep,
        token,
        "GET",
        f"{COLLECTIONS}/{uuid}",
        select='["unsigned_manifest_text","manifest_text"]',
    )
    assert selected.json()["unsigned_manifest_text"] == plain
    assert_signed_for(selected.json()["manifest_text"], token)

    listed = await call(keep, token, "GET", COLLECTIONS, filters=f'[["uuid","=","{uuid}"]]')
    (item,) = listed.json()["items"]
    assert_signed_for(item["manifest_text"], token)
    by_hash = await call(keep, token, "GET", f"{COLLECTIONS}/{created['portable_data_hash']}")
    assert_signed_for(by_hash.json()["manifest_text"], token)

    # Read back through a second token of the same user: signed for that token.
    user_uuid = created["owner_uuid"]
    other_token = await keep.cluster.new_token(user_uuid)
    again = (await call(keep, other_token, "GET", f"{COLLECTIONS}/{uuid}")).json()
    assert_signed_for(again["manifest_text"], other_token)

    renamed = await call(keep, token, "PUT", f"{COLLECTIONS}/{uuid}", {"collection": {"name": "r"}})
    assert renamed.status_code == 200 and renamed.json()["name"] == "r"
    assert_signed_for(renamed.json()["manifest_text"], token)
    # Saving the manifest as read back (signed for this token) is no change and passes.
    same = await call(
        keep, token, "PUT", f"{COLLECTIONS}/{uuid}", {"collection": {"manifest_text": plain}}
    )
    assert same.status_code == 200, same.text


async def test_unsigned_and_foreign_signatures_are_refused(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    _, other = await keep.cluster.new_user()
    good = await keep.put(token, os.urandom(64))
    theirs = await keep.put(other, os.urandom(64))
    plain = theirs.split("+A")[0]
    expired = sign_locator(plain, token, KEY, TTL, int(time.time()) - 5)
    cases = {
        "unsigned": plain,
        "another user's signature": theirs,
        "forged": f"{plain}+A{'0' * 40}@{int(time.time()) + 600:08x}",
        "expired": expired,
        "another cluster's key": sign_locator(plain, token, b"not this cluster's", TTL, 2**31),
    }
    for name, bad in cases.items():
        manifest = manifest_of(good, bad)
        made = await call(keep, token, "POST", COLLECTIONS, {"manifest_text": manifest})
        assert made.status_code == 403, (name, made.text)
        assert bad in made.json()["errors"][0], name
    # The empty block protects nothing and needs no signature.
    empty = manifest_of(good, "d41d8cd98f00b204e9800998ecf8427e+0")
    assert (
        await call(keep, token, "POST", COLLECTIONS, {"manifest_text": empty})
    ).status_code == 200
    # An update that changes the manifest is checked the same way.
    made = await call(keep, token, "POST", COLLECTIONS, {"manifest_text": manifest_of(good)})
    uuid = made.json()["uuid"]
    changed = await call(
        keep, token, "PUT", f"{COLLECTIONS}/{uuid}", {"manifest_text": manifest_of(good, plain)}
    )
    assert changed.status_code == 403 and plain in changed.json()["errors"][0]


async def test_a_disagreeing_portable_data_hash_is_422(keep: KeepCluster) -> None:
    _, token = await keep.cluster.new_user()
    manifest = manifest_of(await keep.put(token, os.urandom(10)))
    body = {"manifest_text": manifest, "portable_data_hash": "0" * 32 + "+1"}
    assert (await call(keep, token, "POST", COLLECTIONS, body)).status_code == 422
    body["portable_data_hash"] = portable_data_hash(manifest)
    assert (await call(keep, token, "POST", COLLECTIONS, body)).status_code == 200


async def test_admins_are_exempt(keep: KeepCluster) -> None:
    _, admin = await keep.cluster.new_user(is_admin=True)
    manifest = manifest_of(hashlib.md5(b"x").hexdigest() + "+1")
    for token in (admin, ROOT_TOKEN):
        made = await call(keep, token, "POST", COLLECTIONS, {"manifest_text": manifest})
        assert made.status_code == 200, made.text
        assert_signed_for(made.json()["manifest_text"], token)


async def test_without_blob_signing_unsigned_blocks_are_accepted_and_read(
    unsigned_keep: KeepCluster,
) -> None:
    keep = unsigned_keep
    _, token = await keep.cluster.new_user()
    _, other = await keep.cluster.new_user()
    data = os.urandom(32)
    signed = await keep.put(token, data)
    plain = signed.split("+A")[0]
    made = await call(keep, token, "POST", COLLECTIONS, {"manifest_text": manifest_of(plain)})
    assert made.status_code == 200, made.text
    # A signature that is there must still verify (Arvados's rule).
    forged = f"{plain}+A{'0' * 40}@7fffffff"
    refused = await call(keep, token, "POST", COLLECTIONS, {"manifest_text": manifest_of(forged)})
    assert refused.status_code == 403
    async with httpx.AsyncClient(verify=False) as client:
        read = await client.get(keep.url(plain), headers={"Authorization": f"Bearer {other}"})
        assert read.status_code == 200 and read.content == data
        assert (await client.get(keep.url(plain))).status_code == 401
