"""Cache rules for credentials a satellite validates at its login cluster (SPEC 3.8, 4).

Real processes: qr1hi (the login cluster) and c97qk (a satellite). A bare secret is
validated once for every worker of the satellite (L2 is shared, found by the digest of
the credential), and with ``StaleIfError`` it is still served while qr1hi is down.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from clusterfed.server.testing import (
    ClusterProcess,
    cluster_config,
    remote_entry,
    running_together,
)
from clusterfed.tokens import parse_token

from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import call

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

LOGIN = "qr1hi"
VALIDATION = " /arvados/v1/api_client_authorizations/current?remote=c97qk HTTP/1.1"


def login_config(databases: DatabaseFactory) -> dict[str, object]:
    return cluster_config(
        "qr1hi",
        databases.new_url("qr1hi"),
        login={"LoginCluster": LOGIN},
        system_root_token="q" * 40,
    )


def satellite_config(databases: DatabaseFactory, port: int, **federation: str) -> dict[str, object]:
    return cluster_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(port)},
        login={"LoginCluster": LOGIN, "RemoteTokenRefresh": federation.pop("refresh", "1h")},
        federation=federation or None,
        system_root_token="c" * 40,
    )


def wait_count(process: ClusterProcess, needle: str, expected: int) -> int:
    deadline = time.monotonic() + 5
    while (found := process.log().count(needle)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_every_worker_of_a_satellite_shares_one_validation(
    databases: DatabaseFactory, workdir: Path
) -> None:
    login_process = ClusterProcess(login_config(databases), workdir)
    config = satellite_config(databases, login_process.port)
    satellite = ClusterProcess(config, workdir, workers=2)
    # Both start at once: the satellite does not need its login cluster up to start.
    with running_together(login_process, satellite) as (qr1hi, c97qk):
        _, token = asyncio.run(qr1hi.new_user())
        secret = parse_token(token).secret
        # A new connection per call: the two workers take turns.
        for _ in range(10):
            assert call(c97qk, secret).status_code == 200
        assert wait_count(login_process, VALIDATION, 1) == 1
        time.sleep(0.3)
        assert login_process.log().count(VALIDATION) == 1


def test_stale_if_error_serves_a_known_credential_while_the_login_cluster_is_down(
    databases: DatabaseFactory, workdir: Path
) -> None:
    login = ClusterProcess(login_config(databases), workdir)
    config = satellite_config(databases, login.port, refresh="1s", StaleIfError="1h")
    # Both start at once: the satellite does not need its login cluster up to start.
    with running_together(login, ClusterProcess(config, workdir)) as (qr1hi, c97qk):
        _, token = asyncio.run(qr1hi.new_user())
        secret = parse_token(token).secret
        assert call(c97qk, secret).status_code == 200
        login.stop()
        time.sleep(1.2)  # past RemoteTokenRefresh: the entry is due for a refresh
        assert call(c97qk, secret).status_code == 200  # served stale
        # A credential never seen cannot be served: qr1hi is unreachable (502).
        assert call(c97qk, secrets.token_hex(25)).status_code == 502
