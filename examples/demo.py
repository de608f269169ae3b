"""``make demo``: two federated clusters on loopback (SQLite), walked through the seed
scenarios with the same CLI and HTTP calls an operator and a user would make; then a
federation with a login cluster (three clusters, one of them issuing every user's token).

A script beside the package, not part of it: it runs the installed ``clusterfed`` command
(``clusterfed serve``, ``clusterfed users create``, ...) as an operator would, and talks to
the servers over HTTP. Run it with ``make demo`` or ``python examples/demo.py`` in a
virtualenv where clusterfed is installed with its server extra.

Everything lives under ``./var/demo/`` (configs, databases, server logs) and the servers
are stopped at the end. Each step prints what it does and what came back; any surprise
stops the demo with a non-zero exit.
"""

from __future__ import annotations

import hashlib
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
from clusterfed.tokens import parse_token

DEMO_DIR = Path("var/demo")
SECRET_IN_TOKEN = re.compile(r"(v2/[a-z0-9-]{27}/)[A-Za-z0-9]+")  # never echo a secret
CONTENT = b"bar"  # bar.txt, the demo's file: its block is 37b51d194a7513e45b56f6524f2d51f2+3


def _clusterfed_command() -> list[str]:
    """The ``clusterfed`` script installed beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("clusterfed")
    return [str(script)] if script.exists() else [sys.executable, "-m", "clusterfed"]


CLUSTERFED = _clusterfed_command()


class DemoFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(
        self, cluster_id: str, port: int, management_token: str, directory: Path = DEMO_DIR
    ) -> None:
        self.cluster_id = cluster_id
        self.port = port
        self.management_token = management_token
        self.directory = directory
        self.config_path = directory / f"{cluster_id}.yml"
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, peers: list[Cluster], *, login_cluster: str = "") -> None:
        config = {
            "Clusters": {
                self.cluster_id: {
                    "Database": {
                        "URL": f"sqlite+aiosqlite:///{self.directory.resolve()}/"
                        f"{self.cluster_id}.db"
                    },
                    "SystemRootToken": secrets.token_hex(20),
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
                    "Login": {"LoginCluster": login_cluster, "RemoteTokenRefresh": "5m"},
                    "Federation": {"PermissionCacheTTL": "2s"},
                }
            }
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def cli(self, *args: str) -> str:
        command = [*CLUSTERFED, *args, "--config", str(self.config_path)]
        shown = SECRET_IN_TOKEN.sub(
            r"\1<secret>", " ".join(["clusterfed", *args, "--config", str(self.config_path)])
        )
        print(f"    $ {shown}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DemoFailed(f"{shown} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        log = open(self.directory / f"{self.cluster_id}.log", "wb")  # noqa: SIM115 (lives with the process)
        self.proc = subprocess.Popen(
            [
                *CLUSTERFED,
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
                raise DemoFailed(
                    f"{self.cluster_id} exited; see {self.config_path.with_suffix('.log')}"
                )
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

    def put_block(self, token: str, data: bytes) -> str:
        """Stores ``data`` on this cluster's block server; returns the signed locator."""
        md5 = hashlib.md5(data).hexdigest()
        response = httpx.put(
            f"{self.base_url}/{md5}",
            content=data,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        print(f"    PUT {self.cluster_id}/{md5} -> {response.status_code} {response.text.strip()}")
        if response.status_code != 200:
            raise DemoFailed(
                f"storing a block on {self.cluster_id} answered {response.status_code}"
            )
        return response.text.strip()

    def get_block(self, token: str, locator: str) -> bytes:
        response = httpx.get(
            f"{self.base_url}/{locator}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        print(f"    GET {self.cluster_id}/{locator} -> {response.status_code} {response.content!r}")
        if response.status_code != 200:
            raise DemoFailed(
                f"reading a block from {self.cluster_id} answered {response.status_code}"
            )
        return response.content

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
    print("  alice writes bar.txt's content to c97qk's block server, then the collection")
    locator = c97qk.put_block(alice_for_c97qk, CONTENT)
    collection = c97qk.call(
        "POST",
        "/arvados/v1/collections",
        alice_for_c97qk,
        expect=200,
        json={"collection": {"name": "sample-1234", "manifest_text": f". {locator} 0:3:bar.txt\n"}},
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

    step("5. Alice reads the c97qk collection, and its file, through her home cluster")
    routed = qr1hi.call("GET", path, alice_token, expect=200)
    print(f"    manifest as relayed by qr1hi: {routed['manifest_text'].strip()!r}")
    remote_locator = routed["manifest_text"].split(" ")[1]
    if "+Rc97qk-" not in remote_locator:
        raise DemoFailed("the routed manifest does not say its block is on c97qk (+Rc97qk-)")
    print("  ...and bar.txt's content, from qr1hi's block server: qr1hi fetches it from c97qk")
    if qr1hi.get_block(alice_token, remote_locator) != CONTENT:
        raise DemoFailed("the block read through qr1hi is not the one written on c97qk")

    step("6. Alice searches both clusters at once; results merged in order, paged")
    home_locator = qr1hi.put_block(alice_token, CONTENT)
    qr1hi.call(
        "POST",
        "/arvados/v1/collections",
        alice_token,
        expect=200,
        json={
            "collection": {
                "name": "sample-5678",
                "manifest_text": f". {home_locator} 0:3:bar.txt\n",
            }
        },
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

    step("8. Alice logs out on c97qk: her token ends at qr1hi and on c97qk at once")
    print("  c97qk sends the revocation to qr1hi, the token's issuer")
    c97qk.call(
        "DELETE", f"/arvados/v1/api_client_authorizations/{token_uuid}", alice_for_c97qk, expect=200
    )
    c97qk.call("GET", "/arvados/v1/users/current", alice_for_c97qk, expect=401)
    qr1hi.call("GET", "/arvados/v1/users/current", alice_token, expect=401)


@contextmanager
def login_federation() -> Iterator[tuple[Cluster, Cluster, Cluster]]:
    directory = DEMO_DIR / "login"
    directory.mkdir(parents=True)
    qr1hi, c97qk, z1234 = (
        Cluster(cluster_id, free_port(), secrets.token_hex(16), directory)
        for cluster_id in ("qr1hi", "c97qk", "z1234")
    )
    everyone = [qr1hi, c97qk, z1234]
    for cluster in everyone:
        cluster.write_config([c for c in everyone if c is not cluster], login_cluster="qr1hi")
    try:
        yield qr1hi, c97qk, z1234
    finally:
        for cluster in everyone:
            cluster.stop()


def login_walk(qr1hi: Cluster, c97qk: Cluster, z1234: Cluster) -> None:
    step("Login cluster: qr1hi issues every identity; c97qk and z1234 defer to it")
    for cluster in (qr1hi, c97qk, z1234):
        cluster.cli("db", "upgrade")
    alice = qr1hi.cli("users", "create", "--email", "alice@qr1hi.example", "--active")
    alice_token = qr1hi.cli("tokens", "create", "--user", alice)
    carol = qr1hi.cli("users", "create", "--email", "carol@qr1hi.example", "--active")
    print(f"  alice = {alice}, carol = {carol} (both users of qr1hi)")
    for cluster in (qr1hi, c97qk, z1234):
        cluster.start()

    step("9. Alice's bare qr1hi secret (v1 form, as an OIDC token would be) works on c97qk")
    secret = parse_token(alice_token).secret
    for _ in range(2):
        me = c97qk.call("GET", "/arvados/v1/users/current", secret, expect=200)
        if me["uuid"] != alice:
            raise DemoFailed("c97qk did not recognise alice's bare secret")
    metrics = httpx.get(
        f"{c97qk.base_url}/metrics",
        headers={"Authorization": f"Bearer {c97qk.management_token}"},
    ).text
    accepted = re.search(
        r'clusterfed_validations_total\{issuer="qr1hi",outcome="accepted"\} (\S+)', metrics
    )
    print(f"    c97qk validated at qr1hi {accepted.group(1) if accepted else '?'} time(s)")

    step("10. Alice asks c97qk for a new token: qr1hi issues it, and it works on z1234")
    created = c97qk.call(
        "POST",
        "/arvados/v1/api_client_authorizations",
        alice_token,
        expect=200,
        json={"api_client_authorization": {"scopes": ["all"]}},
    )
    if not created["uuid"].startswith("qr1hi-gj3su-"):
        raise DemoFailed("the token was not issued by the login cluster")
    new_token = f"v2/{created['uuid']}/{created['api_token']}"
    z1234.call("GET", "/arvados/v1/users/current", new_token, expect=200)

    step("11. The users list on z1234 comes from qr1hi: carol is there, never having visited")
    listing = z1234.call("GET", "/arvados/v1/users", new_token, expect=200)
    if carol not in [item["uuid"] for item in listing["items"]]:
        raise DemoFailed("carol is missing from z1234's users list")
    z1234.call("GET", f"/arvados/v1/users/{carol}", new_token, expect=200)
    print("    (z1234 now mirrors carol)")

    step("12. /login on c97qk sends the browser to qr1hi")
    response = httpx.get(
        f"{c97qk.base_url}/login", params={"return_to": "https://workbench.example/"}
    )
    location = response.headers.get("location", "")
    print(f"    GET c97qk/login -> {response.status_code} Location: {location}")
    if response.status_code != 302 or not response.headers["location"].startswith(
        f"{qr1hi.base_url}/login?return_to="
    ):
        raise DemoFailed("c97qk did not redirect /login to qr1hi")

    step("13. A token c97qk issued itself is never forwarded to qr1hi")
    local = c97qk.cli("users", "create", "--email", "dan@c97qk.example", "--active")
    local_token = c97qk.cli("tokens", "create", "--user", local)
    c97qk.call("POST", "/arvados/v1/api_client_authorizations", local_token, expect=401, json={})

    step("14. c97qk runs work for alice with a token of its own; z1234 accepts it")
    runtime = c97qk.cli("tokens", "create", "--user", alice)
    print(f"    the runtime token's issuer is {runtime[3:8]}, its owner {alice}")
    z1234.call("GET", "/arvados/v1/users/current", alice_token, expect=200)  # z1234 mirrors her
    me = z1234.call("GET", "/arvados/v1/users/current", runtime, expect=200)
    if me["uuid"] != alice:
        raise DemoFailed("z1234 did not accept c97qk's runtime token for alice")
    print("    (z1234 read c97qk's /arvados/v1/config: it names the same LoginCluster)")


def main() -> int:
    os.environ.pop("CLUSTERFED_CONFIG", None)
    print("clusterfed demo: two federated clusters on loopback, SQLite under var/demo/")
    try:
        with clusters() as (qr1hi, c97qk):
            walk(qr1hi, c97qk)
        print("\nclusterfed demo, part two: a federation with a login cluster (three clusters)")
        with login_federation() as (qr1hi, c97qk, z1234):
            login_walk(qr1hi, c97qk, z1234)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}\n(server logs are in {DEMO_DIR}/)", file=sys.stderr)
        return 1
    print("\nAll scenarios passed. Configs, databases and logs are in var/demo/.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
