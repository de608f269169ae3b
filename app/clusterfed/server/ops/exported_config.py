"""``GET /arvados/v1/config``: the exported configuration, for anyone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from clusterfed.exported import CONFIG_PATH, exported_config

from ..deps import ConfigDep

router = APIRouter(tags=["discovery"])


@router.get(CONFIG_PATH)
async def config_export(config: ConfigDep) -> dict[str, Any]:
    return exported_config(config)
