"""``clusterfed serve`` as an operator runs it: what a hostile client can make it hold,
and what its log lines may carry (never a secret).

A real server process (``python -m app serve``); memory is read from its
``/proc/<pid>/status``. The database plays no part in what is measured, so one SQLite
database serves the module.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusterfed.server.serving import redact_query
from clusterfed.server.testing import ClusterProcess, cluster_config, running

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

HUGE_HEADER_BYTES = 64 * 1024 * 1024
MAX_RSS_GROWTH_KB = 32 * 1024
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    workdir: Path = tmp_path_factory.mktemp("serve-limits")
    config = cluster_config("qr1hi", f"sqlite+aiosqlite:///{workdir / 'qr1hi.db'}")
    process = ClusterProcess(config, workdir)
    with running(process):
        yield process


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class RssSampler:
    """The largest VmRSS of ``pid`` seen while the block runs, every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = status_kb(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))


def send_huge_header(port: int, size: int) -> bytes:
    """Sends a request whose one header is ``size`` bytes, as fast as the server takes it;
    returns whatever the server answered (possibly before the header was all sent)."""
    answer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /arvados/v1/users/current HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk, sent = b"a" * CHUNK, 0
        try:
            while sent < size:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server has answered (or closed): stop sending
                sock.sendall(chunk)
                sent += len(chunk)
            else:
                sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except (ConnectionResetError, TimeoutError):
            pass
    return bytes(answer)


def test_huge_header_costs_bounded_memory_and_a_4xx(server: ClusterProcess) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    before = status_kb(pid, "VmRSS")
    started = time.monotonic()
    with RssSampler(pid) as sampler:
        answer = send_huge_header(server.port, HUGE_HEADER_BYTES)
    elapsed = time.monotonic() - started
    growth = sampler.peak - before
    print(f"64 MB header: RSS {before} kB -> peak {sampler.peak} kB (+{growth} kB), {elapsed:.2f}s")
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), answer[:200]
    assert growth < MAX_RSS_GROWTH_KB, f"RSS grew by {growth} kB"
    # And the server still serves.
    assert httpx.get(f"{server.cluster.base_url}/discovery/v1/apis/arvados/v1/rest").is_success


def test_long_authorization_header_is_431_with_the_spec_body(server: ClusterProcess) -> None:
    headers = {"Authorization": "Bearer " + "a" * 40_000}
    response = httpx.get(f"{server.cluster.base_url}/arvados/v1/users/current", headers=headers)
    assert response.status_code == 431, response.text
    assert set(response.json()) == {"errors", "error_token"}


SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
READER = "v2/qr1hi-gj3su-000000000000002/5pte6ck8kzo1p5bxzmo2tbefpxr3jhprqvkvwrjqmbiec4spzd"


def test_no_secret_in_the_access_log(server: ClusterProcess) -> None:
    base = server.cluster.base_url
    for query in (
        f"api_token={SECRET}",
        f"limit=1&API_TOKEN=v2/qr1hi-gj3su-000000000000001/{SECRET}&x=1",
        f"api%5Ftoken={SECRET}",
        f'reader_tokens=["{READER}"]&api_token={SECRET}',
        f"reader_tokens[]={READER}",
    ):
        response = httpx.get(f"{base}/arvados/v1/collections?{query}")
        assert response.status_code < 500
    marker = "/arvados/v1/collections?after-the-secrets"
    httpx.get(base + marker)
    deadline = time.monotonic() + 5
    while marker not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # the access log is written after the answer
    log = server.log()
    assert marker in log and "api_token=[REDACTED]" in log and "limit=1" in log
    assert SECRET not in log and READER.split("/")[2] not in log
    assert "reader_tokens=[REDACTED]" in log and "reader_tokens[]=[REDACTED]" in log


def test_redact_query_keeps_everything_but_credential_values() -> None:
    assert redact_query("/a?b=1&c") == "/a?b=1&c"
    assert redact_query("/a") == "/a"
    assert redact_query("/a?api_token=s&api_token=t&b=2") == (
        "/a?api_token=[REDACTED]&api_token=[REDACTED]&b=2"
    )
    assert redact_query("/a?api+token=s&Reader_Tokens=%5B%22t%22%5D") == (
        "/a?api+token=s&Reader_Tokens=[REDACTED]"
    )


def test_a_served_app_is_frozen_out_of_full_collections(tmp_path: Path) -> None:
    # Each worker process of `serve --workers N` builds its app with create_app_from_env;
    # what that allocated must not be walked by every full collection again.
    config = tmp_path / "c97qk.yml"
    database = f"sqlite+aiosqlite:///{tmp_path / 'c97qk.db'}"
    config.write_text(
        f"Clusters:\n  c97qk:\n    Database: {{URL: '{database}'}}\n"
        "    ManagementToken: test-management-token\n"
    )
    # gc.get_objects() lists exactly what a full collection walks; frozen objects are not in
    # it. Counting objects rather than timing the collection keeps the test deterministic
    # (the pause it stands for, up to 80 ms unfrozen, is in docs/benchmarks.md).
    program = (
        "import gc\n"
        "from clusterfed.server.main import create_app_from_env\n"
        "app = create_app_from_env()\n"
        "gc.collect()\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "CLUSTERFED_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=True,
    )
    frozen, walked = (int(count) for count in result.stdout.split())
    assert frozen > 50_000  # the modules, the app, its routes and models
    assert walked < 1_000  # unfrozen, a full collection walked all of them again
