"""``mount``: the one call that federates a host's FastAPI or Starlette app (docs/mounting.md).

    from clusterfed import ModelUserTable, load_config, mount

    app = FastAPI()
    federation = mount(app, load_config("cluster.yml"), users=ModelUserTable(User))

It adds the middleware (and, unless ``router=False``, the federated router inside it;
outside both, ``ArvadosRequests``, which reads requests as Arvados software sends them),
includes the admin API, the admin page and the health/metrics routes (unless
``admin=False``), and joins the host's lifespan: clusterfed's database and background
work start before the host's own startup runs and stop after its shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from .config import ClusterConfig
from .errors import FederationError
from .routing.login_forwarding import LoginClusterRouter
from .routing.router import FederatedRouter
from .service import Federation, LocalCredentials
from .storage.database import Database
from .storage.store import SqlFederationStore
from .storage.users import UserTable
from .trust import notices
from .trust.login_cluster import KnowsCredential
from .trust.middleware import FederationMiddleware
from .trust.revocation import RevocationStore
from .wire import ArvadosRequests


def mount(
    app: Starlette,
    config: ClusterConfig,
    *,
    users: UserTable,
    router: bool = True,
    admin: bool = True,
    local_credentials: LocalCredentials | None = None,
    revocations: RevocationStore | None = None,
    knows_credential: KnowsCredential | None = None,
    database: Database | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Federation:
    """Federate ``app``; returns the :class:`Federation` (also at ``app.state.federation``).

    ``users`` maps clusterfed onto the host's users table. ``local_credentials`` tells
    the admin API and page whose a local credential is (without it only the
    ManagementToken and login-cluster admins are admins). ``revocations`` is the notice
    outbox of a host that issues tokens (docs/protocol.md#revocation); every host receives notices.
    ``database`` shares the host's started :class:`Database`; by default clusterfed
    opens its own on ``Database.URL``.
    ``knows_credential`` says whether a credential that is not a v2 token is the host's
    own; with ``Login.LoginCluster`` set to another cluster, the ones it does not know
    are validated there (docs/protocol.md#login-cluster), and without it they stay the host's
    business.
    """
    database = database or Database(config.database_url)
    federation = Federation(
        config,
        SqlFederationStore(database, users),
        database=database,
        local_credentials=local_credentials,
        revocations=revocations,
        knows_credential=knows_credential,
        transport=transport,
    )
    app.state.federation = federation
    app.include_router(notices.router)  # revocation notices from issuers
    # clusterfed's routes and dependencies raise FederationError; it answers in
    # clusterfed's error body in any host (a host's own handler for it, added later, wins).
    if FederationError not in app.exception_handlers:
        app.add_exception_handler(FederationError, _federation_error)
    if admin:
        from .admin import api, ops, page

        for admin_router in (api.router, page.router, ops.router):
            app.include_router(admin_router)
    # Added first, so it runs inside FederationMiddleware: foreign tokens are validated
    # and scope-checked before anything is forwarded on their behalf.
    if router:
        if federation.login.is_satellite:
            # Innermost: what a satellite defers to its login cluster.
            app.add_middleware(LoginClusterRouter, federation=federation)
        app.add_middleware(FederatedRouter, federation=federation)
    app.add_middleware(FederationMiddleware, federation=federation)
    # Outside both: they see every request in one shape, however the client sent it
    # (query, form or JSON body, method override, `Bearer -`).
    app.add_middleware(ArvadosRequests)
    _join_lifespan(app, federation, database)
    return federation


async def _federation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, FederationError)
    return exc.response()


def _join_lifespan(app: Starlette, federation: Federation, database: Database) -> None:
    host_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        # A database the host already started stays the host's to dispose.
        started_here = not database.started
        if started_here:
            await database.start()
        try:
            await federation.start()
            try:
                async with host_lifespan(target) as state:
                    yield state
            finally:
                await federation.aclose()
        finally:
            if started_here:
                await database.dispose()

    app.router.lifespan_context = lifespan
