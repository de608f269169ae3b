"""FastAPI dependencies of the admin routers: the mounted federation and a session on
clusterfed's own tables. They read ``app.state.federation``, which ``mount`` sets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.service import Federation


async def get_federation(request: Request) -> Federation:
    federation = getattr(request.app.state, "federation", None)
    if not isinstance(federation, Federation):
        raise RuntimeError("app.state.federation must be set: mount clusterfed with mount()")
    return federation


FederationDep = Annotated[Federation, Depends(get_federation)]


async def get_session(federation: FederationDep) -> AsyncIterator[AsyncSession]:
    """Commits when the handler succeeds, rolls back when it raises."""
    async with federation.database.transaction() as session:
        yield session


# scope="function": commit before the response is sent (see the example server's deps).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
