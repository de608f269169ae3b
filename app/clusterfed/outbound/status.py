"""What this process knows of each remote cluster's health, for the admin API and page:
read from the circuit breakers the remote client keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .remote import RemoteClient


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    cluster_id: str
    host: str
    reachable: bool | None  # None: never contacted by this process
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    circuit_state: str


def remote_statuses(remote: RemoteClient) -> list[RemoteStatus]:
    statuses = []
    for cluster_id, cluster in remote.clusters.items():
        circuit = remote.circuits[cluster_id]
        if circuit.last_success is None and circuit.last_error_at is None:
            reachable = None
        elif circuit.last_error_at is None or circuit.last_success is None:
            reachable = circuit.last_error_at is None
        else:
            reachable = circuit.last_success >= circuit.last_error_at
        statuses.append(
            RemoteStatus(
                cluster_id=cluster_id,
                host=cluster.host,
                reachable=reachable,
                last_success=circuit.last_success,
                last_error=circuit.last_error,
                last_error_at=circuit.last_error_at,
                circuit_state=circuit.state,
            )
        )
    return statuses
