"""How clients find the block server: ``GET /arvados/v1/keep_services/accessible``.

One service of type ``disk``: this same server, at ``Services.Keepstore.ExternalURL``,
else ``Services.Controller.ExternalURL``, else the address the client used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request

from clusterfed.config import ClusterConfig
from clusterfed.tokens import system_user_uuid

from ..deps import ConfigDep, OptionalCallerDep

ACCESSIBLE_PATH = "/arvados/v1/keep_services/accessible"
EPOCH = "2020-01-01T00:00:00.000000000Z"

router = APIRouter(tags=["keep"])


def service_url(config: ClusterConfig, request_base_url: str) -> str:
    return config.keepstore_url or config.controller_url or request_base_url


def keep_service_record(config: ClusterConfig, url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    ssl = parts.scheme == "https"
    return {
        "kind": "arvados#keepService",
        "uuid": f"{config.cluster_id}-bi6l4-000000000000000",
        "owner_uuid": system_user_uuid(config.cluster_id),
        "created_at": EPOCH,
        "modified_at": EPOCH,
        "service_host": parts.hostname or "",
        "service_port": parts.port or (443 if ssl else 80),
        "service_ssl_flag": ssl,
        "service_type": "disk",
        "read_only": False,
    }


@router.get(ACCESSIBLE_PATH)
async def accessible(request: Request, config: ConfigDep, _: OptionalCallerDep) -> dict[str, Any]:
    record = keep_service_record(config, service_url(config, str(request.base_url)))
    return {
        "kind": "arvados#keepServiceList",
        "etag": "",
        "self_link": "",
        "offset": 0,
        "limit": 1,
        "items_available": 1,
        "items": [record],
    }
