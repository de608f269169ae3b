"""``serve --log-level debug`` through a federation scenario: no log line of either cluster
carries a secret, a salted secret or a cache digest, and credentials a client put in a
URL never travel further in one.

qr1hi issues, c97qk accepts (both real processes at debug level, each listing the
other). The scenario: foreign tokens validated raw and salted, a routed read and a
federated list whose URLs carry ``api_token`` and ``reader_tokens``, a local token, a
revocation routed to the issuer and its notice back to c97qk. Then every line of both
logs is searched for every secret involved, in every form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    Cluster,
    ClusterProcess,
    cluster_config,
    free_port,
    remote_entry,
)
from clusterfed.tokens import parse_token, salt, salted_secret
from clusterfed.trust.validator import l2_digest_key

from tests.support.databases import DatabaseFactory

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
COLLECTIONS = "/arvados/v1/collections"
TOKENS = "/arvados/v1/api_client_authorizations"
CLUSTERS = ("qr1hi", "c97qk")
ROOTS = {
    cluster_id: f"debug-log-root-token-of-{cluster_id}-0123456789"
    for cluster_id in ("qr1hi", "c97qk")
}


@dataclass
class Pair:
    qr1hi: Cluster
    c97qk: Cluster
    processes: dict[str, ClusterProcess]

    def logs(self) -> dict[str, str]:
        return {cluster_id: process.log() for cluster_id, process in self.processes.items()}


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir: Path = tmp_path_factory.mktemp("debug-logs")
    ports = {"qr1hi": free_port(), "c97qk": free_port()}
    processes = {}
    for cluster_id, other in (("qr1hi", "c97qk"), ("c97qk", "qr1hi")):
        config = cluster_config(
            cluster_id,
            session_databases.new_url(cluster_id),
            remotes={other: remote_entry(ports[other], ActivateUsers=True, Proxy=True)},
            system_root_token=ROOTS[cluster_id],
        )
        processes[cluster_id] = ClusterProcess(
            config, workdir, port=ports[cluster_id], args=("--log-level", "debug")
        )
    started: list[ClusterProcess] = []
    try:
        for process in processes.values():
            process.start()
            started.append(process)
        yield Pair(processes["qr1hi"].cluster, processes["c97qk"].cluster, processes)
    finally:
        for process in started:
            process.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forms(token: str, *, accepted_at: str = "c97qk") -> set[str]:
    """Every form of ``token``'s secret that must never be logged: itself, the whole v2
    token, the secret salted for the accepting cluster, and that cluster's L2 digest."""
    parsed = parse_token(token)
    salted = salted_secret(parsed.secret, accepted_at)
    digest = hmac.new(
        l2_digest_key(accepted_at, ROOTS[accepted_at]), salted.encode(), hashlib.sha256
    ).hexdigest()
    return {parsed.secret, token, salted, salt(parsed, accepted_at).encode(), digest}


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def delivered(pair: Pair, token_uuid: str) -> bool:
    return f"revocation notice token={token_uuid} remote=c97qk delivered" in pair.logs()["qr1hi"]


def test_a_debug_level_federation_logs_no_secret(pair: Pair) -> None:
    qr1hi, c97qk = pair.qr1hi, pair.c97qk
    user, token = asyncio.run(qr1hi.new_user())
    second = asyncio.run(qr1hi.new_token(user))
    reader = asyncio.run(qr1hi.new_token(user))
    _, local = asyncio.run(c97qk.new_user())
    secrets = forms(token) | forms(second) | forms(reader) | forms(local)
    secrets |= set(ROOTS.values()) | {MANAGEMENT_TOKEN}
    token_uuid = parse_token(token).uuid
    assert token_uuid is not None

    with httpx.Client(timeout=15) as client:
        made = client.post(
            f"{qr1hi.base_url}{COLLECTIONS}",
            json={"collection": {"name": "logged?"}},
            headers=bearer(token),
        )
        assert made.status_code == 200, made.text
        uuid = made.json()["uuid"]
        # Validations: raw, salted as an Arvados controller sends it, and a local token.
        salted = salt(parse_token(second), "c97qk").encode()
        for credential in (token, salted, local):
            seen = client.get(f"{c97qk.base_url}{USERS_CURRENT}", headers=bearer(credential))
            assert seen.status_code == 200, seen.text
        # Credentials in the URL, on a routed read and on a federated list.
        in_url = {
            "api_token": token,
            "reader_tokens": json.dumps([reader]),
            "API_TOKEN": parse_token(second).secret,
        }
        routed = client.get(
            f"{c97qk.base_url}{COLLECTIONS}/{uuid}", params=in_url, headers=bearer(token)
        )
        assert routed.status_code == 200, routed.text
        listed = client.get(
            f"{c97qk.base_url}{COLLECTIONS}",
            params={**in_url, "federated": "true"},
            headers=bearer(token),
        )
        assert listed.status_code == 200, listed.text
        assert uuid in {item["uuid"] for item in listed.json()["items"]}
        # A revocation through c97qk reaches qr1hi, whose notice comes back to c97qk.
        revoked = client.delete(f"{c97qk.base_url}{TOKENS}/{token_uuid}", headers=bearer(token))
        assert revoked.status_code == 200, revoked.text
        wait_for(lambda: delivered(pair, token_uuid))
        after = client.get(f"{c97qk.base_url}{USERS_CURRENT}", headers=bearer(token))
        assert after.status_code == 401
    time.sleep(0.3)  # access lines are written after the answers

    logs = pair.logs()
    for cluster_id, text in logs.items():
        assert "DEBUG " in text, f"{cluster_id} did not log at debug level"
        for number, line in enumerate(text.splitlines(), 1):
            leaked = [secret[:12] for secret in secrets if secret in line]
            assert not leaked, f"{cluster_id} log line {number} carries {leaked}: {line[:300]}"
    # The issuer saw the routed read and the list part with no credential in their URLs.
    forwarded = [line for line in logs["qr1hi"].splitlines() if COLLECTIONS in line]
    assert forwarded, "qr1hi logged no forwarded collection request"
    assert not [line for line in forwarded if "api_token" in line.lower()]
    assert not [line for line in forwarded if "reader_tokens" in line.lower()]
    # c97qk's own access lines show the client's URL, redacted.
    assert "api_token=[REDACTED]" in logs["c97qk"]


def test_the_issuers_logs_do_not_hold_salted_copies_either(pair: Pair) -> None:
    """The notices' proofs are secrets salted for the receiver: not in the issuer's log."""
    user, token = asyncio.run(pair.qr1hi.new_user())
    assert httpx.get(f"{pair.c97qk.base_url}{USERS_CURRENT}", headers=bearer(token)).is_success
    answer = httpx.delete(
        f"{pair.qr1hi.base_url}{TOKENS}/{parse_token(token).uuid}", headers=bearer(token)
    )
    assert answer.status_code == 200
    uuid = parse_token(token).uuid
    wait_for(
        lambda: f"revocation notice token={uuid} remote=c97qk delivered" in pair.logs()["qr1hi"]
    )
    for text in pair.logs().values():
        assert not [secret for secret in forms(token) if secret in text]
    assert user  # the user exists; only their token's forms are looked for
