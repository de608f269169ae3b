"""The example cluster API server: ``create_app(config)`` builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.federation import FederatedRouter, Federation, FederationMiddleware
from app.federation.config import ClusterConfig

from .body_limit import BodyLimit
from .bootstrap import ensure_builtin_users
from .database import Database
from .errors import install_error_handlers
from .federation_store import SqlFederationStore
from .revocation_store import SqlRevocationStore
from .routers import (
    admin_page,
    current,
    discovery,
    objects,
    ops,
    permission_checks,
    revocations,
    token_cache,
)


def create_app(config: ClusterConfig) -> FastAPI:
    database = Database(config.database_url)
    federation = Federation(
        config, SqlFederationStore(database), revocations=SqlRevocationStore(database)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await database.start()
        try:
            async with database.sessionmaker() as session:
                await ensure_builtin_users(session, config.cluster_id)
            await federation.start()
            yield
        finally:
            await federation.aclose()
            await database.dispose()

    app = FastAPI(title=f"clusterfed {config.cluster_id}", lifespan=lifespan)
    app.state.config = config
    app.state.database = database
    app.state.federation = federation
    app.state.metrics_registry = federation.metrics.registry
    install_error_handlers(app)
    app.include_router(current.router)
    app.include_router(discovery.router)
    app.include_router(ops.router)
    app.include_router(token_cache.router)
    app.include_router(admin_page.router)
    app.include_router(permission_checks.router)
    app.include_router(revocations.router)
    for router in objects.routers:
        app.include_router(router)
    # Added first, so it runs inside FederationMiddleware: foreign tokens are validated
    # and scope-checked before anything is forwarded on their behalf (SPEC 3.6).
    app.add_middleware(FederatedRouter, federation=federation)
    app.add_middleware(FederationMiddleware, federation=federation)
    # Outermost of ours: no body is read past the cap, before or after authentication.
    app.add_middleware(BodyLimit)
    return app
