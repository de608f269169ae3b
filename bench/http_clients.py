"""The outbound GETs of a cold validation, through three HTTP clients, in one run.

    .venv/bin/python -m bench http_clients

A cold validation asks the token's issuer two things: the token
(``/arvados/v1/api_client_authorizations/current?remote=...``) and its owner
(``/arvados/v1/users/current?remote=...``). Here a real issuer (``clusterfed serve`` in
its own process, SQLite) answers both, for a real token, on loopback, and this process
asks through:

- ``plain_get``: the hand-written GET client clusterfed used before (``bench/h11_get.py``,
  h11 on asyncio streams), the reference;
- ``session``: clusterfed's GETs now (``outbound/aiohttp_gets.py``: aiohttp's session with
  httpx's URL building and error mapping around it), as ``RemoteClient`` uses it;
- ``httpx``: one ``httpx.AsyncClient`` used well: HTTP/1.1 only, kept-alive connections
  (limits sized for the load), ``client.get`` with the whole body read;
- ``aiohttp``: one ``aiohttp.ClientSession`` with a keep-alive ``TCPConnector``
  (``pip install aiohttp`` first: it is not a dependency of clusterfed).

What is measured is this process's CPU time per GET (``time.process_time``: the issuer
is another process, so its work is not counted) and the wall time per cold validation
(two GETs, one after the other, as the validator makes them). Each round runs every
client back to back, in rotating order; the medians over rounds are reported, and each
library's ratio to ``plain_get`` per round (paired), whose median is the verdict:
a library within 5% of plain_get's CPU per GET would replace it.

Two loads: one validation at a time, and 16 at once (the cold storm of many new
tokens: the pool then holds several connections to the issuer).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from clusterfed.outbound.aiohttp_gets import SessionGets
from clusterfed.server.testing import ClusterProcess, cluster_config

from bench.h11_get import PlainGets

TOKEN_PATH = "/arvados/v1/api_client_authorizations/current"
USER_PATH = "/arvados/v1/users/current"
PARAMS = {"remote": "c97qk"}
MAX_BYTES = 1 << 20
ROUNDS = 15
VALIDATIONS_PER_ROUND = 150
CONCURRENCY = 16
WITHIN = 0.05  # a library within 5% of plain_get's CPU per GET replaces it

Validate = Callable[[], Awaitable[None]]


class Clients:
    """The three clients, each with its own kept-alive connections to the issuer."""

    def __init__(self, base_url: str, token: str) -> None:
        self.urls = (f"{base_url}{TOKEN_PATH}", f"{base_url}{USER_PATH}")
        self.headers = {"Authorization": f"Bearer {token}", "Via": "HTTP/1.1 bench"}
        self.plain = PlainGets(default_headers={"Via": "HTTP/1.1 bench"})
        self.session = SessionGets(default_headers={"Via": "HTTP/1.1 bench"})
        self.httpx = httpx.AsyncClient(
            http1=True,
            http2=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            timeout=httpx.Timeout(10.0),
            headers={"Via": "HTTP/1.1 bench"},
        )
        self.aiohttp = None
        try:
            import aiohttp
        except ImportError:
            print("   (aiohttp is not installed: pip install aiohttp to compare it)")
        else:
            self.aiohttp = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=10),
                headers={"Via": "HTTP/1.1 bench"},
            )

    def variants(self) -> dict[str, Validate]:
        found = {
            "plain_get": self.validate_plain,
            "session": self.validate_session,
            "httpx": self.validate_httpx,
        }
        if self.aiohttp is not None:
            found["aiohttp"] = self.validate_aiohttp
        return found

    async def validate_plain(self) -> None:
        auth = {"Authorization": self.headers["Authorization"]}
        for url in self.urls:
            answer = await self.plain.get(
                url, params=PARAMS, headers=auth, insecure=False, max_bytes=MAX_BYTES
            )
            _check(answer.status_code, answer.body)

    async def validate_session(self) -> None:
        auth = {"Authorization": self.headers["Authorization"]}
        for url in self.urls:
            answer = await self.session.get(
                url, params=PARAMS, headers=auth, insecure=False, max_bytes=MAX_BYTES
            )
            _check(answer.status_code, answer.body)

    async def validate_httpx(self) -> None:
        auth = {"Authorization": self.headers["Authorization"]}
        for url in self.urls:
            response = await self.httpx.get(url, params=PARAMS, headers=auth)
            _check(response.status_code, response.content)

    async def validate_aiohttp(self) -> None:
        assert self.aiohttp is not None
        auth = {"Authorization": self.headers["Authorization"]}
        for url in self.urls:
            async with self.aiohttp.get(url, params=PARAMS, headers=auth) as response:
                _check(response.status, await response.read())

    async def aclose(self) -> None:
        await self.plain.aclose()
        await self.session.aclose()
        await self.httpx.aclose()
        if self.aiohttp is not None:
            await self.aiohttp.close()


def _check(status: int, body: bytes) -> None:
    if status != 200 or not body.startswith(b"{"):
        raise RuntimeError(f"the issuer answered {status}: {body[:200]!r}")


async def _timed(validate: Validate, validations: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds per GET, wall seconds per validation)."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    if concurrency == 1:
        for _ in range(validations):
            await validate()
    else:
        for _ in range(validations // concurrency):
            await asyncio.gather(*(validate() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = validations if concurrency == 1 else validations // concurrency * concurrency
    return cpu / (2 * done), wall / done


async def measure(clients: Clients, concurrency: int) -> dict[str, dict[str, list[float]]]:
    variants = clients.variants()
    for validate in variants.values():  # warm: connections open, code paths hot
        for _ in range(3):
            await asyncio.gather(*(validate() for _ in range(concurrency)))
    results: dict[str, dict[str, list[float]]] = {
        name: {"cpu": [], "wall": []} for name in variants
    }
    names = list(variants)
    for round_ in range(ROUNDS):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            cpu, wall = await _timed(variants[name], VALIDATIONS_PER_ROUND, concurrency)
            results[name]["cpu"].append(cpu)
            results[name]["wall"].append(wall)
    return results


def report(results: dict[str, dict[str, list[float]]], label: str) -> dict[str, float]:
    print(f"   {label}")
    print(f"   {'client':<10} {'CPU µs/GET':>11} {'wall µs/validation':>19} {'CPU vs plain':>13}")
    base = results["plain_get"]["cpu"]
    ratios: dict[str, float] = {}
    for name, series in results.items():
        ratio = statistics.median(c / b for c, b in zip(series["cpu"], base, strict=True))
        ratios[name] = ratio
        print(
            f"   {name:<10} {statistics.median(series['cpu']) * 1e6:>11.0f} "
            f"{statistics.median(series['wall']) * 1e6:>19.0f} {ratio:>12.2f}x"
        )
    return ratios


async def run(base_url: str, token: str) -> None:
    clients = Clients(base_url, token)
    try:
        verdicts: list[dict[str, float]] = []
        for concurrency in (1, CONCURRENCY):
            results = await measure(clients, concurrency)
            label = (
                "one validation at a time"
                if concurrency == 1
                else f"{concurrency} validations at once"
            )
            verdicts.append(report(results, f"{label} ({ROUNDS} rounds x {VALIDATIONS_PER_ROUND})"))
    finally:
        await clients.aclose()
    for name in [n for n in verdicts[0] if n not in ("plain_get", "session")]:
        worst = max(v[name] for v in verdicts)
        decision = "within 5%: a library good enough" if worst <= 1 + WITHIN else "not within 5%"
        print(f"   verdict {name}: {worst:.2f}x plain_get's CPU per GET at worst -> {decision}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clusterfed-bench-http-") as scratch:
        workdir = Path(scratch)
        issuer = ClusterProcess(
            cluster_config("qr1hi", f"sqlite+aiosqlite:///{workdir}/qr1hi.db"), workdir
        )
        cluster = issuer.start()
        try:
            _, token = asyncio.run(cluster.new_user())
            print(f"   issuer: clusterfed serve on {cluster.base_url} (its own process)")
            asyncio.run(run(cluster.base_url, token))
        finally:
            issuer.stop()


if __name__ == "__main__":
    main()
    sys.exit(0)
