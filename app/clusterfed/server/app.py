"""The example cluster API server: ``create_app(config)`` builds it.

It is a host like any other: its own tables (users, tokens, objects), its own routes,
and clusterfed mounted with one call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from clusterfed.config import ClusterConfig
from clusterfed.mount import mount
from clusterfed.storage.database import Database

from .body_limit import BodyLimit
from .errors import install_error_handlers
from .head_as_get import HeadAsGet
from .keep import blocks as keep_blocks
from .keep import remote as keep_remote
from .keep import services as keep_services
from .objects import permission_checks
from .objects import router as objects
from .ops import discovery, exported_config
from .trailing_slash import StripTrailingSlash
from .users import current, revocations, tokens_router, users_router
from .users.auth import LocalCredentials
from .users.bootstrap import ensure_builtin_users
from .users.revocation_store import SqlRevocationStore
from .users.service import users_table
from .users.tokens import secret_is_known


def create_app(
    config: ClusterConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    database = Database(config.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # mount's lifespan wraps this one: it starts the database before and disposes of
        # it after clusterfed's background work has stopped. Disposing of it here, first,
        # left that work (a purge poll mid-query) holding a connection no pool would close.
        async with database.sessionmaker() as session:
            await ensure_builtin_users(session, config.cluster_id)
        yield

    # No trailing-slash redirects (their Location echoed the Host header): StripTrailingSlash.
    app = FastAPI(
        title=f"clusterfed {config.cluster_id}", lifespan=lifespan, redirect_slashes=False
    )
    app.state.config = config
    app.state.database = database
    app.state.keep = keep_blocks.KeepService.from_config(config)
    # +R<cluster>- locators: read from that cluster by the federation (after mount below).
    app.state.keep.remote_reader = keep_remote.read_remote_block
    install_error_handlers(app)
    app.include_router(current.router)
    # After current.router: /users/current is not a user UUID.
    app.include_router(users_router.router)
    app.include_router(tokens_router.router)
    app.include_router(discovery.router)
    app.include_router(exported_config.router)
    app.include_router(permission_checks.router)
    app.include_router(revocations.router)
    app.include_router(keep_services.router)
    for router in objects.routers:
        app.include_router(router)
    # Last: the block server answers at the root, for paths no other route has.
    app.include_router(keep_blocks.router)

    async def knows_credential(credential: str) -> bool:
        async with database.sessionmaker() as session:
            return await secret_is_known(session, secret=credential)

    federation = mount(
        app,
        config,
        users=users_table,
        database=database,
        local_credentials=LocalCredentials(),
        revocations=SqlRevocationStore(database),
        knows_credential=knows_credential,
        transport=transport,
    )
    app.state.metrics_registry = federation.metrics.registry
    # Blocks signed here that a collection saved on another cluster names go there.
    federation.local_blocks = app.state.keep.store
    # Outermost of ours: no body is read past the cap, before or after authentication.
    app.add_middleware(BodyLimit, limit_for=keep_blocks.block_body_limit)
    # Outermost: every layer sees a path without a trailing slash, and a HEAD as a GET.
    app.add_middleware(StripTrailingSlash)
    app.add_middleware(HeadAsGet)
    return app
