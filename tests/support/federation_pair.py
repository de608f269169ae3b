"""Two real clusters for the token-cache admin tests, plus what those tests observe.

qr1hi issues tokens; c97qk (optionally with several workers) accepts them. The
observations are deliberately from outside c97qk's cache: the issuer's own access log
says when it was asked, and c97qk's ``/metrics`` says how often it validated.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    ClusterProcess,
    issuer_and_acceptor_processes,
    running_together,
)
from clusterfed.storage.models import FederationTokenCache
from clusterfed.tokens import parse_token
from sqlalchemy import delete, select

from tests.support import REPO_ROOT
from tests.support.databases import DatabaseFactory

USERS_CURRENT = "/arvados/v1/users/current"
ISSUER_TOKEN_CALL = "/arvados/v1/api_client_authorizations/current?remote=c97qk"
MANAGEMENT = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}


@dataclass
class Pair:
    qr1hi: Cluster
    c97qk: Cluster
    issuer_process: ClusterProcess
    process: ClusterProcess

    def issuer_token_calls(self) -> int:
        """How many times the issuer was asked about a token by c97qk (its access log)."""
        return self.issuer_process.log().count(ISSUER_TOKEN_CALL)

    def wait_issuer_token_calls(self, at_least: int, timeout: float = 5.0) -> int:
        # The access log is written by the issuer process; give it a moment to flush.
        deadline = time.monotonic() + timeout
        while (calls := self.issuer_token_calls()) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls

    def validations(self, outcome: str = "accepted") -> float:
        text = httpx.get(f"{self.c97qk.base_url}/metrics", headers=MANAGEMENT).text
        return metric(text, "clusterfed_validations_total", issuer="qr1hi", outcome=outcome)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.c97qk, *args)


@contextlib.contextmanager
def federation_pair(
    databases: DatabaseFactory,
    workdir: Path,
    *,
    workers: int = 1,
    refresh: str = "1h",
    federation: dict[str, Any] | None = None,
) -> Iterator[Pair]:
    issuer, process = issuer_and_acceptor_processes(
        databases,
        workdir,
        workers=workers,
        login={"RemoteTokenRefresh": refresh},
        federation=federation,
    )
    # Both start at once: neither needs the other up to start.
    with running_together(issuer, process) as (qr1hi, c97qk):
        _assert_ours(process, issuer)
        yield Pair(qr1hi, c97qk, issuer, process)


def _assert_ours(process: ClusterProcess, issuer: ClusterProcess) -> None:
    """Fail loudly if the port answered for a server other than the one just started.

    Other test runs on the machine pick free ports the same way and use the same
    ManagementToken; a port taken between choosing and binding would otherwise make
    the health check pass against a stranger, and the test fail much later.
    """
    for server in (issuer, process):
        assert server.proc is not None and server.proc.poll() is None, server.log()[-2000:]
    remotes = httpx.get(
        f"{process.cluster.base_url}/federation/v1/remote_clusters", headers=MANAGEMENT
    )
    hosts = [item["host"] for item in remotes.json()["items"]] if remotes.is_success else []
    assert hosts == [issuer.cluster.host], f"port {process.port} is not our c97qk: {remotes.text}"


def call(cluster: Cluster, token: str, path: str = USERS_CURRENT) -> httpx.Response:
    # A new connection per call, so that successive calls reach different workers.
    return httpx.get(f"{cluster.base_url}{path}", headers={"Authorization": f"Bearer {token}"})


def run_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    assert cluster.config_path is not None
    return subprocess.run(
        [sys.executable, "-m", "clusterfed", *args, "--config", str(cluster.config_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def revoke(issuer: Cluster, token: str) -> None:
    """Delete the token at its issuer: from now on only a cache can accept it."""
    async with issuer.session() as session:
        await session.execute(
            delete(ApiClientAuthorization).where(
                ApiClientAuthorization.uuid == parse_token(token).uuid
            )
        )


async def cached_digest(cluster: Cluster, token_uuid: str) -> str | None:
    async with cluster.session() as session:
        return await session.scalar(
            select(FederationTokenCache.secret_digest).where(
                FederationTokenCache.token_uuid == token_uuid
            )
        )


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def get(cluster: Cluster, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{cluster.base_url}{path}", **kwargs)


def post(cluster: Cluster, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{cluster.base_url}{path}", **kwargs)


def wait_for_log(process: ClusterProcess, needle: str, timeout: float = 5.0) -> str:
    """The process log once it contains ``needle`` (log lines are flushed asynchronously)."""
    deadline = time.monotonic() + timeout
    while needle not in (log := process.log()):
        assert time.monotonic() < deadline, f"{needle!r} never appeared in the log"
        time.sleep(0.05)
    return log
