"""What the federation middleware costs, measured in one run.

- floor: the example app with FederationMiddleware removed and a fixed identity injected
  (what the host would do if it somehow knew the caller for free);
- cached foreign token: the same app with the middleware, the token already in L1;
- local token: the same endpoint with a token of the cluster itself (host's DB lookup);
- the in-process cost of an L1 hit (``Federation.identify``), median per call;
- the issuer calls a cold storm of 500 concurrent requests with a new token causes.

Requests are driven straight into the ASGI app (no HTTP client in the loop, whose own
cost would hide the middleware's), in interleaved rounds so drift hits all variants alike.
The issuer is a real cluster app served by uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from clusterfed import FederationMiddleware, Identity
from clusterfed.config import parse_config
from clusterfed.identity import STATE_KEY
from clusterfed.server.app import create_app
from clusterfed.server.migrate import upgrade_async
from clusterfed.server.testing import Cluster, ServerThread, cluster_config, remote_entry
from clusterfed.tokens import parse_token
from starlette.types import ASGIApp, Receive, Scope, Send

PATH = "/arvados/v1/users/current"
# Many short rounds, each measuring every variant back to back: the ratio is taken per
# round (paired) and the median of those is reported, which shrugs off a busy moment.
ROUNDS = 21
REQUESTS_PER_ROUND = 1000
TARGET_RATIO = 0.9
TARGET_HIT_MICROSECONDS = 25.0


class InjectIdentity:
    """The floor: hands the host a fixed identity, as if validation cost nothing."""

    def __init__(self, app: ASGIApp, *, identity: Identity) -> None:
        self.app = app
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[STATE_KEY] = self.identity
        await self.app(scope, receive, send)


def http_scope(token: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
    }


async def call(app: ASGIApp, token: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(http_scope(token), receive, send)
    return status


async def requests_per_second(app: ASGIApp, token: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        status = await call(app, token)
        if status != 200:
            raise RuntimeError(f"benchmark request answered {status}")
    return n / (time.perf_counter() - started)


async def config_for(cluster_id: str, workdir: Path, **kwargs: Any) -> Any:
    url = f"sqlite+aiosqlite:///{workdir / cluster_id}.db"
    await upgrade_async(url)
    return parse_config(cluster_config(cluster_id, url, **kwargs))


async def run(workdir: Path) -> dict[str, float]:
    issuer_config = await config_for("qr1hi", workdir)
    issuer_calls = CountingApp(create_app(issuer_config))
    issuer = ServerThread(issuer_calls).start()
    try:
        qr1hi = Cluster("qr1hi", issuer.port, issuer_config.database_url)
        _, foreign_token = await qr1hi.new_user(email="bench@qr1hi.example")
        _, storm_token = await qr1hi.new_user(email="storm@qr1hi.example")

        config = await config_for(
            "c97qk",
            workdir,
            remotes={"qr1hi": remote_entry(issuer.port)},
            login={"RemoteTokenRefresh": "1h"},
        )
        app = create_app(config)
        floor = create_app(config)
        async with app.router.lifespan_context(app), floor.router.lifespan_context(floor):
            federation = app.state.federation
            c97qk = Cluster("c97qk", 0, config.database_url)
            _, local_token = await c97qk.new_user(email="local@c97qk.example")

            # Warm the cache, then build the floor around the identity it produced.
            assert await call(app, foreign_token) == 200
            identity = await federation.identify(parse_token(foreign_token))
            floor.user_middleware = [
                m for m in floor.user_middleware if m.cls is not FederationMiddleware
            ]
            floor.add_middleware(InjectIdentity, identity=identity)

            variants = {
                "floor": (floor, foreign_token, REQUESTS_PER_ROUND),
                "foreign": (app, foreign_token, REQUESTS_PER_ROUND),
                "local": (app, local_token, REQUESTS_PER_ROUND // 4),
            }
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for target, token, _ in variants.values():  # warm-up, every variant alike
                await requests_per_second(target, token, 200)
            for round_number in range(ROUNDS):
                # Alternate the order, so whatever the first run of a round pays (or
                # gains) is spread evenly over the variants.
                names = list(variants)
                order = names if round_number % 2 == 0 else names[::-1]
                for name in order:
                    target, token, n = variants[name]
                    rates[name].append(await requests_per_second(target, token, n))

            hit_us = await l1_hit_microseconds(federation, foreign_token)

            calls_before = issuer_calls.count
            statuses = await asyncio.gather(*(call(app, storm_token) for _ in range(500)))
            storm_calls = issuer_calls.count - calls_before
            if set(statuses) != {200}:
                raise RuntimeError(f"cold storm answered {sorted(set(statuses))}")
    finally:
        issuer.stop()
    ratios = [f / base for f, base in zip(rates["foreign"], rates["floor"], strict=True)]
    return {
        "ratio": statistics.median(ratios),
        "floor_rps": statistics.median(rates["floor"]),
        "foreign_rps": statistics.median(rates["foreign"]),
        "local_rps": statistics.median(rates["local"]),
        "hit_us": hit_us,
        "storm_issuer_calls": storm_calls,
    }


async def l1_hit_microseconds(federation: Any, token: str) -> float:
    parsed = parse_token(token)
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        for _ in range(200):
            await federation.identify(parsed)
        samples.append((time.perf_counter() - started) / 200 * 1e6)
    return statistics.median(samples)


class CountingApp:
    """Wraps the issuer's app to count the validation calls it serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/current"):
            self.count += 1
        await self.app(scope, receive, send)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(Path(tmp)))
    ratio = figures["ratio"]
    print(f"floor (no middleware, identity injected): {figures['floor_rps']:8.0f} req/s")
    print(f"cached foreign token (with middleware):   {figures['foreign_rps']:8.0f} req/s")
    print(f"local token (host DB lookup):             {figures['local_rps']:8.0f} req/s")
    print(
        f"ratio cached-foreign / floor:             {ratio:8.3f}  (target >= {TARGET_RATIO};"
        f" median of {ROUNDS} paired rounds)"
    )
    print(
        f"L1 hit, in process, median:               {figures['hit_us']:8.2f} us  "
        f"(target <= {TARGET_HIT_MICROSECONDS:g} us)"
    )
    print(
        f"cold storm, 500 concurrent, issuer calls: {figures['storm_issuer_calls']:8d}"
        "  (2 = one validation)"
    )
