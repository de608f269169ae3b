"""Entry point for uvicorn workers: the config path comes from $CLUSTERFED_CONFIG."""

from __future__ import annotations

from fastapi import FastAPI

from clusterfed.config import load_config, resolve_config_path

from .app import create_app


def create_app_from_env() -> FastAPI:
    return create_app(load_config(resolve_config_path(None)))
