"""File content across two federated clusters, with the unmodified Arvados tools over HTTPS.

A qr1hi user and the SDK's own code paths: a collection written on c97qk read through
qr1hi (the seed's ``CollectionReader("c97qk-...").open(...).read()``), that collection
saved at home (its blocks copied to qr1hi), ``arv-put --project-uuid <c97qk project>``
through qr1hi (the blocks land on c97qk), ``arv-get``/``arv-ls`` through either cluster,
and ``arv-copy`` from c97qk to qr1hi. Assertions are on bytes, on hashes, and on which
cluster's volume holds each block.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arvados
import arvados.collection
import pytest
from clusterfed.keep.signing import DEFAULT_TTL_SECONDS, sign_locator, signing_key

from tests.support.databases import DatabaseFactory
from tests.support.keep_federation import KeepNode, keep_pair, tool, write_cluster_settings
from tests.support.sdk import in_thread, isolate_sdk_settings, sdk

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, KeepNode]]:
    with keep_pair(session_databases, tmp_path_factory.mktemp("keep-federation")) as clusters:
        yield clusters


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_sdk_settings(tmp_path, monkeypatch)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_on(api: Any, files: dict[str, bytes], **save: Any) -> arvados.collection.Collection:
    collection = arvados.collection.Collection(api_client=api)
    for name, data in files.items():
        with collection.open(name, "wb") as file:
            file.write(data)
    collection.save_new(**save)
    return collection


async def test_a_collection_written_on_c97qk_is_read_through_qr1hi(
    pair: dict[str, KeepNode],
) -> None:
    qr1hi, c97qk = pair["qr1hi"], pair["c97qk"]
    _, token = await qr1hi.cluster.new_user()
    data = os.urandom(3 * MiB + 1)

    def scenario() -> tuple[str, list[dict[str, Any]], bytes, str]:
        made = write_on(sdk(c97qk.cluster, token), {"data.bin": data}, name="on c97qk")
        home = sdk(qr1hi.cluster, token)
        uuid = made.manifest_locator()
        answers = [
            home.collections().get(uuid=uuid).execute(),
            # By hash: qr1hi has none, asks c97qk, and checks the hash of the portable form.
            home.collections().get(uuid=made.portable_data_hash()).execute(),
            *home.collections()
            .list(filters=[["uuid", "=", uuid]], federated=True)
            .execute()["items"],
        ]
        # The seed's scenario, with the home cluster's client only.
        reader = arvados.collection.CollectionReader(uuid, api_client=home)
        with reader.open("data.bin", "rb") as file:
            content = file.read()
        return uuid, answers, content, reader.portable_data_hash()

    uuid, answers, content, pdh = await in_thread(scenario)
    assert uuid.startswith("c97qk-4zz18-")
    assert content == data
    assert len(answers) == 3
    for answer in answers:  # by UUID, by hash, in a merged list
        assert "+Rc97qk-" in answer["manifest_text"] and "+A" not in answer["manifest_text"]
        assert answer["portable_data_hash"] == pdh
    # Read through qr1hi, stored only on c97qk: the home proxied it.
    assert c97qk.stored(md5(data)) and not qr1hi.stored(md5(data))


async def test_a_remote_collection_saved_at_home_has_its_blocks_copied_home(
    pair: dict[str, KeepNode],
) -> None:
    qr1hi, c97qk = pair["qr1hi"], pair["c97qk"]
    _, token = await qr1hi.cluster.new_user()
    data = os.urandom(MiB + 7)

    def scenario() -> tuple[str, str, bytes]:
        made = write_on(sdk(c97qk.cluster, token), {"f.bin": data}, name="remote original")
        home = sdk(qr1hi.cluster, token)
        remote = arvados.collection.CollectionReader(made.manifest_locator(), api_client=home)
        # The SDK asks home for a local copy of each +R block (X-Keep-Signature: local).
        copy = arvados.collection.Collection(remote.manifest_text(), api_client=home)
        copy.save_new(name="saved at home")
        stored = home.collections().get(uuid=copy.manifest_locator()).execute()
        again = arvados.collection.CollectionReader(copy.manifest_locator(), api_client=home)
        with again.open("f.bin", "rb") as file:
            return copy.manifest_locator(), stored["manifest_text"], file.read()

    uuid, manifest, content = await in_thread(scenario)
    assert uuid.startswith("qr1hi-4zz18-")
    assert content == data
    assert "+R" not in manifest and "+A" in manifest  # signed by qr1hi, for qr1hi
    assert qr1hi.stored(md5(data))


async def test_arv_put_through_home_into_a_c97qk_project_lands_on_c97qk(
    pair: dict[str, KeepNode], tmp_path: Path
) -> None:
    qr1hi, c97qk = pair["qr1hi"], pair["c97qk"]
    _, token = await qr1hi.cluster.new_user()
    data = os.urandom(2 * MiB + 3)
    source = tmp_path / "upload" / "sample.bin"
    source.parent.mkdir()
    source.write_bytes(data)
    project = await in_thread(
        lambda: (
            sdk(qr1hi.cluster, token)
            .groups()
            .create(
                body={"group": {"name": f"p-{secrets.token_hex(3)}", "group_class": "project"}},
                cluster_id="c97qk",
            )
            .execute()
        )
    )
    assert project["uuid"].startswith("c97qk-j7d0g-")

    put = await in_thread(
        lambda: tool(
            "arv-put",
            "--no-resume",
            "--no-cache",
            "--project-uuid",
            project["uuid"],
            "--name",
            "uploaded through qr1hi",
            str(source),
            cluster=qr1hi.cluster,
            token=token,
            home=tmp_path,
        )
    )
    assert put.returncode == 0, put.stderr.decode()[-3000:]
    uuid = put.stdout.decode().strip()
    assert uuid.startswith("c97qk-4zz18-"), put.stdout
    # The block went home first (arv-put writes to qr1hi's Keep), then to c97qk.
    assert qr1hi.stored(md5(data)) and c97qk.stored(md5(data))

    for cluster in (c97qk.cluster, qr1hi.cluster):
        got = await in_thread(
            lambda cluster=cluster: tool(
                "arv-get", f"{uuid}/sample.bin", "-", cluster=cluster, token=token, home=tmp_path
            )
        )
        assert got.returncode == 0, got.stderr.decode()[-3000:]
        assert got.stdout == data
    listed = await in_thread(
        lambda: tool("arv-ls", uuid, cluster=qr1hi.cluster, token=token, home=tmp_path)
    )
    assert listed.returncode == 0, listed.stderr.decode()[-3000:]
    assert listed.stdout.decode().split() == ["./sample.bin"]


async def test_arv_copy_from_c97qk_to_qr1hi(pair: dict[str, KeepNode], tmp_path: Path) -> None:
    qr1hi, c97qk = pair["qr1hi"], pair["c97qk"]
    user, token = await qr1hi.cluster.new_user()
    data = os.urandom(MiB + 11)
    made = await in_thread(
        lambda: write_on(sdk(c97qk.cluster, token), {"a.bin": data}, name="to copy")
    )
    write_cluster_settings(tmp_path, c97qk.cluster, token)
    write_cluster_settings(tmp_path, qr1hi.cluster, token)
    copied = await in_thread(
        lambda: tool(
            "arv-copy",
            "--src",
            "c97qk",
            "--dst",
            "qr1hi",
            "--project-uuid",
            user,
            made.manifest_locator(),
            cluster=qr1hi.cluster,
            token=token,
            home=tmp_path,
        )
    )
    assert copied.returncode == 0, copied.stderr.decode()[-3000:]
    assert qr1hi.stored(md5(data))
    home = sdk(qr1hi.cluster, token)
    found = await in_thread(
        lambda: (
            home.collections()
            .list(filters=[["portable_data_hash", "=", made.portable_data_hash()]])
            .execute()
        )
    )
    (item,) = [i for i in found["items"] if i["uuid"].startswith("qr1hi-")]
    reader = arvados.collection.CollectionReader(item["uuid"], api_client=home)
    assert await in_thread(lambda: reader.open("a.bin", "rb").read()) == data


async def test_a_file_added_through_home_to_a_c97qk_collection_lands_on_c97qk(
    pair: dict[str, KeepNode],
) -> None:
    qr1hi, c97qk = pair["qr1hi"], pair["c97qk"]
    _, token = await qr1hi.cluster.new_user()
    first, second = os.urandom(MiB + 1), os.urandom(MiB + 2)

    def scenario() -> tuple[str, bytes, bytes]:
        made = write_on(sdk(c97qk.cluster, token), {"one.bin": first}, name="grows")
        home = sdk(qr1hi.cluster, token)
        # The SDK saves a remote collection only as a new one at home; a client that
        # updates it through qr1hi sends its blocks as it holds them: one.bin as
        # qr1hi showed it (+Rc97qk-), two.bin just written to qr1hi (+A of qr1hi's).
        edited = arvados.collection.Collection(made.manifest_locator(), api_client=home)
        with edited.open("two.bin", "wb") as file:
            file.write(second)
        manifest = edited.manifest_text()
        home.collections().update(
            uuid=made.manifest_locator(), body={"collection": {"manifest_text": manifest}}
        ).execute()
        direct = arvados.collection.CollectionReader(
            made.manifest_locator(), api_client=sdk(c97qk.cluster, token)
        )
        return manifest, direct.open("one.bin", "rb").read(), direct.open("two.bin", "rb").read()

    manifest, one, two = await in_thread(scenario)
    assert "+Rc97qk-" in manifest and "+A" in manifest
    assert (one, two) == (first, second)
    assert qr1hi.stored(md5(second)) and c97qk.stored(md5(second))
    assert not qr1hi.stored(md5(first))  # c97qk's own block went back as its +A


async def test_a_block_signed_here_but_not_stored_here_is_a_422_naming_it(
    pair: dict[str, KeepNode],
) -> None:
    qr1hi = pair["qr1hi"]
    _, token = await qr1hi.cluster.new_user()
    key = signing_key("", "qr1hi-root-token-for-keep-federation-tests")
    missing = sign_locator(f"{md5(b'never stored')}+12", token, key, DEFAULT_TTL_SECONDS, 2**31 - 1)
    body = {"collection": {"name": "dangling", "manifest_text": f". {missing} 0:12:x\n"}}
    error = await in_thread(
        lambda: api_error(
            lambda: (
                sdk(qr1hi.cluster, token)
                .collections()
                .create(cluster_id="c97qk", body=body)
                .execute()
            )
        )
    )
    assert error.resp.status == 422
    assert md5(b"never stored") in str(error)


def api_error(call: Any) -> arvados.errors.ApiError:
    with pytest.raises(arvados.errors.ApiError) as caught:
        call()
    return caught.value
