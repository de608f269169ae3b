"""Health and metrics, both behind the ManagementToken (docs/operating.md#health-and-metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clusterfed.credentials import is_management_token
from clusterfed.errors import Unauthorized
from clusterfed.service import Federation

from .deps import FederationDep
from .metrics import refresh_l2_metrics

router = APIRouter(tags=["operations"])


def _require_management_token(request: Request, federation: Federation) -> None:
    management_token = federation.config.management_token
    if not management_token:
        raise Unauthorized("ManagementToken is not configured on this cluster")
    if not is_management_token(request.headers.get("authorization"), management_token):
        raise Unauthorized("this endpoint needs the ManagementToken")


@router.get("/_health/ping")
async def ping(request: Request, federation: FederationDep) -> dict[str, str]:
    _require_management_token(request, federation)
    return {"health": "OK"}


@router.get("/metrics")
async def metrics(request: Request, federation: FederationDep) -> Response:
    _require_management_token(request, federation)
    await refresh_l2_metrics(federation)
    registry = federation.metrics.scrape_registry()  # every worker's, under serve --workers N
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
