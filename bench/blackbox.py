"""Throughput as a client meets it: real ``clusterfed serve`` processes over HTTP.

``bench.middleware`` drives the ASGI app in process, which isolates the middleware but
hides what a client pays (HTTP parsing, the access log, the database, the issuer).
Here every cluster is ``python -m clusterfed serve`` (one worker) on loopback and the
load comes from ``wrk`` (C, one thread, 32 connections), whose Lua script rotates tokens
per request, so the load generator eats little of the two cores the servers share.

On each database (SQLite; PostgreSQL when it answers on ``CLUSTERFED_TEST_PG_DSN``) it
measures ``GET /arvados/v1/users/current`` on c97qk for:

- ``cached``: one foreign token (qr1hi's, salted for c97qk), in L1: the baseline;
- ``many``: 12,000 distinct foreign tokens, all validated before (rows in L2, users
  mirrored), picked at random per request, with L1 holding 10,000 of them (one pass over
  all of them before each run: the cold runs' tokens would have taken their place);
- ``local``: a token c97qk issued itself;
- ``cold``: a never-seen foreign token per request (each used once), the issuer a real
  clusterfed process. The rate limits on cold validations (``ColdValidationRate``,
  ``IssuerValidationRate``) are turned off (0) on this c97qk, or they would be measured.

Variants run in rounds, in alternating order, and each ratio is taken within a round
(paired), then the median over the rounds is printed. A second c97qk process on the same
database keeps the default rate limits for the latency check: the p99 of a cached token
sent at ``PROBE_RATE`` requests a second, alone, then during a flood of never-seen tokens
(random, well-formed, qr1hi's prefix) at ``FLOOD_RATE`` requests a second, and, as a
control, during a flood of as many requests that carry no token at all (Poisson arrivals
throughout; medians over the rounds). The probe has a rate, not a closed loop: a probe
that keeps the worker busy on its own measures queueing, not interference, and there
any added request, a tokenless one included, multiplied its p99 by ten. A third c97qk
runs the same app on uvicorn's httptools instead of the h11 that ``serve`` pins for its
header bound, to show what h11 costs. Finally the memory of one L1 entry, measured in
process with tracemalloc.

Environment: ``BENCH_SECONDS`` (per run, 5), ``BENCH_ROUNDS`` (5), ``BENCH_BACKENDS``
(``sqlite,postgresql``), ``CLUSTERFED_TEST_PG_DSN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from clusterfed.identity import Identity, UserRecord
from clusterfed.server.migrate import upgrade_async
from clusterfed.server.models import ApiClientAuthorization, User
from clusterfed.server.users.bootstrap import ensure_builtin_users
from clusterfed.storage.db import create_engine, create_sessionmaker
from clusterfed.storage.models import FederationTokenCache
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid, salted_secret
from clusterfed.trust.cache import L1Entry, TokenCache
from clusterfed.trust.validator import l2_digest_key
from sqlalchemy import insert

PATH = "/arvados/v1/users/current"
MANAGEMENT_TOKEN = "bench-management-token"
SYSTEM_ROOT_TOKEN = "bench-system-root-token-" + "x" * 20
PG_ADMIN_DSN = os.environ.get("CLUSTERFED_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONNECTIONS = 32
L1_SIZE = 10_000
MANY_TOKENS = 12_000
MANY_USERS = 120
COLD_USERS = 50
# Never-seen tokens per cold round: more than a round can use (checked after each run).
COLD_POOL = int(os.environ.get("BENCH_COLD_POOL", "6000"))
PROBE_CONNECTIONS = 4
PROBE_RATE = 300  # requests a second of the cached token during the latency check
FLOOD_RATE = 500  # requests a second of never-seen tokens during the latency check
TARGETS = {"local": 0.9, "many": 0.8, "cold": 0.2}
P99_TARGET = 2.0

LUA = r"""
local tokens = {}
local file = os.getenv("BENCH_TOKENS")
if file and file ~= "" then
  for line in io.lines(file) do tokens[#tokens + 1] = line end
end
local n = #tokens
local order = os.getenv("BENCH_ORDER") or "sequential"
local path = os.getenv("BENCH_PATH")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
local i = tonumber(os.getenv("BENCH_OFFSET") or "0")
local poisson = os.getenv("BENCH_POISSON") == "1"
math.randomseed(os.time())

local function random_text(length)
  local out = {}
  for k = 1, length do
    local c = math.random(1, #alphabet)
    out[k] = alphabet:sub(c, c)
  end
  return table.concat(out)
end

request = function()
  local token
  if order == "anonymous" then
    return wrk.format("GET", path)
  elseif order == "fishing" then
    token = "v2/qr1hi-gj3su-" .. random_text(15) .. "/" .. random_text(50)
  elseif order == "random" then
    token = tokens[math.random(1, n)]
  else
    i = i + 1
    token = tokens[(i - 1) % n + 1]
  end
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end

if delay_ms > 0 then
  -- Poisson arrivals: connections that start together do not stay in step.
  delay = function()
    if poisson then return -math.log(1 - math.random()) * delay_ms end
    return delay_ms
  end
end
"""


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ``serve`` pins uvicorn's h11 for its bound on request heads (server/serving.py); this
# runs the same app on httptools, which has no such bound, to measure what h11 costs.
HTTPTOOLS_RUNNER = """
import sys, uvicorn
from clusterfed.config import load_config
from clusterfed.server.app import create_app
from clusterfed.server.serving import uvicorn_options
options = uvicorn_options()
options.pop("h11_max_incomplete_event_size")
options["http"] = "httptools"
app = create_app(load_config(sys.argv[1]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), **options)
"""


def as_batch_process() -> None:
    """In the child, before exec: SCHED_BATCH, so its wakeups never preempt a running task.

    For the issuer, which stands for another cluster's machine. Each call c97qk makes to it
    is a loopback write, a synchronous wakeup, and on two shared cores Linux then ran the
    issuer on c97qk's core at once, for its whole answer: the step of c97qk's event loop
    that made the write took 1-2 ms of wall time for under 0.2 ms of CPU, and every
    cached request queued behind it. No real federation has that (the issuer is elsewhere),
    and it was most of what a fishing flood added to the cached p99 over a tokenless
    flood. The issuer still gets its fair share of the two cores. (Linux only: elsewhere
    the issuer runs as any process does.)"""
    if hasattr(os, "SCHED_BATCH"):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class Served:
    """``python -m clusterfed serve`` as a child process, as an operator runs it."""

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        workdir: Path,
        *,
        httptools: bool = False,
        remote: bool = False,
        runner: str | None = None,
    ) -> None:
        self.name = name
        self.httptools = httptools
        # A script run as ``python -c runner CONFIG PORT`` instead of ``serve``.
        self.runner = HTTPTOOLS_RUNNER if httptools else runner
        self.remote = remote  # stands for another machine: see as_batch_process
        self.port = free_port()
        self.config_path = workdir / f"{name}.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        with self.log_path.open("wb") as log:
            command = [
                sys.executable,
                "-m",
                "clusterfed",
                "serve",
                "--config",
                str(self.config_path),
            ]
            command += ["--port", str(self.port), "--workers", "1"]
            if self.runner is not None:
                command = [sys.executable, "-c", self.runner, str(self.config_path)]
                command += [str(self.port)]
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=as_batch_process if self.remote else None,
            )
        deadline = time.monotonic() + 60
        headers = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/_health/ping", headers=headers).status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not start serving")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def config(cluster_id: str, url: str, **sections: Any) -> dict[str, Any]:
    body = {
        "Database": {"URL": url},
        "ManagementToken": MANAGEMENT_TOKEN,
        "SystemRootToken": SYSTEM_ROOT_TOKEN,
        **sections,
    }
    return {"Clusters": {cluster_id: body}}


# -- load --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    rps: float
    p99_ms: float
    failures: int  # non-2xx answers and socket errors


def wrk(
    url: str,
    script: Path,
    *,
    tokens: Path | None,
    order: str = "sequential",
    connections: int = CONNECTIONS,
    seconds: float = DURATION,
    delay_ms: float = 0,
    offset: int = 0,
) -> WrkResult:
    env = {
        **os.environ,
        "BENCH_OFFSET": str(offset),
        "BENCH_TOKENS": str(tokens or ""),
        "BENCH_ORDER": order,
        "BENCH_PATH": PATH,
        "BENCH_DELAY_MS": str(delay_ms),
        "BENCH_POISSON": "1",
    }
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> WrkResult:
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    failures = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        failures += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        failures += sum(int(n) for n in match.groups())
    return WrkResult(requests, rps, p99_ms, failures)


# -- data --------------------------------------------------------------------------------


@dataclass
class Tokens:
    cached: str
    local: str
    many: list[str]
    cold: list[list[str]]  # one never-seen pool per round


def user_row(uuid: str, n: int) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "email": f"bench{n}@{uuid[:5]}.example",
        "username": f"bench{n}",
        "is_active": True,
        "is_invited": True,
    }


async def populate(qr1hi_url: str, c97qk_url: str) -> Tokens:
    """Users and tokens at qr1hi; c97qk's L2 rows and mirrors for the ``many`` tokens."""
    await upgrade_async(qr1hi_url)
    await upgrade_async(c97qk_url)
    users = [new_uuid("qr1hi", USER_TYPE) for _ in range(1 + MANY_USERS + COLD_USERS)]
    cached_user, many_users, cold_users = (
        users[0],
        users[1 : 1 + MANY_USERS],
        users[1 + MANY_USERS :],
    )

    def token_rows(owners: list[str], count: int) -> list[dict[str, Any]]:
        return [
            {
                "uuid": new_uuid("qr1hi", TOKEN_TYPE),
                "api_token": new_secret(),
                "user_uuid": owners[n % len(owners)],
                "scopes": ["all"],
            }
            for n in range(count)
        ]

    cached_rows = token_rows([cached_user], 1)
    many_rows = token_rows(many_users, MANY_TOKENS)
    cold_rows = [token_rows(cold_users, COLD_POOL) for _ in range(ROUNDS)]

    def presented(row: dict[str, Any]) -> str:  # salted for c97qk, as Arvados clients send
        return f"v2/{row['uuid']}/{salted_secret(row['api_token'], 'c97qk')}"

    engine = create_engine(qr1hi_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await ensure_builtin_users(session, "qr1hi")
            await session.execute(insert(User), [user_row(u, n) for n, u in enumerate(users)])
            for rows in (cached_rows, many_rows, *cold_rows):
                await session.execute(insert(ApiClientAuthorization), rows)
            await session.commit()
    finally:
        await engine.dispose()

    # c97qk validated the ``many`` tokens before: L2 rows (digest of the salted secret)
    # and mirrors of their users, as validation would have left them.
    key = l2_digest_key("c97qk", SYSTEM_ROOT_TOKEN)
    now = datetime.now(UTC)
    import hashlib
    import hmac

    l2_rows = [
        {
            "token_uuid": row["uuid"],
            "user_uuid": row["user_uuid"],
            "cluster_id": "qr1hi",
            "secret_digest": hmac.new(
                key, salted_secret(row["api_token"], "c97qk").encode(), hashlib.sha256
            ).hexdigest(),
            "scopes": ["all"],
            "expires_at": None,
            "refreshes_at": now + timedelta(hours=2),
            "validated_at": now,
            "last_used_at": now,
        }
        for row in many_rows
    ]
    engine = create_engine(c97qk_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await ensure_builtin_users(session, "c97qk")
            await session.execute(insert(User), [user_row(u, n) for n, u in enumerate(many_users)])
            await session.execute(insert(FederationTokenCache), l2_rows)
            local_user = new_uuid("c97qk", USER_TYPE)
            await session.execute(insert(User), [user_row(local_user, 99_999)])
            local = {
                "uuid": new_uuid("c97qk", TOKEN_TYPE),
                "api_token": new_secret(),
                "user_uuid": local_user,
                "scopes": ["all"],
            }
            await session.execute(insert(ApiClientAuthorization), [local])
            await session.commit()
    finally:
        await engine.dispose()
    return Tokens(
        cached=presented(cached_rows[0]),
        local=f"v2/{local['uuid']}/{local['api_token']}",
        many=[presented(row) for row in many_rows],
        cold=[[presented(row) for row in rows] for rows in cold_rows],
    )


@contextlib.contextmanager
def databases(backend: str, workdir: Path) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield (
            f"sqlite+aiosqlite:///{workdir / 'qr1hi.db'}",
            f"sqlite+aiosqlite:///{workdir / 'c97qk.db'}",
        )
        return
    import asyncpg

    names = [f"bench_{cluster}_{secrets.token_hex(4)}" for cluster in ("qr1hi", "c97qk")]

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for name in names:
                await conn.execute(statement.format(name=name))
        finally:
            await conn.close()

    asyncio.run(admin('CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        asyncio.run(admin('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_available() -> bool:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception:  # any failure to connect: not here
        return False
    return True


# -- one backend ---------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# The issuer answers for a copy of its token salted for c97qk only when it lists c97qk (it
# never calls c97qk here: nothing is revoked, so the address is never used).
ISSUER_LISTS_C97QK: dict[str, Any] = {
    "RemoteClusters": {"c97qk": {"Host": "127.0.0.1:9", "Scheme": "http"}}
}


def run_backend(backend: str, workdir: Path) -> dict[str, Any]:
    script = workdir / "rotate.lua"
    script.write_text(LUA)
    with databases(backend, workdir) as (qr1hi_url, c97qk_url):
        tokens = asyncio.run(populate(qr1hi_url, c97qk_url))
        files = {
            "cached": write_lines(workdir / "cached.txt", [tokens.cached]),
            "local": write_lines(workdir / "local.txt", [tokens.local]),
            "many": write_lines(workdir / "many.txt", tokens.many),
        }
        cold_files = [
            write_lines(workdir / f"cold{n}.txt", pool) for n, pool in enumerate(tokens.cold)
        ]
        issuer = Served(
            "qr1hi", config("qr1hi", qr1hi_url, **ISSUER_LISTS_C97QK), workdir, remote=True
        )
        remotes = {"RemoteClusters": {"qr1hi": {"Host": "", "Scheme": "http"}}}
        login = {"Login": {"RemoteTokenRefresh": "1h"}}
        servers = [issuer]
        try:
            issuer.start()
            remotes["RemoteClusters"]["qr1hi"]["Host"] = f"127.0.0.1:{issuer.port}"
            unlimited = {"ColdValidationRate": 0, "IssuerValidationRate": 0}
            c97qk = Served(
                "c97qk",
                config("c97qk", c97qk_url, **remotes, **login, Federation=unlimited),
                workdir,
            )
            servers.append(c97qk.start())
            httptools = Served(
                "c97qk-httptools",
                config("c97qk", c97qk_url, **remotes, **login, Federation=unlimited),
                workdir,
                httptools=True,
            )
            servers.append(httptools.start())
            limited = Served(
                "c97qk-limited", config("c97qk", c97qk_url, **remotes, **login), workdir
            )
            servers.append(limited.start())

            # Warm-up: the cached token gets validated, code paths get imported and
            # compiled. (The ``many`` tokens are brought into L1 before each of its runs.)
            for name in ("cached", "local"):
                wrk(c97qk.url, script, tokens=files[name], seconds=1)
            wrk(httptools.url, script, tokens=files["cached"], seconds=1)
            settle([issuer, c97qk, httptools])

            variants = ["cached", "many", "local", "cold", "httptools"]
            results: dict[str, list[WrkResult]] = {name: [] for name in variants}
            for round_number in range(ROUNDS):
                order = variants if round_number % 2 == 0 else variants[::-1]
                for name in order:
                    if name == "cold":
                        result = wrk(c97qk.url, script, tokens=cold_files[round_number])
                        if result.requests > COLD_POOL:
                            raise RuntimeError("cold pool too small: tokens were reused")
                    elif name == "many":
                        # A cold run leaves its thousands of new tokens in L1, evicting as
                        # many of these: without a fresh pass L1 would not hold 10,000 of
                        # the 12,000, and the run would measure that instead.
                        warm_l1(c97qk.url, script, files["many"])
                        settle([issuer, c97qk, httptools])
                        result = wrk(c97qk.url, script, tokens=files["many"], order="random")
                    elif name == "httptools":
                        result = wrk(httptools.url, script, tokens=files["cached"])
                    else:
                        result = wrk(c97qk.url, script, tokens=files[name])
                    results[name].append(result)
                    settle([issuer, c97qk, httptools])
            rss_kib = rss(c97qk)

            settle([issuer, c97qk, httptools, limited])
            latency = latency_check(limited, [issuer, limited], script, files["cached"])
        finally:
            for server in reversed(servers):
                server.stop()
    return {"results": results, "latency": latency, "rss_kib": rss_kib}


def latency_check(
    server: Served, servers: list[Served], script: Path, probe: Path
) -> dict[str, list[WrkResult]]:
    """p99 of the cached token at PROBE_RATE: alone, during a fishing flood, and during a
    flood of tokenless requests (the control), in rounds; plus the floods' own figures."""
    wrk(server.url, script, tokens=probe, seconds=1)
    runs: dict[str, list[WrkResult]] = {"alone": [], "fishing": [], "anonymous": []}
    floods: list[WrkResult] = []

    def measure() -> WrkResult:
        return wrk(
            server.url,
            script,
            tokens=probe,
            connections=PROBE_CONNECTIONS,
            delay_ms=1000 * PROBE_CONNECTIONS / PROBE_RATE,
        )

    for _ in range(ROUNDS):
        runs["alone"].append(measure())
        for order in ("fishing", "anonymous"):
            settle(servers)
            flood = flood_process(server.url, script, order)
            try:
                time.sleep(0.5)
                runs[order].append(measure())
            finally:
                out = flood.communicate()[0]
            if order == "fishing":
                floods.append(parse_wrk(out))
        settle(servers)
    return {**runs, "floods": floods}


def warm_l1(url: str, script: Path, tokens: Path) -> None:
    """One pass over every ``many`` token in order, as a server running for a while has
    seen them: L1 then holds the last 10,000 (each was validated before: L2 hits)."""
    done = 0
    while done < MANY_TOKENS:
        done += wrk(url, script, tokens=tokens, seconds=2, offset=done).requests


def flood_process(url: str, script: Path, order: str) -> subprocess.Popen[str]:
    connections = CONNECTIONS
    env = {
        **os.environ,
        "BENCH_ORDER": order,
        "BENCH_PATH": PATH,
        "BENCH_TOKENS": "",
        "BENCH_DELAY_MS": str(1000 * connections / FLOOD_RATE),
        "BENCH_POISSON": "1",
    }
    seconds = DURATION + 1
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def cpu_seconds(server: Served) -> float:
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(servers: list[Served], *, quiet: float = 0.02, timeout: float = 10.0) -> None:
    """Wait until the servers are idle: a cold run leaves validations in flight (wrk
    stops, the validations go on), which would be billed to the next variant."""
    deadline = time.monotonic() + timeout
    before = [cpu_seconds(server) for server in servers]
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = [cpu_seconds(server) for server in servers]
        if all(b - a <= quiet for a, b in zip(before, now, strict=True)):
            return
        before = now


def rss(server: Served) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


# -- memory per L1 entry -----------------------------------------------------------------


def l1_entry_bytes(count: int = 10_000) -> float:
    """Bytes one L1 entry costs, as validation builds them (own user record each)."""
    cache = TokenCache(maxsize=count, ttl=3600, negative_ttl=10)
    now = datetime.now(UTC)
    made = [
        (
            f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}",
            new_uuid("qr1hi", USER_TYPE),
            new_uuid("qr1hi", TOKEN_TYPE),
        )
        for _ in range(count)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n, (token, user_uuid, token_uuid) in enumerate(made):
        user = UserRecord(
            uuid=user_uuid[:],
            email=f"user{n}@qr1hi.example",
            username=f"user{n}",
            first_name="Firstname",
            last_name="Lastname",
            is_admin=False,
            is_active=True,
            is_invited=True,
        )
        identity = Identity(user, token_uuid[:], ("all",), "qr1hi", None)
        cache.put(
            cache.key("qr1hi", token),
            L1Entry(identity, now + timedelta(hours=1), time.time()),
        )
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


# -- report ------------------------------------------------------------------------------


def report(backend: str, figures: dict[str, Any]) -> None:
    results: dict[str, list[WrkResult]] = figures["results"]
    base = results["cached"]
    print(f"-- {backend} (one worker each; wrk -t1 -c{CONNECTIONS}, {DURATION:g}s x {ROUNDS})")
    print(f"{'variant':<58} {'req/s':>8} {'ratio':>6} {'target':>7} {'p99 ms':>7} {'fail':>5}")
    labels = {
        "cached": "cached foreign token (L1 hit)",
        "many": f"{MANY_TOKENS:,} distinct foreign tokens, random (L1 holds {L1_SIZE:,})",
        "local": "local token (issued by the serving cluster)",
        "cold": "a never-seen foreign token per request (cold validation)",
        "httptools": "cached foreign token, uvicorn on httptools (not what serve runs)",
    }
    for name, runs in results.items():
        ratio = statistics.median(r.rps / b.rps for r, b in zip(runs, base, strict=True))
        target = f">={TARGETS[name]:g}" if name in TARGETS else ""
        print(
            f"{labels[name]:<58} {statistics.median(r.rps for r in runs):8.0f} {ratio:6.3f}"
            f" {target:>7} {statistics.median(r.p99_ms for r in runs):7.1f}"
            f" {sum(r.failures for r in runs):5d}"
        )
    failed = {name: sum(r.failures for r in runs) for name, runs in results.items()}
    if any(failed.values()):
        # A rate of error answers is no measure of the variant: say so, loudly.
        raise RuntimeError(f"{backend}: error answers in the measured runs: {failed}")
    latency = figures["latency"]
    p99 = {name: statistics.median(r.p99_ms for r in latency[name]) for name in latency}
    flood_rps = statistics.median(r.rps for r in latency["floods"])
    print(
        f"cached p99 at {PROBE_RATE} req/s alone {p99['alone']:.1f} ms; during a flood of"
        f" never-seen tokens ({flood_rps:.0f} req/s, default rate limits) {p99['fishing']:.1f}"
        f" ms: x{p99['fishing'] / p99['alone']:.2f} (target <= {P99_TARGET:g}); control, as"
        f" many requests with no token: {p99['anonymous']:.1f} ms,"
        f" x{p99['anonymous'] / p99['alone']:.2f}"
    )
    print(f"server RSS after the run: {figures['rss_kib'] / 1024:.0f} MiB")


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench.blackbox needs wrk: apt-get install -y wrk (make bench does)")
    backends = ["sqlite"] + (["postgresql"] if postgres_available() else [])
    if only := os.environ.get("BENCH_BACKENDS"):
        backends = [b for b in backends if b in only.split(",")]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
            report(backend, run_backend(backend, Path(tmp)))
    print(f"memory per L1 entry (tracemalloc, 10,000 entries): {l1_entry_bytes():.0f} bytes")
    if not postgres_available():
        print(f"PostgreSQL skipped: nothing answers at {PG_ADMIN_DSN}")


if __name__ == "__main__":
    main()
