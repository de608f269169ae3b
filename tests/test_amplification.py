"""What a stranger, or a cheap client, can make a cluster and its peers spend: run as an
attacker would, against a real ``clusterfed serve`` process (one worker) whose peers are
stubs that count every request they get.

- Bodies of megabytes, sent without a credential, are refused (413) in milliseconds,
  before they are read to the end, while another request on the same worker is answered.
- No credential, a malformed one, or a made-up token of this cluster costs the peers
  nothing: no forward, fan-out, lookup by hash or revocation reaches them.
- A burst of federated lists from one client spends its ``FanoutRate`` budget: 429s
  with ``Retry-After``, and what reaches each peer stays within the budget.
- Inside a fan-out nothing is retried, and a peer answering 5xx opens its circuit.

The timings asserted are bounds on cost (each was seconds to tens of seconds before),
with room for a loaded machine; the database plays no part, so SQLite serves the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from clusterfed.outbound.circuit import FAILURE_THRESHOLD
from clusterfed.params import MAX_BODY_BYTES, MAX_FIELDS
from clusterfed.routing.manifests import portable_data_hash
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    ClusterProcess,
    ServerThread,
    cluster_config,
    remote_entry,
    running,
)

from tests.support.counting_peer import CountingPeer

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

FORM = "application/x-www-form-urlencoded"
COLLECTIONS = "/arvados/v1/collections"
FANOUT_RATE = 10  # the default: burst 20
# A refusal, and a request beside it, must cost well under this.
BOUND_SECONDS = 0.3
PEERS = ("zzzz1", "zzzz2")  # Proxy remotes: every federated list asks them
SPLIT_PEER = "zzzz3"  # not a Proxy: only lists naming its UUIDs reach it


@dataclass
class Setup:
    cluster: Cluster
    peers: dict[str, CountingPeer]
    token: str  # a real user's token of the cluster
    ports: dict[str, int]  # each peer's

    def url(self, path: str) -> str:
        return f"{self.cluster.base_url}{path}"

    def reset(self) -> None:
        for peer in self.peers.values():
            peer.reset()

    def reached(self) -> dict[str, int]:
        return {cluster: peer.count for cluster, peer in self.peers.items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir: Path = tmp_path_factory.mktemp("amplification")
    peers = {cluster: CountingPeer(cluster) for cluster in (*PEERS, SPLIT_PEER)}
    threads = [ServerThread(peer.app) for peer in peers.values()]
    for thread in threads:
        thread.start()
    try:
        remotes = {
            cluster: remote_entry(thread.port, Proxy=cluster in PEERS)
            for cluster, thread in zip(peers, threads, strict=True)
        }
        config = cluster_config(
            "c97qk",
            f"sqlite+aiosqlite:///{workdir / 'c97qk.db'}",
            remotes=remotes,
            # Each test names its own client through X-Forwarded-For: budgets stay apart.
            federation={"TrustedProxies": ["127.0.0.1/32"]},
        )
        with running(ClusterProcess(config, workdir)) as cluster:
            _, token = asyncio.run(cluster.new_user())
            ports = {cluster: thread.port for cluster, thread in zip(peers, threads, strict=True)}
            yield Setup(cluster, peers, token, ports)
    finally:
        for thread in threads:
            thread.stop()


def client_headers(client: str, token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"X-Forwarded-For": client, **extra}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"errors", "error_token"}, body


# -- bodies of megabytes -------------------------------------------------------------

MILLION_FIELDS = b"a=&" * 1_000_000  # 3 MB
DISTINCT_FIELDS = b"&".join(b"f%07d=1" % index for index in range(300_000))  # 3 MB
JSON_OBJECT = json.dumps({f"k{index:07d}": index for index in range(300_000)}).encode()  # 4 MB
BODIES = {
    "million-fields": (MILLION_FIELDS, FORM),
    "distinct-fields": (DISTINCT_FIELDS, FORM),
    "json-object": (JSON_OBJECT, "application/json"),
}


class Pinger:
    """Pings the worker every 10 ms from another thread while the block runs; the
    slowest answer is what a request beside the hostile one waited."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.slowest = 0.0
        self.answered = 0
        self._started_with = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get("/_health/ping").status_code == 200
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answered += 1
                self._stop.wait(0.01)

    def __enter__(self) -> Pinger:
        self._thread.start()
        self._wait_for(1)  # its connection is open and warm
        self.slowest = 0.0  # setting the connection up is not what is measured
        self._started_with = self.answered
        return self

    def __exit__(self, *exc: object) -> None:
        # At least two answers since the block began: one of them was beside the request.
        self._wait_for(self._started_with + 2)
        self._stop.set()
        self._thread.join()

    def _wait_for(self, answered: int) -> None:
        deadline = time.monotonic() + 10
        while self.answered < answered and time.monotonic() < deadline:
            time.sleep(0.002)


