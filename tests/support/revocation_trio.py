"""Three real clusters for the revocation tests: qr1hi issues, c97qk and zbbbb accept.

Every cluster lists the other two in ``RemoteClusters`` (qr1hi must, to send notices);
the acceptors trust a validation for 300 s, so only a notice can end a token there
before then. Each process keeps its port and database across ``restart``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    remote_entry,
    running_together,
)

from tests.support.databases import DatabaseFactory

CLUSTERS = ("qr1hi", "c97qk", "zbbbb")
USERS_CURRENT = "/arvados/v1/users/current"


@dataclass
class Trio:
    processes: dict[str, ClusterProcess]

    def __getitem__(self, cluster_id: str) -> Cluster:
        return self.processes[cluster_id].cluster

    def stop(self, cluster_id: str) -> None:
        self.processes[cluster_id].stop()

    def start(self, cluster_id: str) -> Cluster:
        return self.processes[cluster_id].start()

    def log(self, cluster_id: str) -> str:
        return self.processes[cluster_id].log()


@contextlib.contextmanager
def revocation_trio(
    databases: DatabaseFactory,
    workdir: Path,
    *,
    workers: dict[str, int] | None = None,
    federation: dict[str, Any] | None = None,
) -> Iterator[Trio]:
    workers = workers or {}
    processes = {
        cluster_id: ClusterProcess(
            cluster_config(cluster_id, databases.new_url(cluster_id)),
            workdir,
            workers=workers.get(cluster_id, 1),
        )
        for cluster_id in CLUSTERS
    }
    # Ports are chosen when a process is made; now every config can name the others.
    for cluster_id, process in processes.items():
        remotes = {
            other: remote_entry(peer.port, ActivateUsers=True)
            for other, peer in processes.items()
            if other != cluster_id
        }
        config = cluster_config(
            cluster_id,
            process.cluster.database_url,
            remotes=remotes,
            login={"RemoteTokenRefresh": "300s"},
            federation=federation,
        )
        process.config_path.write_text(yaml.safe_dump(config))
    # All three start at once: none needs the others up to start.
    with running_together(*processes.values()):
        yield Trio(processes)


def status(cluster: Cluster, token: str, path: str = USERS_CURRENT) -> int:
    # A new connection per call, so that successive calls reach different workers.
    return httpx.get(
        f"{cluster.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def wait_until(check: Callable[[], bool], *, timeout: float, every: float = 0.02) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed < timeout, f"not within {timeout}s"
        time.sleep(every)
    return time.monotonic() - started


def revoke(cluster: Cluster, uuid: str, token: str) -> httpx.Response:
    return httpx.delete(
        f"{cluster.base_url}/arvados/v1/api_client_authorizations/{uuid}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
