"""Entry point for uvicorn workers: the config path comes from $CLUSTERFED_CONFIG."""

from __future__ import annotations

from fastapi import FastAPI

from clusterfed.config import load_config, resolve_config_path

from .app import create_app
from .serving import freeze_startup_objects


def create_app_from_env() -> FastAPI:
    app = create_app(load_config(resolve_config_path(None)))
    freeze_startup_objects()  # each worker process builds its app once: see serving.py
    return app