def send_declared(port: int, path: str, content_type: str, body: bytes) -> tuple[bytes, float]:
    """``body`` with its ``Content-Length``, sent by another thread as fast as the server
    takes it; returns the answer and how long it took to come (the server's cost, not the
    time this machine takes to push megabytes through a socket)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"X-Http-Method-Override: GET\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:

        def send_body() -> None:
            # OSError: answered and closed before the body was all sent.
            with contextlib.suppress(OSError):
                sock.sendall(body)

        started = time.monotonic()
        sock.sendall(head)
        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        try:
            while b"error_token" not in answer and (data := sock.recv(65536)):
                answer.extend(data)
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
        sock.shutdown(socket.SHUT_RDWR)
        sender.join()
    return bytes(answer), elapsed


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("query", ["", "?federated=true"], ids=["plain", "federated"])
def test_a_body_of_megabytes_is_refused_in_milliseconds(
    setup: Setup, name: str, query: str
) -> None:
    body, content_type = BODIES[name]
    assert len(body) > 2 * MAX_BODY_BYTES
    setup.reset()
    with Pinger(setup.cluster.base_url) as pinger:
        answer, elapsed = send_declared(setup.cluster.port, COLLECTIONS + query, content_type, body)
    print(f"{name}{query}: refused in {elapsed:.3f}s, slowest ping {pinger.slowest:.3f}s")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert elapsed < BOUND_SECONDS
    assert pinger.answered and pinger.slowest < BOUND_SECONDS
    assert setup.reached() == dict.fromkeys(setup.peers, 0)
    # As a client library sends it, too: the 413 with the error body.
    headers = {"Content-Type": content_type, "X-Http-Method-Override": "GET"}
    response = httpx.post(setup.url(COLLECTIONS + query), content=body, headers=headers)
    assert_error(response, 413)


def send_streamed(port: int, path: str, content_type: str, body: bytes) -> tuple[bytes, int]:
    """``body`` sent chunked (no Content-Length) until the server answers; returns the
    answer and how many bytes of the body were sent before it came."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        "X-Http-Method-Override: GET\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    answer, sent, chunk = bytearray(), 0, 16 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        try:
            while sent < len(body):
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    data = None
                if data is not None:
                    answer.extend(data)
                    break  # answered (or closed): stop sending
                piece = body[sent : sent + chunk]
                sock.setblocking(True)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sock.setblocking(False)
                sent += len(piece)
                # Paced, as over a real network: on loopback the kernel's buffers would
                # take the whole body at once, whether the server reads it or not.
                time.sleep(0.001)
            sock.setblocking(True)
            while b"error_token" not in answer and (data := sock.recv(65536)):
                answer.extend(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return bytes(answer), sent


@pytest.mark.parametrize("name", list(BODIES))
def test_a_streamed_body_is_not_read_past_the_cap(setup: Setup, name: str) -> None:
    body, content_type = BODIES[name]
    with Pinger(setup.cluster.base_url) as pinger:
        started = time.monotonic()
        answer, sent = send_streamed(setup.cluster.port, COLLECTIONS, content_type, body)
        elapsed = time.monotonic() - started
    print(f"{name} streamed: {sent} bytes sent, answered in {elapsed:.3f}s")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Reading stopped at the cap: the rest was never sent, let alone parsed.
    assert sent < len(body) / 2
    assert elapsed < BOUND_SECONDS and pinger.slowest < BOUND_SECONDS


def test_too_many_fields_in_a_small_form_is_refused(setup: Setup) -> None:
    body = b"&".join(b"f%d=" % index for index in range(MAX_FIELDS + 1))
    assert len(body) < MAX_BODY_BYTES
    headers = {"Content-Type": FORM, "X-Http-Method-Override": "GET"}
    response = httpx.post(setup.url(COLLECTIONS), content=body, headers=headers)
    assert_error(response, 413)
    query = "&".join(f"f{index}=" for index in range(MAX_FIELDS + 1))
    assert_error(httpx.get(setup.url(f"{COLLECTIONS}?{query}")), 413)
    # At the cap, the request is served (here: refused for want of a credential).
    fields = b"&".join(b"f%d=" % index for index in range(MAX_FIELDS))
    response = httpx.post(setup.url(COLLECTIONS), content=fields, headers=headers)
    assert response.status_code == 401, response.text


def test_other_api_paths_are_capped_too(setup: Setup) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    headers = {"Content-Type": "application/json"}
    for path in ("/federation/v1/permission_checks", "/federation/v1/revocations"):
        assert_error(httpx.post(setup.url(path), content=body, headers=headers), 413)


# -- strangers cost the peers nothing ------------------------------------------------

REMOTE_OBJECT = f"{PEERS[0]}-4zz18-000000000000001"
REMOTE_TOKEN = f"{PEERS[0]}-gj3su-000000000000001"
SPLIT = json.dumps(
    [["uuid", "in", [f"{cluster}-4zz18-000000000000001" for cluster in (*PEERS, SPLIT_PEER)]]]
)
UNKNOWN_PDH = portable_data_hash(". d41d8cd98f00b204e9800998ecf8427e+0 0:0:nothing-here\n")
# (method, path, query, form body sent with the GET override)
ROUTED = {
    "get-object": ("GET", f"{COLLECTIONS}/{REMOTE_OBJECT}", {}, None),
    "update-object": ("PUT", f"{COLLECTIONS}/{REMOTE_OBJECT}", {}, None),
    "delete-object": ("DELETE", f"{COLLECTIONS}/{REMOTE_OBJECT}", {}, None),
    "create-there": ("POST", COLLECTIONS, {"cluster_id": PEERS[0]}, None),
    "list-there": ("GET", COLLECTIONS, {"cluster_id": PEERS[0]}, None),
    "federated-list": ("GET", COLLECTIONS, {"federated": "true"}, None),
    "split-list": ("GET", COLLECTIONS, {"filters": SPLIT}, None),
    "by-hash": ("GET", f"{COLLECTIONS}/{UNKNOWN_PDH}", {}, None),
    "federated-override": ("POST", COLLECTIONS, {}, {"federated": "true", "limit": "5"}),
    "revoke-there": ("DELETE", f"/arvados/v1/api_client_authorizations/{REMOTE_TOKEN}", {}, None),
}
LOCAL_SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
STRANGERS = {
    "no-credential": None,
    "anonymous-dash": "-",
    "malformed": "v2/c97qk-gj3su-000000000000001",
    "made-up-local-token": f"v2/c97qk-gj3su-000000000000001/{LOCAL_SECRET}",
    "made-up-bare-secret": LOCAL_SECRET,
}


def send_routed(setup: Setup, case: str, token: str | None, client: str) -> httpx.Response:
    method, path, query, form = ROUTED[case]
    headers = client_headers(client, token)
    content = None
    if form is not None:
        headers |= {"Content-Type": FORM, "X-Http-Method-Override": "GET"}
        content = urlencode(form).encode()
    elif method in ("PUT", "POST"):
        headers["Content-Type"] = "application/json"
        content = json.dumps({"collection": {"name": "x"}}).encode()
    return httpx.request(
        method, setup.url(path), params=query, headers=headers, content=content, timeout=30
    )


@pytest.mark.parametrize("stranger", list(STRANGERS))
def test_a_stranger_reaches_no_peer(setup: Setup, stranger: str) -> None:
    setup.reset()
    for case in ROUTED:
        response = send_routed(setup, case, STRANGERS[stranger], f"10.1.0.{len(stranger)}")
        assert response.status_code == 401, (case, response.text[:300])
        assert_error(response, 401)
        assert setup.reached() == dict.fromkeys(setup.peers, 0), case


def test_the_same_requests_with_a_real_token_do_reach_the_peers(setup: Setup) -> None:
    # The control: without it, the test above would pass for a cluster that never routes.
    for case in ROUTED:
        setup.reset()
        response = send_routed(setup, case, setup.token, "10.2.0.1")
        assert response.status_code != 401, (case, response.text[:300])
        assert sum(setup.reached().values()) >= 1, case


# -- the fan-out budget --------------------------------------------------------------


async def _burst(setup: Setup, count: int, client: str) -> list[httpx.Response]:
    headers = client_headers(client, setup.token)
    async with httpx.AsyncClient(base_url=setup.cluster.base_url, timeout=30) as http:
        return await asyncio.gather(
            *(
                http.get(COLLECTIONS, params={"federated": "true"}, headers=headers)
                for _ in range(count)
            )
        )


def test_a_burst_of_federated_lists_is_budgeted(setup: Setup) -> None:
    setup.reset()
    started = time.monotonic()
    responses = asyncio.run(_burst(setup, 80, "10.3.0.1"))
    elapsed = time.monotonic() - started
    statuses = [response.status_code for response in responses]
    served, refused = statuses.count(200), statuses.count(429)
    print(f"80 federated lists in {elapsed:.2f}s: {served} served, {refused} refused")
    assert served + refused == 80, statuses
    assert refused > 0
    allowed = 2 * FANOUT_RATE + FANOUT_RATE * elapsed
    for peer in PEERS:
        # Each served list asked each Proxy peer once; nothing else reached them.
        assert setup.peers[peer].count == served <= allowed, (peer, setup.peers[peer].count)
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429)
            assert int(response.headers["Retry-After"]) >= 1
    # Another client's budget is its own.
    other = asyncio.run(_burst(setup, 1, "10.3.0.2"))
    assert other[0].status_code == 200, other[0].text


