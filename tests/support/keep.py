"""Clusters with Keep for tests: TLS, a signing key (from SystemRootToken), one volume."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from clusterfed.server.testing import Cluster, cluster_config

from tests.support.tls import self_signed

ROOT_TOKEN = "keepsystemroottoken4tests0123456789"
TTL = 3600


@dataclass
class KeepCluster:
    cluster: Cluster
    volume: Path

    def url(self, locator: str) -> str:
        return f"{self.cluster.base_url}/{locator}"

    async def put(self, token: str, data: bytes) -> str:
        """Stores ``data``; returns the signed locator the cluster answered."""
        async with httpx.AsyncClient(verify=False) as client:
            answer = await client.put(
                self.url(hashlib.md5(data).hexdigest()),
                content=data,
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 200, answer.text
        return answer.text.strip()


def keep_config(
    cluster_id: str, database_url: str, workdir: Path, **collections: object
) -> dict[str, Any]:
    """A cluster serving HTTPS with a self-signed certificate, blocks under workdir/keep."""
    cert, key = self_signed(workdir)
    config = cluster_config(cluster_id, database_url, system_root_token=ROOT_TOKEN)
    body = config["Clusters"][cluster_id]
    body["TLS"] = {"Certificate": str(cert), "Key": str(key)}
    body["Collections"] = {"BlobSigningTTL": f"{TTL}s", **collections}
    body["Volumes"] = {
        f"{cluster_id}-nyw5e-000000000000000": {
            "Driver": "Directory",
            "DriverParameters": {"Root": str(workdir / "keep")},
        }
    }
    return config
