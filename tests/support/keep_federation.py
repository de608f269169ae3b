"""Two federated clusters that store blocks, over HTTPS, for the Arvados tools.

qr1hi and c97qk each serve TLS with a self-signed certificate, sign blocks with a key of
their own (derived from their own SystemRootToken), keep blocks in a directory of their
own, and list each other as a ``Proxy`` remote with ``Insecure: true``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from clusterfed.server.testing import Cluster, ClusterProcess, cluster_config, remote_entry, running

from tests.support.databases import DatabaseFactory
from tests.support.tls import self_signed

CLUSTERS = ("qr1hi", "c97qk")


@dataclass
class KeepNode:
    cluster: Cluster
    volume: Path
    process: ClusterProcess

    def stored(self, md5: str) -> bool:
        """Whether a block with this md5 is on this cluster's volume (any layout)."""
        return any(path.name == md5 for path in self.volume.rglob(md5))


def keep_cluster_config(
    cluster_id: str,
    database_url: str,
    workdir: Path,
    cert: Path,
    key: Path,
    *,
    remotes: dict[str, dict[str, Any]],
    federation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = cluster_config(
        cluster_id,
        database_url,
        remotes=remotes,
        federation=federation,
        system_root_token=f"{cluster_id}-root-token-for-keep-federation-tests",
    )
    body = config["Clusters"][cluster_id]
    body["TLS"] = {"Certificate": str(cert), "Key": str(key)}
    body["Volumes"] = {
        f"{cluster_id}-nyw5e-000000000000000": {
            "Driver": "Directory",
            "DriverParameters": {"Root": str(workdir / f"{cluster_id}-keep")},
        }
    }
    return config


@contextlib.contextmanager
def keep_pair(databases: DatabaseFactory, workdir: Path) -> Iterator[dict[str, KeepNode]]:
    cert, key = self_signed(workdir)
    procs = {
        cid: ClusterProcess(cluster_config(cid, databases.new_url(cid)), workdir)
        for cid in CLUSTERS
    }
    for cid, proc in procs.items():
        (other,) = (o for o in CLUSTERS if o != cid)
        remote = remote_entry(
            procs[other].port, Scheme="https", Insecure=True, Proxy=True, ActivateUsers=True
        )
        config = keep_cluster_config(
            cid, proc.cluster.database_url, workdir, cert, key, remotes={other: remote}
        )
        proc.config_path.write_text(yaml.safe_dump(config))
        proc.cluster.scheme = "https"
    with contextlib.ExitStack() as stack:
        yield {
            cid: KeepNode(stack.enter_context(running(proc)), workdir / f"{cid}-keep", proc)
            for cid, proc in procs.items()
        }


def tool(
    name: str, *args: str, cluster: Cluster, token: str, home: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Runs one of the SDK's command-line tools (arv-put, arv-get, ...) against ``cluster``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ARVADOS_")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "ARVADOS_API_HOST": cluster.host,
        "ARVADOS_API_TOKEN": token,
        "ARVADOS_API_HOST_INSECURE": "1",
    }
    executable = Path(sys.executable).parent / name
    return subprocess.run(
        [str(executable), *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        cwd=home,
    )


def write_cluster_settings(home: Path, cluster: Cluster, token: str) -> None:
    """``~/.config/arvados/<id>.conf``: how ``arv-copy --src/--dst <id>`` reaches a cluster."""
    directory = home / ".config" / "arvados"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{cluster.cluster_id}.conf").write_text(
        f"ARVADOS_API_HOST={cluster.host}\nARVADOS_API_TOKEN={token}\nARVADOS_API_HOST_INSECURE=1\n"
    )
