"""The example host, run as its author would: clusterfed from the installed wheel, a real
issuing cluster (`clusterfed serve`), the host under uvicorn. Run from this folder:
``python -m pytest tests`` (CI: ``make example``, in a fresh virtualenv)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent.parent
MANAGEMENT = "example-management-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clusterfed(*args: str, config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "clusterfed", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def write_config(path: Path, cluster_id: str, database: Path, remotes: dict) -> Path:
    body = {
        "Database": {"URL": f"sqlite+aiosqlite:///{database}"},
        "ManagementToken": MANAGEMENT,
        "SystemRootToken": f"root-{cluster_id}",
        "RemoteClusters": remotes,
    }
    path.write_text(json.dumps({"Clusters": {cluster_id: body}}))  # JSON is YAML
    return path


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    proc = subprocess.Popen(
        command,
        cwd=HERE,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{command} exited with {proc.returncode}"
            try:
                httpx.get(f"{base}/_health/ping", headers=auth(MANAGEMENT), timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{command} did not start"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    """qr1hi, a real cluster: (its URL, a user's token, its port)."""
    # qr1hi federates with c97qk (the host), so its tokens salted for c97qk count there;
    # nothing here makes qr1hi call c97qk.
    remotes = {"c97qk": {"Host": "127.0.0.1:9", "Scheme": "http"}}
    config = write_config(tmp_path / "qr1hi.yml", "qr1hi", tmp_path / "qr1hi.db", remotes)
    clusterfed("db", "upgrade", config=config)
    user = clusterfed("users", "create", "--email", "ada@qr1hi.example", "--active", config=config)
    token = clusterfed("tokens", "create", "--user", user, config=config)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "clusterfed",
        "serve",
        "--port",
        str(port),
        "--config",
        str(config),
    ]
    with serving(command, port) as base:
        yield base, token, port


def test_the_host_accepts_a_federated_token_and_keeps_it_across_a_restart(
    issuer: tuple[str, str, int], tmp_path: Path
) -> None:
    _, token, issuer_port = issuer
    remotes = {
        "qr1hi": {"Host": f"127.0.0.1:{issuer_port}", "Scheme": "http", "ActivateUsers": True}
    }
    config = write_config(tmp_path / "c97qk.yml", "c97qk", tmp_path / "host.db", remotes)
    clusterfed("db", "upgrade", "--federation-only", config=config)
    salted = clusterfed("tokens", "salt", token, "--remote", "c97qk", config=config)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--port",
        str(port),
    ]
    env = {"CLUSTERFED_CONFIG": str(config)}

    with serving(command, port, env) as host:
        assert httpx.get(f"{host}/whoami").status_code == 401
        for presented in (salted, token):  # as controllers send it, and as the SDK does
            answer = httpx.get(f"{host}/whoami", headers=auth(presented))
            assert answer.status_code == 200, answer.text
            assert answer.json()["issuer"] == "qr1hi"
            assert answer.json()["username"] == "ada"
        listing = httpx.get(f"{host}/federation/v1/token_cache", headers=auth(MANAGEMENT))
        assert listing.json()["items_available"] == 1

    # A restart empties the in-process cache: the table answers, aware of its timezone.
    with serving(command, port, env) as host:
        answer = httpx.get(f"{host}/whoami", headers=auth(token))
        assert answer.status_code == 200, answer.text
        metrics = httpx.get(f"{host}/metrics", headers=auth(MANAGEMENT)).text
        assert 'clusterfed_token_cache_lookups_total{level="l2",result="hit"} 1.0' in metrics

    # The operator's tools work on the host's database.
    cached = json.loads(clusterfed("cache", "list", "--json", config=config))
    assert [item["cluster_id"] for item in cached["items"]] == ["qr1hi"]
    assert "purged 1" in clusterfed("cache", "purge", "--all", config=config)
