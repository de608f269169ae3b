"""SPEC 3.7 on the issuer: who may revoke a token, what is remembered, the CLI command."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from clusterfed.server.app import create_app
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    cluster_config,
    free_port,
    local_config,
    remote_entry,
)
from clusterfed.storage.models import FederationPurge
from clusterfed.storage.revocation_models import (
    FederationRevocationNotice,
    FederationTokenValidator,
)
from clusterfed.tokens import TOKEN_TYPE, new_uuid, parse_token, salt
from sqlalchemy import select

from tests.conftest import asgi_client
from tests.support import REPO_ROOT
from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

TOKENS = "/arvados/v1/api_client_authorizations"
USERS_CURRENT = "/arvados/v1/users/current"


@pytest.fixture
async def qr1hi(databases: DatabaseFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Cluster]]:
    url = databases.new_url("qr1hi")
    # c97qk is a remote where nothing listens: notices to it wait in the outbox.
    config = local_config("qr1hi", url, remotes={"c97qk": remote_entry(free_port())})
    async with asgi_client(create_app(config)) as client:
        yield client, Cluster("qr1hi", 0, url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def uuid_of(token: str) -> str:
    uuid = parse_token(token).uuid
    assert uuid is not None
    return uuid


def salted(token: str, remote: str) -> str:
    return salt(parse_token(token), remote).encode()


async def test_a_token_revokes_itself_and_is_refused_at_once(qr1hi: tuple) -> None:
    client, cluster = qr1hi
    user_uuid, token = await cluster.new_user()
    assert (await client.get(USERS_CURRENT, headers=bearer(token))).status_code == 200
    answer = await client.delete(f"{TOKENS}/{uuid_of(token)}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "arvados#apiClientAuthorization"
    assert (body["uuid"], body["owner_uuid"]) == (uuid_of(token), user_uuid)
    assert body["expires_at"] and "api_token" not in body
    assert parse_token(token).secret not in answer.text
    assert (await client.get(USERS_CURRENT, headers=bearer(token))).status_code == 401
    again = await client.delete(f"{TOKENS}/{uuid_of(token)}", headers=bearer(token))
    assert again.status_code == 401
    async with cluster.session() as session:
        purge = await session.scalar(
            select(FederationPurge).where(FederationPurge.value == uuid_of(token))
        )
    assert purge is not None and purge.kind == "token"


async def test_salted_and_scoped_forms_may_end_their_own_token(qr1hi: tuple) -> None:
    client, cluster = qr1hi
    user_uuid, token = await cluster.new_user()
    # Salted for a remote in RemoteClusters, without remote=: as a remote forwards it.
    answer = await client.delete(
        f"{TOKENS}/{uuid_of(token)}", headers=bearer(salted(token, "c97qk"))
    )
    assert answer.status_code == 200, answer.text

    scoped = await cluster.new_token(user_uuid, scopes=[f"GET {USERS_CURRENT}"])
    answer = await client.delete(f"{TOKENS}/{uuid_of(scoped)}", headers=bearer(scoped))
    assert answer.status_code == 200, answer.text

    # Salted for a cluster this one does not federate with: never good here, not even
    # after that copy was shown to the validation endpoint (which refuses it too).
    other = await cluster.new_token(user_uuid)
    unknown = salted(other, "zzzzq")
    for params in ({}, {"remote": "zzzzq"}):
        refused = await client.delete(
            f"{TOKENS}/{uuid_of(other)}", params=params, headers=bearer(unknown)
        )
        assert refused.status_code == 401, refused.text
        validated = await client.get(
            f"{TOKENS}/current", params={"remote": "zzzzq"}, headers=bearer(unknown)
        )
        assert validated.status_code == 401
    assert (await client.get(USERS_CURRENT, headers=bearer(other))).status_code == 200


async def test_owner_admin_and_management_token_may_revoke_others_may_not(qr1hi: tuple) -> None:
    client, cluster = qr1hi
    user_uuid, token = await cluster.new_user()
    _, stranger = await cluster.new_user()
    _, admin = await cluster.new_user(is_admin=True)
    targets = [await cluster.new_token(user_uuid) for _ in range(3)]

    missing = new_uuid("qr1hi", TOKEN_TYPE)
    for uuid, credential, expected in (
        (uuid_of(targets[0]), stranger, 404),
        (missing, token, 404),
        (uuid_of(targets[0]), salted(token, "c97qk"), 401),  # salted: only for itself
        (uuid_of(targets[0]), "", 401),
    ):
        headers = bearer(credential) if credential else {}
        answer = await client.delete(f"{TOKENS}/{uuid}", headers=headers)
        assert answer.status_code == expected, (credential == stranger, answer.text)
        assert set(answer.json()) == {"errors", "error_token"}

    scoped = await cluster.new_token(user_uuid, scopes=[f"GET {USERS_CURRENT}"])
    assert (
        await client.delete(f"{TOKENS}/{uuid_of(targets[0])}", headers=bearer(scoped))
    ).status_code == 403

    for target, credential in zip(targets, (token, admin, MANAGEMENT_TOKEN), strict=True):
        answer = await client.delete(f"{TOKENS}/{uuid_of(target)}", headers=bearer(credential))
        assert answer.status_code == 200, answer.text
        assert (await client.get(USERS_CURRENT, headers=bearer(target))).status_code == 401
    assert (await client.get(USERS_CURRENT, headers=bearer(token))).status_code == 200


async def test_validators_are_remembered_and_remotes_among_them_get_a_notice(qr1hi: tuple) -> None:
    client, cluster = qr1hi
    _, token = await cluster.new_user()
    for remote, status in (("c97qk", 200), ("zzzzq", 401)):
        answer = await client.get(
            f"{TOKENS}/current", params={"remote": remote}, headers=bearer(salted(token, remote))
        )
        assert answer.status_code == status
    # The token's own secret validates anywhere, but only a remote is remembered.
    for params in ({}, {"remote": "zzzzq"}):
        answer = await client.get(f"{TOKENS}/current", params=params, headers=bearer(token))
        assert answer.status_code == 200
    async with cluster.session() as session:
        seen = await session.scalars(
            select(FederationTokenValidator.cluster_id).where(
                FederationTokenValidator.token_uuid == uuid_of(token)
            )
        )
        assert sorted(seen) == ["c97qk"]
    assert (
        await client.delete(f"{TOKENS}/{uuid_of(token)}", headers=bearer(token))
    ).status_code == 200
    async with cluster.session() as session:
        notices = (await session.scalars(select(FederationRevocationNotice))).all()
    assert [(n.token_uuid, n.remote) for n in notices] == [(uuid_of(token), "c97qk")]
    assert notices[0].give_up_at is None  # the token had no expiry

    # The operator sees it waiting, in the admin API and on the page.
    management = bearer(MANAGEMENT_TOKEN)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        outbox = (await client.get("/federation/v1/revocation_outbox", headers=management)).json()
        (row,) = outbox["items"]
        if row["max_attempts"] >= 1:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    assert (row["remote"], row["pending"], row["delivered"]) == ("c97qk", 1, 0)
    assert row["last_error"] and row["next_attempt_at"] and row["oldest_pending"]
    assert (
        await client.get("/federation/v1/revocation_outbox", headers=bearer(token))
    ).status_code == 401
    page = await client.get("/federation/admin", headers=management)
    assert page.status_code == 200
    assert '<table id="outbox">' in page.text and row["last_error"] in page.text


def test_cli_tokens_revoke(databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.new_url("qr1hi")
    config_path = tmp_path / "qr1hi.yml"
    remotes = {"c97qk": remote_entry(free_port())}
    config_path.write_text(yaml.safe_dump(cluster_config("qr1hi", url, remotes=remotes)))
    cluster = Cluster("qr1hi", 0, url)
    _, token = asyncio.run(cluster.new_user())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "clusterfed",
                "tokens",
                "revoke",
                *args,
                "--config",
                str(config_path),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = cli(uuid_of(token))
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"revoked {uuid_of(token)}; notices queued for: none (no remote validated it)"
    )
    assert parse_token(token).secret not in done.stdout + done.stderr
    for bad, message in (
        ("nonsense", "is not a token UUID"),
        (new_uuid("c97qk", TOKEN_TYPE), "was issued by cluster c97qk"),
        (new_uuid("qr1hi", TOKEN_TYPE), "no token"),
    ):
        failed = cli(bad)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
