"""FastAPI dependencies: one session per request, the config, the caller, a list's
parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.config import ClusterConfig
from clusterfed.errors import Unauthorized

from .objects.listing import ListParams, parse_params, wants_count
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


# The routers use SQLAlchemy's select(): the parameter is select_ in code, select on the wire.
SelectParam = Annotated[str | None, Query(alias="select")]


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A list's parameters, checked: the page (filters, order, limit, offset), whether to
    count, and ``select`` as sent (each endpoint checks it against what it can select)."""

    params: ListParams
    counted: bool
    select: str | None


async def get_list_request(
    filters: Annotated[str | None, Query()] = None,
    order: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
    offset: Annotated[str | None, Query()] = None,
    select_: SelectParam = None,
    count: Annotated[str | None, Query()] = None,
) -> ListRequest:
    params = parse_params(filters=filters, order=order, limit=limit, offset=offset)
    return ListRequest(params, wants_count(count), select_)


ListRequestDep = Annotated[ListRequest, Depends(get_list_request)]
