"""FastAPI dependencies: one session per request, the config, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.config import ClusterConfig
from clusterfed.errors import Unauthorized

from .users.auth import Caller, resolve_caller


# Dependencies are async even when they do no I/O: FastAPI runs a plain ``def``
# dependency in a worker thread, a thread hop per request for a dictionary lookup.
async def get_config(request: Request) -> ClusterConfig:
    return request.app.state.config


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Commits when the handler succeeds, rolls back when it raises."""
    async with request.app.state.database.transaction() as session:
        yield session


ConfigDep = Annotated[ClusterConfig, Depends(get_config)]
# scope="function": commit before the response is sent. FastAPI's default ("request")
# commits afterwards, so a client's next request could miss its own write, and a failed
# commit would follow a 200.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_optional_caller(
    request: Request, session: SessionDep, config: ConfigDep
) -> Caller | None:
    return await resolve_caller(request, session, config)


async def get_caller(caller: Annotated[Caller | None, Depends(get_optional_caller)]) -> Caller:
    if caller is None:
        raise Unauthorized("this request needs a token (Authorization: Bearer <token>)")
    return caller


OptionalCallerDep = Annotated[Caller | None, Depends(get_optional_caller)]
CallerDep = Annotated[Caller, Depends(get_caller)]
