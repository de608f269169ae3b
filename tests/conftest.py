"""Shared fixtures. Every test that touches a database runs on SQLite and on PostgreSQL.

A run without PostgreSQL skips the PostgreSQL half with the reason; under CI
(``CI=true``) a missing PostgreSQL is an error instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import hypothesis  # noqa: F401  (imported early: a late import in pytest's summary hook trips a CPython 3.11 AST bug)
import pytest
from fastapi import FastAPI

from tests.support.databases import DatabaseFactory, postgres_unavailable_reason

BACKENDS = ("sqlite", "postgresql")
_PG_REASON: list[str | None] = []


def _postgres_reason() -> str | None:
    if not _PG_REASON:
        _PG_REASON.append(postgres_unavailable_reason())
    return _PG_REASON[0]


@pytest.fixture(scope="session")
def database_factories(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DatabaseFactory]]:
    factories: dict[str, DatabaseFactory] = {}
    yield factories
    for factory in factories.values():
        factory.close()


def _factory(
    backend: str, factories: dict[str, DatabaseFactory], tmp: pytest.TempPathFactory
) -> DatabaseFactory:
    if backend == "postgresql":
        reason = _postgres_reason()
        if reason:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI must run the PostgreSQL tests, but: {reason}")
            pytest.skip(reason)
    if backend not in factories:
        factories[backend] = DatabaseFactory(backend, tmp.mktemp(f"db-{backend}"))
    return factories[backend]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def databases(
    backend: str,
    database_factories: dict[str, DatabaseFactory],
    tmp_path_factory: pytest.TempPathFactory,
) -> DatabaseFactory:
    """Fresh migrated databases of the test's backend: ``databases.new_url()``."""
    return _factory(backend, database_factories, tmp_path_factory)


@pytest.fixture(scope="session", params=BACKENDS)
def session_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def session_databases(
    session_backend: str,
    database_factories: dict[str, DatabaseFactory],
    tmp_path_factory: pytest.TempPathFactory,
) -> DatabaseFactory:
    """Like ``databases`` for session-scoped fixtures (shared clusters)."""
    return _factory(session_backend, database_factories, tmp_path_factory)


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector off for the test: only reference counting frees
    anything, so whatever a reference cycle holds stays alive where a test can see it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


class asgi_client:
    """An httpx client talking to ``app`` in process, with the app's lifespan running.

    ``async with asgi_client(app) as client`` tears down deterministically; ``async for``
    is kept for older call sites.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        return await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://testserver")
        )

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def __aiter__(self) -> AsyncIterator[httpx.AsyncClient]:
        async with self as client:
            yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The PostgreSQL half of every two-backend test carries the `postgres` mark, so that
    # `-m "not postgres"` selects the SQLite half (make test-fast does).
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgresql" in (params.get("backend"), params.get("session_backend")):
            item.add_marker(pytest.mark.postgres)
