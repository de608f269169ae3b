"""Keep throughput: one 64 MiB block written and read on one cluster, md5 included.

    .venv/bin/python -m bench keep

A real cluster (``python -m clusterfed serve``, one worker, a Directory volume in a
temporary directory) and a client that costs as little as possible (a plain socket,
so the numbers are the server's). Each figure is the median of ``ROUNDS`` transfers of
the same random 64 MiB block: PUT (the server hashes it, writes it to a temporary
file, fsyncs and renames it) and GET (the server checks the stored block's md5 before
the first byte, then streams it). Targets on a 2-core machine: GET >= 300 MB/s,
PUT >= 150 MB/s.

``transfer_put`` and ``transfer_get`` take any base URL, so other Keep benchmarks (a
block read through another cluster) reuse them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from clusterfed.server.testing import ClusterProcess, cluster_config, running

BLOCK_SIZE = 1 << 26
ROUNDS = 5
ROOT_TOKEN = "benchkeeprootsecret0123456789"
RECV = 1 << 20


def _connect(base_url: str) -> socket.socket:
    parts = urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port or 80))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    return sock


def _read_response(sock: socket.socket, sink: Callable[[bytes], None]) -> tuple[int, bytes]:
    """Reads one response with a Content-Length; feeds the body to ``sink``."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    received = len(rest)
    sink(rest)
    buffer = bytearray(RECV)
    view = memoryview(buffer)
    while received < length:
        count = sock.recv_into(view, min(RECV, length - received))
        if not count:
            raise ConnectionError("closed before the whole body")
        sink(view[:count])
        received += count
    return status, head


def transfer_put(base_url: str, token: str, data: bytes) -> tuple[float, str]:
    """Seconds to PUT ``data`` as a block, and the locator answered."""
    md5 = hashlib.md5(data).hexdigest()
    request = (
        f"PUT /{md5} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    body = bytearray()
    with _connect(base_url) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        sock.sendall(data)
        status, _ = _read_response(sock, body.extend)
        elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"PUT answered {status}: {bytes(body[:200])!r}")
    return elapsed, body.decode().strip()


def transfer_get(base_url: str, token: str, locator: str) -> tuple[float, int]:
    """Seconds to GET a block (its bytes only counted, not kept), and its size."""
    request = (
        f"GET /{locator} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    with _connect(base_url) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        status, _ = _read_response(sock, count)
        elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"GET answered {status}")
    return elapsed, size


def rate(seconds: list[float], size: int = BLOCK_SIZE) -> float:
    return size / statistics.median(seconds) / 1e6


async def bench_local(workdir: Path) -> list[tuple[str, float, float]]:
    """(label, MB/s, target) of a 64 MiB block PUT and GET on one cluster."""
    database = f"sqlite+aiosqlite:///{workdir / 'qr1hi.db'}"
    config = cluster_config("qr1hi", database, system_root_token=ROOT_TOKEN)
    config["Clusters"]["qr1hi"]["Volumes"] = {
        "qr1hi-nyw5e-000000000000000": {
            "Driver": "Directory",
            "DriverParameters": {"Root": str(workdir / "keep")},
        }
    }
    data = os.urandom(BLOCK_SIZE)
    with running(ClusterProcess(config, workdir)) as cluster:
        _, token = await cluster.new_user()
        base = cluster.base_url
        puts, gets = [], []
        locator = ""
        for _ in range(ROUNDS):
            seconds, locator = await asyncio.to_thread(transfer_put, base, token, data)
            puts.append(seconds)
        for _ in range(ROUNDS):
            seconds, size = await asyncio.to_thread(transfer_get, base, token, locator)
            assert size == BLOCK_SIZE
            gets.append(seconds)
    return [
        ("local PUT of a 64 MiB block", rate(puts), 150.0),
        ("local GET of a 64 MiB block", rate(gets), 300.0),
    ]


def report(rows: list[tuple[str, float, float]]) -> None:
    for label, measured, target in rows:
        verdict = "ok" if measured >= target else "BELOW TARGET"
        print(f"  {label:<40} {measured:8.1f} MB/s  (target >= {target:.0f}: {verdict})")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clusterfed-bench-keep-") as tmp:
        report(asyncio.run(bench_local(Path(tmp))))


if __name__ == "__main__":
    main()
