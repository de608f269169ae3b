"""A revoked local token is refused by every worker within 2 s, though they cached it.

c97qk runs ``serve --workers 2``; each worker answers its own tokens from its
LocalTokenCache (TTL 60 s). The test shows that both cached the token (the user's
email, changed in the database behind their back, keeps coming back as it was), then
revokes the token with the CLI, another process, so only the purge log can tell the
workers, and measures how long any worker still answered 200.
Run with ``-s`` to see the measured delay.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from clusterfed.server.models import User
from clusterfed.server.testing import ClusterProcess, cluster_config, running
from clusterfed.tokens import parse_token
from sqlalchemy import update

from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import USERS_CURRENT, run_cli

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

WORKERS = 2
BATCH = 8  # concurrent requests on fresh connections: both workers get some
BOUND = 2.0  # seconds
CONSECUTIVE_401 = 40


async def batch(client: httpx.AsyncClient, url: str, token: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    return list(await asyncio.gather(*(client.get(url, headers=headers) for _ in range(BATCH))))


async def test_revoked_local_token_refused_by_every_worker_within_2s(
    databases: DatabaseFactory, workdir: Path
) -> None:
    process = ClusterProcess(
        cluster_config("c97qk", databases.new_url("c97qk")), workdir, workers=WORKERS
    )
    with running(process) as c97qk:
        user_uuid, token = await c97qk.new_user(email="before@c97qk.example")
        url = f"{c97qk.base_url}{USERS_CURRENT}"
        # No keep-alive: each request is a new connection, accepted by either worker.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            for _ in range(10):
                assert [r.status_code for r in await batch(client, url, token)] == [200] * BATCH
            async with c97qk.session() as session:
                await session.execute(
                    update(User).where(User.uuid == user_uuid).values(email="after@c97qk.example")
                )
            # Cached: whichever worker answers, the database is not read again.
            for _ in range(10):
                answers = await batch(client, url, token)
                assert {r.json()["email"] for r in answers} == {"before@c97qk.example"}

            token_uuid = parse_token(token).uuid
            assert token_uuid is not None
            done = await asyncio.to_thread(run_cli, c97qk, "tokens", "revoke", token_uuid)
            revoked_at = time.monotonic()  # committed before the command exited
            assert done.returncode == 0, done.stderr

            last_200, run_of_401, ok_after = revoked_at, 0, 0
            while run_of_401 < CONSECUTIVE_401:
                statuses = [r.status_code for r in await batch(client, url, token)]
                now = time.monotonic()
                assert set(statuses) <= {200, 401}, statuses
                assert now - revoked_at < BOUND + 5, "workers kept accepting the revoked token"
                for status in statuses:
                    if status == 200:
                        last_200, run_of_401, ok_after = now, 0, ok_after + 1
                    else:
                        run_of_401 += 1
    delay = last_200 - revoked_at
    print(
        f"\n[{databases.backend}] revocation reached both workers: last 200 {delay:.3f}s after"
        f" it ({ok_after} answers of 200 after it, then {CONSECUTIVE_401} consecutive 401s)"
    )
    assert delay < BOUND
