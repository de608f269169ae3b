"""The example cluster API server: ``create_app(config)`` builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.federation.config import ClusterConfig

from .bootstrap import ensure_builtin_users
from .database import Database
from .errors import install_error_handlers
from .routers import current, ops


def create_app(config: ClusterConfig) -> FastAPI:
    database = Database(config.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await database.start()
        try:
            async with database.sessionmaker() as session:
                await ensure_builtin_users(session, config.cluster_id)
            yield
        finally:
            await database.dispose()

    app = FastAPI(title=f"clusterfed {config.cluster_id}", lifespan=lifespan)
    app.state.config = config
    app.state.database = database
    app.state.metrics_registry = CollectorRegistry()
    install_error_handlers(app)
    app.include_router(current.router)
    app.include_router(ops.router)
    return app
