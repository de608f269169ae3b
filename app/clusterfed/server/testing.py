"""Real clusters on loopback, for tests and benchmarks (clusterfed's own, and a host's).

``ClusterProcess``: ``python -m clusterfed serve`` as a child process with its own config
and database, the way an operator runs it; its ``Cluster`` makes users and tokens in
that database. ``ServerThread``: any ASGI app (a stub issuer that misbehaves on purpose,
or a cluster app built with an unusual config) under uvicorn in a background thread.
A host testing its own ``mount`` can start an issuing cluster with these. Needs the
``server`` extra (uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.metrics import MULTIPROC_ENV
from clusterfed.server.users.bootstrap import ensure_builtin_users
from clusterfed.server.users.service import create_user
from clusterfed.server.users.tokens import create_token, v2_token
from clusterfed.storage.db import create_engine, create_sessionmaker

MANAGEMENT_TOKEN = "test-management-token"
# What uvicorn logs when a worker's lifespan has run: it serves from then on.
STARTUP_COMPLETE = "Application startup complete."


# Test servers take their ports from below the kernel's ephemeral range (32768 and up on
# Linux), where outgoing connections take theirs, each pytest-xdist worker from its own
# block, handed out in turn. Asking the kernel for any free port and releasing it raced:
# two test processes starting servers at once could be handed the same port, and a port
# just handed out could be handed out again before its server had bound it.
FIRST_TEST_PORT = 20000
TEST_PORTS = 12000


def worker_port_block(worker: str | None, workers: int) -> range:
    """The ports of pytest-xdist worker ``worker`` ("gw0", ...) of ``workers``."""
    index = int(worker[2:]) if worker and worker[:2] == "gw" and worker[2:].isdigit() else 0
    workers = max(workers, 1)
    size = TEST_PORTS // workers
    start = FIRST_TEST_PORT + (index % workers) * size
    return range(start, start + size)


class PortAllocator:
    """Hands out the ports of ``block`` in turn, skipping any that cannot be bound."""

    def __init__(
        self,
        block: range,
        first: int | None = None,
        *,
        can_bind: Callable[[int], bool] | None = None,
    ) -> None:
        self.block = block
        self._next = first if first in block else block.start
        self._can_bind = can_bind or _can_bind
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            for _ in range(len(self.block)):
                port, self._next = self._next, self._next + 1
                if self._next == self.block.stop:
                    self._next = self.block.start
                if self._can_bind(port):
                    return port
        raise RuntimeError(f"no free loopback port in {self.block.start}-{self.block.stop - 1}")


def _can_bind(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:  # a server listens there, or a connection on it is still closing
            return False
    return True


_ports: list[PortAllocator] = []


def free_port() -> int:
    """A loopback port nothing is bound to, not handed out lately by this process."""
    if not _ports:
        block = worker_port_block(
            os.environ.get("PYTEST_XDIST_WORKER"),
            int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1),
        )
        # Start where the last run in this block most likely did not end.
        _ports.append(PortAllocator(block, block.start + os.getpid() % len(block)))
    return _ports[0].take()


def cluster_config(
    cluster_id: str,
    database_url: str,
    *,
    remotes: dict[str, dict[str, Any]] | None = None,
    login: dict[str, Any] | None = None,
    users: dict[str, Any] | None = None,
    federation: dict[str, Any] | None = None,
    system_root_token: str = "",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Database": {"URL": database_url},
        "ManagementToken": MANAGEMENT_TOKEN,
        "RemoteClusters": remotes or {},
    }
    if system_root_token:
        body["SystemRootToken"] = system_root_token
    for key, value in (("Login", login), ("Users", users), ("Federation", federation)):
        if value:
            body[key] = value
    return {"Clusters": {cluster_id: body}}


def remote_entry(port: int, **extra: Any) -> dict[str, Any]:
    return {"Host": f"127.0.0.1:{port}", "Scheme": "http", **extra}


@dataclass
class Cluster:
    """What a test knows about a running cluster: where it is and its database."""

    cluster_id: str
    port: int
    database_url: str
    config_path: Path | None = None
    scheme: str = "http"
    _users: int = field(default=0)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        engine = create_engine(self.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                yield session
                await session.commit()
        finally:
            await engine.dispose()

    async def new_user(self, *, email: str | None = None, **kwargs: Any) -> tuple[str, str]:
        """Creates an active user with a token; returns (user UUID, v2 token)."""
        self._users += 1
        kwargs.setdefault("is_active", True)
        async with self.session() as session:
            await ensure_builtin_users(session, self.cluster_id)
            user = await create_user(
                session,
                cluster_id=self.cluster_id,
                email=email or f"user{self._users}-{time.monotonic_ns()}@{self.cluster_id}.example",
                **kwargs,
            )
            token = await create_token(session, cluster_id=self.cluster_id, user_uuid=user.uuid)
            return user.uuid, v2_token(token)

    async def new_token(self, user_uuid: str, **kwargs: Any) -> str:
        async with self.session() as session:
            token = await create_token(
                session, cluster_id=self.cluster_id, user_uuid=user_uuid, **kwargs
            )
            return v2_token(token)


def wait_until_serving(
    base_url: str, *, timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before serving")
        try:
            # verify=False: TLS test clusters serve self-signed certificates.
            response = httpx.get(
                f"{base_url}/_health/ping", headers=headers, timeout=1, verify=False
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} did not start serving within {timeout}s")


class ClusterProcess:
    """``python -m app serve`` in a child process."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        (cluster_id,) = config["Clusters"]
        # ``port``: chosen beforehand, when clusters must name each other in their configs.
        self.port = port or free_port()
        self.config_path = workdir / f"{cluster_id}-{self.port}.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{cluster_id}-{self.port}.log"
        body = config["Clusters"][cluster_id]
        self.cluster = Cluster(
            cluster_id,
            self.port,
            body["Database"]["URL"],
            self.config_path,
            scheme="https" if body.get("TLS", {}).get("Certificate") else "http",
        )
        self.workers = workers
        self.args = args  # more `serve` options (--log-level debug, ...)
        self.env = env or {}  # more environment for the server process
        self.proc: subprocess.Popen | None = None

    def start(self) -> Cluster:
        self.launch()
        return self.wait_started()

    def launch(self) -> None:
        """Start the process without waiting for it to serve (see ``running_together``)."""
        env = {**os.environ, **self.env}
        if MULTIPROC_ENV not in self.env:
            # Each server counts into a directory of its own: one inherited from this
            # process would be shared by every server started here, and each start
            # empties it of the files the servers already running count into.
            env.pop(MULTIPROC_ENV, None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clusterfed",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    *self.args,
                ],
                cwd=self.config_path.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_started(self) -> Cluster:
        """Wait until every worker of the launched process serves."""
        try:
            wait_until_serving(self.cluster.base_url, proc=self.proc)
            self._wait_for_every_worker()
        except Exception:
            self.stop()
            raise RuntimeError(
                f"cluster failed to start; log:\n{self.log_path.read_text()}"
            ) from None
        return self.cluster

    def _wait_for_every_worker(self, timeout: float = 30.0) -> None:
        """One worker answering is not all of them: the others may still be starting,
        and a test that means every worker to see its requests must wait for them."""
        deadline = time.monotonic() + timeout
        while self.log().count(STARTUP_COMPLETE) < self.workers:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all {self.workers} workers started")
            time.sleep(0.05)

    def stop(self) -> None:
        self.terminate()
        self.reap()

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def reap(self) -> None:
        """Wait for a terminated process; kill it if it takes over 10 s."""
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port in a background thread."""

    def __init__(self, app: Any, *, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=0.5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(server: ClusterProcess) -> Iterator[Cluster]:
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def running_together(*servers: ClusterProcess) -> Iterator[list[Cluster]]:
    """Several clusters started at once and stopped at once: each process imports and
    starts while the others do (on another core), instead of one after the other. Their
    ports are chosen when they are made, so configs naming each other are written first;
    a cluster does not need its peers up to start."""
    try:
        for server in servers:
            server.launch()
        yield [server.wait_started() for server in servers]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.reap()


def local_config(cluster_id: str, database_url: str, **kwargs: Any) -> Any:
    """A ClusterConfig for an in-process app, built through the real config parser."""
    from clusterfed.config import parse_config

    return parse_config(cluster_config(cluster_id, database_url, **kwargs), source="<test>")


def issuer_and_acceptor_processes(
    databases: Any, workdir: Path, *, workers: int = 1, **c97qk: Any
) -> tuple[ClusterProcess, ClusterProcess]:
    """qr1hi issuing tokens and c97qk (``workers`` processes) accepting them, not started:
    qr1hi is in c97qk's RemoteClusters with ActivateUsers, and c97qk in qr1hi's (so qr1hi's
    tokens salted for c97qk count at qr1hi); ``c97qk`` adds config (login=..., ...)."""
    port = free_port()
    home_config = cluster_config(
        "qr1hi", databases.new_url("qr1hi"), remotes={"c97qk": remote_entry(port)}
    )
    home = ClusterProcess(home_config, workdir)
    config = cluster_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(home.port, ActivateUsers=True)},
        **c97qk,
    )
    return home, ClusterProcess(config, workdir, workers=workers, port=port)


@contextlib.contextmanager
def issuer_and_acceptor(
    databases: Any, workdir: Path, *, workers: int = 1, **c97qk: Any
) -> Iterator[tuple[Cluster, Cluster]]:
    """:func:`issuer_and_acceptor_processes`, both running until the block ends."""
    home, acceptor = issuer_and_acceptor_processes(databases, workdir, workers=workers, **c97qk)
    with running_together(home, acceptor) as (qr1hi, c97qk_cluster):
        yield qr1hi, c97qk_cluster
