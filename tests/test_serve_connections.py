"""``clusterfed serve`` against clients that hold connections: a head that never ends, a
connection that says nothing, more open requests than a worker takes.

A real server process. The head timeout is 10 s; this module's server runs with it
shortened to 1 s through the environment (as its worker processes inherit it), so that
the test proves the mechanism without waiting 10 s; one test checks the default.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusterfed.cli.main import build_parser
from clusterfed.server.serving import (
    DEFAULT_LIMIT_CONCURRENCY,
    HEAD_TIMEOUT_ENV,
    HEAD_TIMEOUT_SECONDS,
    head_timeout,
    uvicorn_options,
)
from clusterfed.server.testing import ClusterProcess, cluster_config, running

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

HEAD_TIMEOUT = 1.0
LIMIT = 4
DISCOVERY = "/discovery/v1/apis/arvados/v1/rest"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    workdir: Path = tmp_path_factory.mktemp("serve-connections")
    config = cluster_config("qr1hi", f"sqlite+aiosqlite:///{workdir / 'qr1hi.db'}")
    process = ClusterProcess(
        config,
        workdir,
        args=("--limit-concurrency", str(LIMIT)),
        env={HEAD_TIMEOUT_ENV: str(HEAD_TIMEOUT)},
    )
    with running(process):
        yield process


def closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading EOF or a reset); None if it was
    still open after ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_half_sent_head_is_closed(server: ClusterProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /arvados/v1/users/current HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        waited = closed_after(sock, HEAD_TIMEOUT + 4)
    assert waited is not None, "a half-sent head held its connection open"
    assert HEAD_TIMEOUT - 0.3 <= waited < HEAD_TIMEOUT + 4


def test_a_silent_connection_is_closed_and_trickling_does_not_extend_it(
    server: ClusterProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        assert closed_after(sock, HEAD_TIMEOUT + 4) is not None
    # One byte every 0.3 s: each read would restart a per-read timeout, not this one.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < HEAD_TIMEOUT + 4


def test_a_complete_request_and_a_kept_alive_one_are_served(server: ClusterProcess) -> None:
    with httpx.Client(base_url=server.cluster.base_url) as client:
        assert client.get(DISCOVERY).status_code == 200
        time.sleep(HEAD_TIMEOUT + 0.3)  # idle between requests: keep-alive's business
        assert client.get(DISCOVERY).status_code == 200


def test_past_the_concurrency_limit_the_answer_is_503(server: ClusterProcess) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(LIMIT)]
    try:
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # open, and inside the head timeout
        refused = httpx.get(f"{server.cluster.base_url}{DISCOVERY}", timeout=5)
        assert refused.status_code == 503, refused.text
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while (answer := httpx.get(f"{server.cluster.base_url}{DISCOVERY}")).status_code == 503:
        assert time.monotonic() < deadline, "the limit did not let go"
        time.sleep(0.05)
    assert answer.status_code == 200


def test_defaults_are_ten_seconds_and_a_thousand_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HEAD_TIMEOUT_ENV, raising=False)
    assert HEAD_TIMEOUT_SECONDS == 10.0 and head_timeout() == 10.0
    monkeypatch.setenv(HEAD_TIMEOUT_ENV, "60")  # the environment only ever shortens it
    assert head_timeout() == 10.0
    args = build_parser().parse_args(["serve"])
    assert (args.limit_concurrency, args.log_level) == (DEFAULT_LIMIT_CONCURRENCY, "info")
    assert DEFAULT_LIMIT_CONCURRENCY == 1000
    options = uvicorn_options()
    assert options["limit_concurrency"] == 1000 and options["log_level"] == "info"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--log-level", "trace"])
