"""``serve`` over TLS stops promptly on SIGTERM, however many idle clients stay connected.

An idle keep-alive connection has nothing in flight, but closing TLS politely waits for
the client's close_notify, which an idle client never sends: uvicorn then waited for
each such connection (24 s here) before the process ended.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from clusterfed.server.testing import ClusterProcess, cluster_config

from tests.support.databases import DatabaseFactory
from tests.support.tls import self_signed

pytestmark = pytest.mark.server


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_with_idle_keep_alive_clients_stops_within_2s(
    databases: DatabaseFactory, workdir: Path, workers: int
) -> None:
    cert, key = self_signed(workdir)
    config = cluster_config("qr1hi", databases.new_url("qr1hi"))
    config["Clusters"]["qr1hi"]["TLS"] = {"Certificate": str(cert), "Key": str(key)}
    server = ClusterProcess(config, workdir, workers=workers)
    cluster = server.start()
    clients = [httpx.Client(verify=False) for _ in range(4)]
    try:
        for client in clients:
            answer = client.get(f"{cluster.base_url}/arvados/v1/config")
            assert answer.status_code == 200  # each client now holds an idle connection
        assert server.proc is not None
        started = time.monotonic()
        server.proc.terminate()
        server.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
        for client in clients:
            client.close()
    assert elapsed < 2.0, f"took {elapsed:.1f}s to stop"
