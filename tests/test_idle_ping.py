"""Pooled connections whose server went away are replaced before a request gets them.

The ping runs only for connections idle for ``PING_AFTER_IDLE_SECONDS`` (a busy
worker's connections skip its three round trips); a connection cut while idle is
found and replaced at checkout, so the request after a PostgreSQL restart succeeds.
"""

from __future__ import annotations

import asyncio

import pytest
from clusterfed.storage import db
from clusterfed.storage.db import create_engine
from sqlalchemy import text

from tests.support.databases import DatabaseFactory


@pytest.mark.parametrize("backend", ["postgresql"])  # pg_terminate_backend is PostgreSQL's
async def test_a_connection_cut_while_idle_is_replaced_at_checkout(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.05)
    url = databases.new_url()
    engine, killer = create_engine(url), create_engine(url)
    try:
        async with engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with killer.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.1)  # idle past the (shortened) threshold
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
        await killer.dispose()
