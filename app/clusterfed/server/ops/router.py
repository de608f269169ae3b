"""SPEC 3.5: health and metrics, both behind the ManagementToken."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.federation.errors import Unauthorized

from ..auth import is_management_token
from ..deps import ConfigDep
from ..l2_metrics import refresh_l2_metrics

router = APIRouter(tags=["operations"])


def _require_management_token(request: Request, config: ConfigDep) -> None:
    if not config.management_token:
        raise Unauthorized("ManagementToken is not configured on this cluster")
    if not is_management_token(request, config):
        raise Unauthorized("this endpoint needs the ManagementToken")


@router.get("/_health/ping")
async def ping(request: Request, config: ConfigDep) -> dict[str, str]:
    _require_management_token(request, config)
    return {"health": "OK"}


@router.get("/metrics")
async def metrics(request: Request, config: ConfigDep) -> Response:
    _require_management_token(request, config)
    await refresh_l2_metrics(request.app)
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
