"""SPEC 3.3: remote permission checks fail closed everywhere they are used, not only on a move.

A qr1hi user's collection on c97qk already sits in a qr1hi project, so reading it,
changing it and listing it all depend on what qr1hi says. With qr1hi down (and the
cached answers expired) each of them is refused with 502: none may fall back on
"allowed", and a listing may not quietly show what it can no longer check.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clusterfed.server.testing import ClusterProcess, cluster_config, remote_entry, running

from tests.support.databases import DatabaseFactory
from tests.test_remote_permissions_e2e import Trio, api, grant, made, scene

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

TTL = 1.0


async def test_reads_updates_and_listings_fail_closed_when_home_cannot_answer(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    home = ClusterProcess(cluster_config("qr1hi", databases.new_url("qr1hi")), tmp_path)
    with running(home) as qr1hi:
        config = cluster_config(
            "c97qk",
            databases.new_url("c97qk"),
            remotes={"qr1hi": remote_entry(qr1hi.port, ActivateUsers=True)},
            login={"RemoteTokenRefresh": "1h"},  # the user stays known while qr1hi is down
            federation={"RemoteTimeout": "2s", "PermissionCacheTTL": f"{TTL}s"},
        )
        with running(ClusterProcess(config, tmp_path)) as c97qk:
            s = await scene(Trio(qr1hi, c97qk, qr1hi))
            await grant(qr1hi, s.owner, s.user, s.project, "can_write")
            collection = await made(c97qk, s.token, "collections", {"name": "inside"})
            path = f"collections/{collection}"
            moved = await api(c97qk, "PATCH", path, s.token, {"owner_uuid": s.project})
            assert moved.status_code == 200, moved.text
            # While qr1hi answers, the collection is the user's through qr1hi's project.
            assert (await api(c97qk, "GET", path, s.token)).status_code == 200
            listed = await api(c97qk, "GET", "collections", s.token)
            assert collection in [item["uuid"] for item in listed.json()["items"]]

            home.stop()
            await asyncio.sleep(TTL + 0.3)  # qr1hi's cached answers have expired
            got = await api(c97qk, "GET", path, s.token)
            renamed = await api(c97qk, "PUT", path, s.token, {"collection": {"name": "n"}})
            listed = await api(c97qk, "GET", "collections", s.token)
    for response in (got, renamed, listed):
        assert response.status_code == 502, response.text
        assert "qr1hi" in response.json()["errors"][0]
