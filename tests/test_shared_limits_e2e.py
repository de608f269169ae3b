"""One cluster, two hosts of two workers: its limits, purges and metrics are the cluster's.

c97qk runs as two ``serve --workers 2`` processes (host A and host B: two ports, one
config, one database) in front of a real issuer, qr1hi. Each check runs its load for a
few seconds, spread over the four workers (a new connection per request):

- one client fishing with random qr1hi tokens gets ``ColdValidationRate`` x time + burst
  validations at qr1hi (qr1hi's access log counts them), within 10%, and at least 60% of
  it; many clients (addresses named by X-Forwarded-For from a trusted proxy) together get
  ``IssuerValidationRate`` x time + burst;
- the admin page's login throttle is one bucket per client across the four workers;
- a purge through host A reaches both of host B's workers within 200 ms (its poll is
  10 s: only the announcement can do it);
- eight scrapes of host A's ``/metrics`` agree, count every validation host A made and
  exactly the refusals it answered, and carry each worker's L1 gauge under its pid.

On SQLite (one host: the two processes share a file) the same, with the 2 s purge bound.
Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    remote_entry,
    running,
)
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid, parse_token

from tests.conftest import _factory
from tests.support.federation_pair import ISSUER_TOKEN_CALL, MANAGEMENT, USERS_CURRENT, revoke

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

COLD_RATE = 5
ISSUER_RATE = 10
LOAD_SECONDS = 2.5
CONCURRENCY = 12
LOGIN_RATE, LOGIN_BURST = 1.0, 10  # the admin page's: admin.login_throttle
WORKERS = 2


@dataclass
class Cluster2:
    issuer: ClusterProcess
    hosts: tuple[Cluster, Cluster]
    processes: tuple[ClusterProcess, ClusterProcess]
    backend: str
    # What host A answered to fresh tokens: validations made (401s) and refusals (429s).
    answered: dict[str, int] = field(default_factory=lambda: {"validated": 0, "refused": 0})

    def issuer_calls(self) -> int:
        return self.issuer.log().count(ISSUER_TOKEN_CALL)

    def wait_issuer_calls(self, at_least: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while (calls := self.issuer_calls()) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls


@pytest.fixture(scope="module", params=("postgresql", "sqlite"))
def cluster(
    request: pytest.FixtureRequest,
    database_factories: dict,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster2]:
    databases = _factory(request.param, database_factories, tmp_path_factory)
    workdir: Path = tmp_path_factory.mktemp("two-hosts")
    issuer = ClusterProcess(cluster_config("qr1hi", databases.new_url("qr1hi")), workdir)
    with running(issuer) as qr1hi:
        config = cluster_config(
            "c97qk",
            databases.new_url("c97qk"),
            remotes={"qr1hi": remote_entry(qr1hi.port, ActivateUsers=True)},
            login={"RemoteTokenRefresh": "1h"},
            federation={
                "ColdValidationRate": COLD_RATE,
                "IssuerValidationRate": ISSUER_RATE,
                "TrustedProxies": ["127.0.0.0/8"],
                # Only an announced purge can reach the other host in time on PostgreSQL.
                "PurgePollInterval": "10s" if request.param == "postgresql" else "0.5s",
            },
        )
        a = ClusterProcess(config, workdir, workers=WORKERS)
        b = ClusterProcess(config, workdir, workers=WORKERS)
        with running(a) as host_a, running(b) as host_b:
            yield Cluster2(issuer, (host_a, host_b), (a, b), request.param)


def fresh_connections() -> httpx.AsyncClient:
    # No keep-alive: each request is a new connection, accepted by whichever worker.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


def random_token() -> str:
    return f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}"


async def fish(cluster: Cluster2, addresses: Iterator[str]) -> tuple[list[int], float]:
    """Random qr1hi tokens for ``LOAD_SECONDS``, alternating between the hosts, each from
    the next of ``addresses``; the statuses and the seconds from first to last request."""
    statuses: list[int] = []
    hosts = itertools.cycle(range(2))
    started = time.monotonic()
    deadline = started + LOAD_SECONDS

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            host = next(hosts)
            headers = {
                "Authorization": f"Bearer {random_token()}",
                "X-Forwarded-For": next(addresses),
            }
            response = await client.get(
                f"{cluster.hosts[host].base_url}{USERS_CURRENT}", headers=headers
            )
            statuses.append(response.status_code)
            if host == 0:
                key = "refused" if response.status_code == 429 else "validated"
                cluster.answered[key] += 1

    async with fresh_connections() as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return statuses, time.monotonic() - started


async def held_to(
    cluster: Cluster2, addresses: Iterator[str], rate: float, *, settle: bool = False
) -> None:
    if settle:
        await asyncio.sleep(2.0)  # the issuer's bucket, spent by the last check, is full again
    before = cluster.issuer_calls()
    statuses, elapsed = await fish(cluster, addresses)
    validated = statuses.count(401)
    calls = cluster.wait_issuer_calls(before + validated) - before
    allowed = rate * elapsed + 2 * rate
    print(
        f"\n[{cluster.backend}] {len(statuses)} random tokens in {elapsed:.2f}s over 2 hosts x "
        f"{WORKERS} workers at rate {rate}: {calls} reached the issuer, the limit allows "
        f"{allowed:.1f}"
    )
    assert set(statuses) == {401, 429}, set(statuses)
    assert calls == validated, "each validation allowed is one call at the issuer"
    assert calls <= 1.1 * allowed, (calls, allowed)
    assert calls >= 0.6 * allowed, (calls, allowed)


async def test_one_client_gets_the_cold_validation_rate_across_hosts(cluster: Cluster2) -> None:
    await held_to(cluster, itertools.repeat("198.51.100.7"), COLD_RATE)


async def test_many_clients_get_the_issuer_rate_across_hosts(cluster: Cluster2) -> None:
    addresses = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count())
    await held_to(cluster, addresses, ISSUER_RATE, settle=True)


async def test_admin_login_guesses_share_one_bucket(cluster: Cluster2) -> None:
    statuses: list[int] = []
    started = time.monotonic()
    async with fresh_connections() as client:
        for batch in range(5):
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{cluster.hosts[(batch + i) % 2].base_url}/federation/admin/login",
                        data={"credential": f"guess-{batch}-{i}"},
                        headers={"X-Forwarded-For": "203.0.113.9"},
                    )
                    for i in range(8)
                )
            )
            statuses += [response.status_code for response in responses]
    elapsed = time.monotonic() - started
    tried = len(statuses) - statuses.count(429)
    print(f"\n[{cluster.backend}] 40 login guesses in {elapsed:.2f}s: {tried} tried")
    assert 429 in statuses
    assert LOGIN_BURST <= tried <= LOGIN_BURST + LOGIN_RATE * elapsed + 1, (tried, elapsed)


async def batch(client: httpx.AsyncClient, host: Cluster, token: str, n: int = 8) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{host.base_url}{USERS_CURRENT}"
    return [
        r.status_code
        for r in await asyncio.gather(*(client.get(url, headers=headers) for _ in range(n)))
    ]


async def test_a_purge_on_one_host_reaches_every_worker_of_the_other(cluster: Cluster2) -> None:
    host_a, host_b = cluster.hosts
    qr1hi = cluster.issuer.cluster
    _, token = await qr1hi.new_user()
    async with fresh_connections() as client:
        for _ in range(10):  # cached by every worker of both hosts
            for host in cluster.hosts:
                assert await batch(client, host, token) == [200] * 8
        await revoke(qr1hi, token)  # from now on only a cache accepts it
        assert await batch(client, host_b, token, 16) == [200] * 16
        response = await client.delete(
            f"{host_a.base_url}/federation/v1/token_cache/{parse_token(token).uuid}",
            headers=MANAGEMENT,
        )
        purged_at = time.monotonic()
        assert response.json() == {"purged": 1}
        bound = 0.2 if cluster.backend == "postgresql" else 2.0
        await asyncio.sleep(bound - (time.monotonic() - purged_at))
        statuses = await batch(client, host_b, token, 16)
        print(
            f"\n[{cluster.backend}] {time.monotonic() - purged_at:.3f}s after the purge on A, "
            f"B answered {statuses}"
        )
        assert statuses == [401] * 16


def samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{.*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_every_scrape_counts_the_whole_server(cluster: Cluster2) -> None:
    if not cluster.answered["validated"]:
        await held_to(cluster, itertools.repeat("198.51.100.8"), COLD_RATE)
    host_a = cluster.hosts[0]
    async with fresh_connections() as client:
        texts = [
            (await client.get(f"{host_a.base_url}/metrics", headers=MANAGEMENT)).text
            for _ in range(8)
        ]
    counted = [samples(text, "clusterfed_validations_total") for text in texts]
    refused = [samples(text, "clusterfed_validations_throttled_total") for text in texts]
    assert all(c == counted[0] for c in counted), counted
    assert all(r == refused[0] for r in refused), refused
    print(f"\n[{cluster.backend}] host A answered {cluster.answered}; /metrics: {counted[0]}")
    assert sum(counted[0].values()) >= cluster.answered["validated"]
    assert sum(refused[0].values()) == cluster.answered["refused"]
    # The L1 gauge is each worker's, labelled by its pid.
    pids = {
        re.search(r'pid="(\d+)"', label).group(1)
        for label in samples(texts[0], "clusterfed_token_cache_entries")
    }  # type: ignore[union-attr]
    assert len(pids) == WORKERS, texts[0]
