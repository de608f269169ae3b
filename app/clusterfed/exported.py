"""What a cluster tells anyone about its configuration: ``GET /arvados/v1/config``.

Arvados clients and peers read it without credentials: the cluster's ID, its remotes
(how to reach them), its login cluster and how many copies of a block it keeps. Nothing
else leaves, and never a secret (the blob signing key included): the export is built
from an allow-list, not by removing what looks secret.
"""

from __future__ import annotations

from typing import Any

from .config import ClusterConfig

CONFIG_PATH = "/arvados/v1/config"


def exported_config(config: ClusterConfig) -> dict[str, Any]:
    return {
        "ClusterID": config.cluster_id,
        "RemoteClusters": {
            cluster_id: {
                "Host": remote.host,
                "Proxy": remote.proxy,
                "Scheme": remote.scheme,
                "Insecure": remote.insecure,
                "ActivateUsers": remote.activate_users,
            }
            for cluster_id, remote in sorted(config.remote_clusters.items())
        },
        "Login": {"LoginCluster": config.login_cluster},
        # arv-copy asks for this many copies of each block: one a volume, so never
        # more than the cluster can make.
        "Collections": {"DefaultReplication": default_replication(config)},
    }


def default_replication(config: ClusterConfig) -> int:
    """How many copies of a block this cluster makes: one for each volume."""
    return len(config.keep_volumes)


def remote_hosts(config: ClusterConfig) -> dict[str, str]:
    """The discovery document's ``remoteHosts``: ``{cluster ID: host}``."""
    remotes = config.remote_clusters
    return {cluster_id: remotes[cluster_id].host for cluster_id in sorted(remotes)}
