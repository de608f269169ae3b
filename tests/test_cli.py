"""SPEC section 6: the command line, run the way an operator runs it (real subprocesses)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml
from clusterfed.config import CONFIG_ENV
from clusterfed.server.models import User
from clusterfed.server.testing import Cluster, ClusterProcess, cluster_config, free_port, running
from clusterfed.server.users.service import get_user
from clusterfed.storage.db import create_engine
from clusterfed.tokens import is_uuid, parse_token
from sqlalchemy import inspect

from tests.support.databases import PG_ADMIN_DSN, DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

CLUSTER_ID = "qr1hi"
USERS_CURRENT = "/arvados/v1/users/current"
TOKEN_CURRENT = "/arvados/v1/api_client_authorizations/current"
VECTOR_TOKEN = "v2/qr1hi-gj3su-000000000000001/3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    return {**env, **extra}


def clusterfed(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterfed", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a successful command printed."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("clusterfed: error: "), result.stderr
    for text in expected:
        assert text in result.stderr


def write_config(tmp_path: Path, database_url: str, **body: object) -> Path:
    config = cluster_config(CLUSTER_ID, database_url)
    config["Clusters"][CLUSTER_ID].update(body)
    path = tmp_path / "clusterfed.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_user(database_url: str, uuid: str) -> User | None:
    async def read() -> User | None:
        async with Cluster(CLUSTER_ID, 0, database_url).session() as session:
            return await get_user(session, uuid=uuid)

    return asyncio.run(read())


# --- db upgrade ----------------------------------------------------------------------


@pytest.fixture
def empty_database_url(backend: str, databases: DatabaseFactory, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (``databases`` only for its backend and skip rule)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fresh/{CLUSTER_ID}.db"
        return
    name = f"cf_empty_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def table_names(database_url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_db_upgrade_creates_the_schema_and_is_idempotent(
    empty_database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, empty_database_url)
    assert ok(clusterfed("db", "upgrade", "--config", str(config), cwd=tmp_path)) == (
        f"database for {CLUSTER_ID} is at head"
    )
    assert {"alembic_version", "users", "api_client_authorizations"} <= table_names(
        empty_database_url
    )
    ok(clusterfed("db", "upgrade", "--config", str(config), cwd=tmp_path))


# --- users and tokens ----------------------------------------------------------------


def test_users_create_prints_a_uuid_of_the_cluster_and_sets_flags(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    url = databases.new_url()
    config = str(write_config(tmp_path, url))
    plain = ok(
        clusterfed("users", "create", "--email", "p@x.example", "--config", config, cwd=tmp_path)
    )
    admin = ok(
        clusterfed(
            "users", "create", "--email", "a@x.example", "--admin", "--config", config, cwd=tmp_path
        )
    )
    chosen_uuid = f"{CLUSTER_ID}-tpzed-chosenbyoperato"
    active = ok(
        clusterfed(
            "users",
            "create",
            "--email",
            "c@x.example",
            "--active",
            "--username",
            "carol",
            "--uuid",
            chosen_uuid,
            "--config",
            config,
            cwd=tmp_path,
        )
    )
    for uuid in (plain, admin):
        assert is_uuid(uuid, type_="tpzed") and uuid.startswith(f"{CLUSTER_ID}-"), uuid
    assert active == chosen_uuid
    flags = {}
    for uuid in (plain, admin, active):
        user = read_user(url, uuid)
        assert user is not None
        flags[uuid] = (user.is_admin, user.is_active)
    assert flags == {plain: (False, False), admin: (True, True), active: (False, True)}
    carol = read_user(url, active)
    assert carol is not None and (carol.email, carol.username) == ("c@x.example", "carol")


def test_users_create_can_pre_create_a_remote_users_mirror(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    # SPEC 5: "a remote user that a local admin pre-created as active stays active".
    url = databases.new_url()
    config = str(write_config(tmp_path, url))
    remote_uuid = "c97qk-tpzed-precreatedmirr0"
    printed = ok(
        clusterfed(
            "users",
            "create",
            "--email",
            "r@c97qk.example",
            "--active",
            "--uuid",
            remote_uuid,
            "--config",
            config,
            cwd=tmp_path,
        )
    )
    mirror = read_user(url, remote_uuid)
    assert printed == remote_uuid and mirror is not None and mirror.is_active


def get(cluster: Cluster, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{cluster.base_url}{path}", headers={"Authorization": f"Bearer {token}"})


def test_tokens_created_by_the_cli_work_against_serve(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    server = ClusterProcess(cluster_config(CLUSTER_ID, databases.new_url()), tmp_path)
    config = str(server.config_path)
    user = ok(
        clusterfed(
            "users",
            "create",
            "--email",
            "t@x.example",
            "--active",
            "--config",
            config,
            cwd=tmp_path,
        )
    )
    token = ok(clusterfed("tokens", "create", "--user", user, "--config", config, cwd=tmp_path))
    scoped = ok(
        clusterfed(
            "tokens",
            "create",
            "--user",
            user,
            "--expires-in",
            "1h",
            "--scope",
            "GET /arvados/v1/collections/",
            "--scope",
            "GET /arvados/v1/groups/",
            "--config",
            config,
            cwd=tmp_path,
        )
    )
    for printed in (token, scoped):
        parsed = parse_token(printed)
        assert parsed.is_v2 and parsed.issuer == CLUSTER_ID
    with running(server) as cluster:
        response = get(cluster, USERS_CURRENT, token)
        assert response.status_code == 200
        assert response.json()["uuid"] == user
        assert get(cluster, TOKEN_CURRENT, token).json()["expires_at"] is None

        assert get(cluster, USERS_CURRENT, scoped).status_code == 403  # outside its scopes
        current = get(cluster, TOKEN_CURRENT, scoped)
        assert current.status_code == 200
        body = current.json()
        assert body["uuid"] == parse_token(scoped).uuid
        assert body["scopes"] == ["GET /arvados/v1/collections/", "GET /arvados/v1/groups/"]
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        expected = datetime.now(UTC) + timedelta(hours=1)
        assert abs(expires_at - expected) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("remote", "salted_secret"),
    [
        ("c97qk", "6c4c81062473350d6b113b60c12b300c7fb8a8cb"),
        ("zbbbb", "33b4da68bfe07da0281a7fdbc08b4f6f41c7bd98"),
    ],
)
def test_tokens_salt_prints_the_spec_test_vector(
    tmp_path: Path, remote: str, salted_secret: str
) -> None:
    printed = ok(clusterfed("tokens", "salt", VECTOR_TOKEN, "--remote", remote, cwd=tmp_path))
    assert printed == f"v2/qr1hi-gj3su-000000000000001/{salted_secret}"


# --- bad input: a clear message, a non-zero exit, no traceback -----------------------

SALTED_VECTOR = "v2/qr1hi-gj3su-000000000000001/6c4c81062473350d6b113b60c12b300c7fb8a8cb"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("tokens", "salt", VECTOR_TOKEN, "--remote", "C97QK"), "--remote"),
        (("tokens", "salt", VECTOR_TOKEN, "--remote", "c97qk1"), "--remote"),
        (("tokens", "salt", "v2/qr1hi-gj3su-0001/abc", "--remote", "c97qk"), "malformed"),
        (("tokens", "salt", "' OR 1=1 --", "--remote", "c97qk"), "token"),
        (("tokens", "salt", SALTED_VECTOR, "--remote", "zbbbb"), "already salted"),
        (
            (
                "tokens",
                "create",
                "--user",
                f"{CLUSTER_ID}-tpzed-000000000000000",
                "--expires-in",
                "0s",
            ),
            "--expires-in",
        ),
        (
            (
                "tokens",
                "create",
                "--user",
                f"{CLUSTER_ID}-tpzed-000000000000000",
                "--expires-in",
                "soon",
            ),
            "--expires-in",
        ),
    ],
    ids=[
        "uppercase remote",
        "long remote",
        "malformed v2 token",
        "sql as token",
        "already salted",
        "zero expiry",
        "bad expiry",
    ],
)
def test_bad_arguments_fail_cleanly(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    assert_clean_failure(clusterfed(*args, cwd=tmp_path), expected)


def test_token_for_unknown_user_fails_cleanly(databases: DatabaseFactory, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, databases.new_url()))
    unknown = f"{CLUSTER_ID}-tpzed-nosuchuser00000"
    result = clusterfed("tokens", "create", "--user", unknown, "--config", config, cwd=tmp_path)
    assert_clean_failure(result, unknown)
    assert result.stdout == ""


def test_unmigrated_database_fails_cleanly_pointing_at_db_upgrade(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/empty.db"))
    result = clusterfed(
        "users", "create", "--email", "x@x.example", "--config", config, cwd=tmp_path
    )
    assert_clean_failure(result, "db upgrade")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            {"RemoteClusters": {"c97qk": {"Host": "h", "Scheme": "gopher"}}},
            "Clusters.qr1hi.RemoteClusters.c97qk.Scheme",
        ),
        ({"Login": {"RemoteTokenRefresh": "a while"}}, "Clusters.qr1hi.Login.RemoteTokenRefresh"),
    ],
    ids=["bad scheme", "bad duration"],
)
def test_bad_config_file_fails_naming_file_and_key(
    tmp_path: Path, body: dict[str, object], key: str
) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///var/x.db", **body)
    result = clusterfed(
        "users", "create", "--email", "x@x.example", "--config", str(config), cwd=tmp_path
    )
    assert_clean_failure(result, str(config), key)


def test_config_path_comes_from_the_environment_without_flag(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "sqlite+aiosqlite:///var/x.db", Users={"NewUsersAreActive": "no"}
    )
    result = clusterfed(
        "tokens",
        "salt",
        VECTOR_TOKEN,
        "--remote",
        "c97qk",
        cwd=tmp_path,
        env=cli_env(**{CONFIG_ENV: str(config)}),
    )
    assert_clean_failure(result, str(config), "Clusters.qr1hi.Users.NewUsersAreActive")


def test_missing_config_file_fails_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yml"
    result = clusterfed("db", "upgrade", "--config", str(missing), cwd=tmp_path)
    assert_clean_failure(result, str(missing))


@pytest.mark.parametrize("argv", [("cache", "list"), ("users", "create", "--email", "a@x.example")])
def test_a_command_on_a_sqlite_file_that_is_not_there_says_so_and_makes_none(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///var/typo.db")
    result = clusterfed(*argv, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert_clean_failure(result, "no database at var/typo.db", "clusterfed db upgrade")
    assert not (tmp_path / "var").exists()


# --- `make run`: serve with no config at all ------------------------------------------


def test_serve_without_config_serves_a_sqlite_cluster_under_var(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    temp = tmp_path / "tmp"  # where serve makes its metrics directory
    temp.mkdir()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterfed", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=cli_env(TMPDIR=str(temp)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        response = None
        deadline = time.monotonic() + 30
        while response is None and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{USERS_CURRENT}", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, log_path.read_text()
        assert response.status_code == 401
        assert set(response.json()) == {"errors", "error_token"}
        assert (tmp_path / "var" / "zzzzz.db").is_file()
        # A ManagementToken was made on this first run, for the owner's eyes only, and it
        # opens the health check; the output says where it is, never what it is.
        token_file = tmp_path / "var" / "management-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        headers = {"Authorization": f"Bearer {token}"}
        ping = httpx.get(f"http://127.0.0.1:{port}/_health/ping", headers=headers, timeout=5)
        assert ping.status_code == 200, ping.text
        assert httpx.get(f"http://127.0.0.1:{port}/_health/ping", timeout=5).status_code == 401
        output = log_path.read_text()
        assert "var/management-token" in output and token not in output
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # serve exits the ordinary way (short commands skip the teardown): its exit handlers
    # ran and removed the metrics directory it had made.
    assert list(temp.glob("clusterfed-metrics-*")) == []
    # Later runs (and every worker) read the same token back.
    assert token_file.read_text().strip() == token
    config = subprocess.run(
        [
            sys.executable,
            "-c",
            "from clusterfed.config import load_config;print(load_config(None).management_token)",
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.stdout.strip() == token