def test_a_list_of_one_cluster_is_not_a_fanout(setup: Setup) -> None:
    headers = client_headers("10.4.0.1", setup.token)
    for _ in range(3 * FANOUT_RATE):
        response = httpx.get(setup.url(COLLECTIONS), params={"limit": "1"}, headers=headers)
        assert response.status_code == 200, response.text


def test_a_fanout_retries_nothing_and_a_5xx_opens_the_circuit(setup: Setup) -> None:
    setup.reset()
    peer = setup.peers[SPLIT_PEER]
    peer.status = 503
    uuids = ["c97qk-4zz18-000000000000001", f"{SPLIT_PEER}-4zz18-000000000000001"]
    filters = json.dumps([["uuid", "in", uuids]])
    for attempt in range(FAILURE_THRESHOLD + 2):
        headers = client_headers(f"10.5.0.{attempt}", setup.token)
        response = httpx.get(setup.url(COLLECTIONS), params={"filters": filters}, headers=headers)
        assert response.status_code in (502, 503), response.text
    # One request per list, never retried; then the circuit is open and asks no more.
    assert peer.count == FAILURE_THRESHOLD, peer.requests


# -- a satellite sends nothing to its login cluster for a stranger -------------------

LOGIN_ROUTES = [
    ("GET", "/arvados/v1/users"),
    ("GET", "/arvados/v1/api_client_authorizations"),
    ("POST", "/arvados/v1/api_client_authorizations"),
    ("POST", "/arvados/v1/users/setup"),
    ("POST", f"/arvados/v1/users/{PEERS[0]}-tpzed-000000000000001/activate"),
]


def test_a_satellite_sends_nothing_to_its_login_cluster_for_a_stranger(
    setup: Setup, tmp_path: Path
) -> None:
    login = PEERS[0]
    remotes = {login: remote_entry(setup.ports[login])}
    config = cluster_config(
        "c97qs",
        f"sqlite+aiosqlite:///{tmp_path / 'c97qs.db'}",
        remotes=remotes,
        login={"LoginCluster": login},
    )
    with running(ClusterProcess(config, tmp_path)) as satellite:
        setup.reset()
        for credential in (None, "-", "v2/c97qs-gj3su-000000000000001"):
            for method, path in LOGIN_ROUTES:
                headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
                response = httpx.request(
                    method, f"{satellite.base_url}{path}", headers=headers, json={}
                )
                assert_error(response, 401)
        assert setup.peers[login].count == 0, setup.peers[login].requests
