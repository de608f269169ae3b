"""``make demo``: two federated clusters on loopback (SQLite), walked through the seed
scenarios with the same CLI and HTTP calls an operator and a user would make.

Everything lives under ``./var/demo/`` (configs, databases, server logs) and the servers
are stopped at the end. Each step prints what it does and what came back; any surprise
stops the demo with a non-zero exit.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from .tokens import parse_token

DEMO_DIR = Path("var/demo")
SECRET_IN_TOKEN = re.compile(r"(v2/[a-z0-9-]{27}/)[A-Za-z0-9]+")  # never echo a secret
MANIFEST = ". 37b51d194a7513e45b56f6524f2d51f2+3 0:3:bar.txt\n"


class DemoFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self, cluster_id: str, port: int, management_token: str) -> None:
        self.cluster_id = cluster_id
        self.port = port
        self.management_token = management_token
        self.config_path = DEMO_DIR / f"{cluster_id}.yml"
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, peers: list[Cluster]) -> None:
        config = {
            "Clusters": {
                self.cluster_id: {
                    "Database": {
                        "URL": f"sqlite+aiosqlite:///{DEMO_DIR.resolve()}/{self.cluster_id}.db"
                    },
                    "ManagementToken": self.management_token,
                    "RemoteClusters": {
                        peer.cluster_id: {
                            "Host": f"127.0.0.1:{peer.port}",
                            "Scheme": "http",
                            "Proxy": True,
                            "ActivateUsers": True,
                        }
                        for peer in peers
                    },
                    "Login": {"RemoteTokenRefresh": "5m"},
                    "Federation": {"PermissionCacheTTL": "2s"},
                }
            }
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def cli(self, *args: str) -> str:
        command = [sys.executable, "-m", "clusterfed", *args, "--config", str(self.config_path)]
        shown = SECRET_IN_TOKEN.sub(
            r"\1<secret>", " ".join(["clusterfed", *args, "--config", str(self.config_path)])
        )
        print(f"    $ {shown}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DemoFailed(f"{shown} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        log = open(DEMO_DIR / f"{self.cluster_id}.log", "wb")  # noqa: SIM115 (lives with the process)
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        headers = {"Authorization": f"Bearer {self.management_token}"}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoFailed(f"{self.cluster_id} exited; see {DEMO_DIR}/{self.cluster_id}.log")
            try:
                if httpx.get(f"{self.base_url}/_health/ping", headers=headers).status_code == 200:
                    print(f"  {self.cluster_id} serving on {self.base_url}")
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise DemoFailed(f"{self.cluster_id} did not start within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def call(self, method: str, path: str, token: str, *, expect: int, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.base_url}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )
        body = response.json() if response.content else None
        summary = json.dumps(body)[:160] if body is not None else ""
        print(f"    {method} {self.cluster_id}{path} -> {response.status_code} {summary}")
        if response.status_code != expect:
            raise DemoFailed(f"expected {expect}, got {response.status_code}")
        return body


def step(title: str) -> None:
    print(f"\n== {title}")


@contextmanager
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    qr1hi = Cluster("qr1hi", free_port(), secrets.token_hex(16))
    c97qk = Cluster("c97qk", free_port(), secrets.token_hex(16))
    qr1hi.write_config([c97qk])
    c97qk.write_config([qr1hi])
    try:
        yield qr1hi, c97qk
    finally:
        for cluster in (qr1hi, c97qk):
            cluster.stop()


def walk(qr1hi: Cluster, c97qk: Cluster) -> None:
    step("Set up: migrate both clusters, create users and tokens with the CLI")
    for cluster in (qr1hi, c97qk):
        cluster.cli("db", "upgrade")
    alice = qr1hi.cli("users", "create", "--email", "alice@qr1hi.example", "--active")
    alice_token = qr1hi.cli("tokens", "create", "--user", alice)
    bob = qr1hi.cli("users", "create", "--email", "bob@qr1hi.example", "--active")
    bob_token = qr1hi.cli("tokens", "create", "--user", bob)
    alice_for_c97qk = qr1hi.cli("tokens", "salt", alice_token, "--remote", "c97qk")
    print(f"  alice = {alice}; her token salted for c97qk ends ...{alice_for_c97qk[-6:]}")

    step("Start both clusters (each lists the other in RemoteClusters)")
    qr1hi.start()
    c97qk.start()

    step("1. Alice presents her qr1hi token to c97qk: c97qk asks qr1hi, mirrors her")
    me = c97qk.call("GET", "/arvados/v1/users/current", alice_for_c97qk, expect=200)
    if me["uuid"] != alice:
        raise DemoFailed("c97qk did not recognise alice")
    c97qk.call("GET", "/arvados/v1/api_client_authorizations/current", alice_for_c97qk, expect=200)
    print("  (the second call was answered from c97qk's token cache)")

    step("2. A garbage token and an unknown cluster's token are refused at once")
    c97qk.call("GET", "/arvados/v1/users/current", "v2/qr1hi-gj3su-nope/'; DROP TABLE", expect=401)
    unknown = f"v2/zzzzz-gj3su-{'0' * 15}/{'x' * 50}"
    c97qk.call("GET", "/arvados/v1/users/current", unknown, expect=401)

    step("3. Alice moves her c97qk collection into a project on qr1hi")
    project = qr1hi.call(
        "POST",
        "/arvados/v1/groups",
        alice_token,
        expect=200,
        json={"group": {"name": "Alice's results", "group_class": "project"}},
    )
    bobs = qr1hi.call(
        "POST",
        "/arvados/v1/groups",
        bob_token,
        expect=200,
        json={"group": {"name": "Bob's private project", "group_class": "project"}},
    )
    collection = c97qk.call(
        "POST",
        "/arvados/v1/collections",
        alice_for_c97qk,
        expect=200,
        json={"collection": {"name": "sample-1234", "manifest_text": MANIFEST}},
    )
    path = f"/arvados/v1/collections/{collection['uuid']}"
    print("  c97qk asks qr1hi: may alice write to her project? (yes)")
    c97qk.call(
        "PUT",
        path,
        alice_for_c97qk,
        expect=200,
        json={"collection": {"owner_uuid": project["uuid"]}},
    )
    print("  ...and to Bob's project? (no: 403)")
    c97qk.call(
        "PUT", path, alice_for_c97qk, expect=403, json={"collection": {"owner_uuid": bobs["uuid"]}}
    )

    step("4. The operator of c97qk inspects and purges the token cache")
    print(c97qk.cli("cache", "list"))
    token_uuid = parse_token(alice_token).uuid or ""
    print(c97qk.cli("cache", "purge", token_uuid))
    c97qk.call("GET", "/federation/v1/remote_clusters", c97qk.management_token, expect=200)
    print("  the next request re-validates alice at qr1hi:")
    c97qk.call("GET", "/arvados/v1/users/current", alice_for_c97qk, expect=200)

    step("5. Alice reads the c97qk collection through her home cluster (routed there)")
    routed = qr1hi.call("GET", path, alice_token, expect=200)
    print(f"    manifest as relayed by qr1hi: {routed['manifest_text'].strip()!r}")
    if "+K@c97qk" not in routed["manifest_text"]:
        raise DemoFailed("the routed manifest lacks the +K@c97qk hint")

    step("6. Alice searches both clusters at once; results merged in order, paged")
    qr1hi.call(
        "POST",
        "/arvados/v1/collections",
        alice_token,
        expect=200,
        json={"collection": {"name": "sample-5678", "manifest_text": MANIFEST}},
    )
    search = {
        "federated": "true",
        "filters": '[["name", "like", "sample-%"]]',
        "order": "name asc",
        "limit": "1",
    }
    first = qr1hi.call("GET", "/arvados/v1/collections", alice_token, expect=200, params=search)
    second = qr1hi.call(
        "GET",
        "/arvados/v1/collections",
        alice_token,
        expect=200,
        params={**search, "next_page": first["next_page"]},
    )
    names = [item["name"] for item in first["items"] + second["items"]]
    print(f"    two pages of one: {names} (items_available={first['items_available']})")
    if names != ["sample-1234", "sample-5678"]:
        raise DemoFailed("the federated search did not come back merged in order")

    step("7. A salted token is only good for validation: elsewhere on qr1hi it is refused")
    qr1hi.call(
        "GET", "/arvados/v1/users/current", alice_for_c97qk, expect=200, params={"remote": "c97qk"}
    )
    qr1hi.call(
        "GET", "/arvados/v1/collections", alice_for_c97qk, expect=401, params={"remote": "c97qk"}
    )


def main() -> int:
    os.environ.pop("CLUSTERFED_CONFIG", None)
    print("clusterfed demo: two federated clusters on loopback, SQLite under var/demo/")
    try:
        with clusters() as (qr1hi, c97qk):
            walk(qr1hi, c97qk)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}\n(server logs are in {DEMO_DIR}/)", file=sys.stderr)
        return 1
    print("\nAll scenarios passed. Configs, databases and logs are in var/demo/.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
