"""A federation with a login cluster, on real processes (SPEC 3.8).

qr1hi is the login cluster; c97qk and z1234 are satellites (``LoginCluster: qr1hi`` on
all three); x9999 is a peer of z1234 that is not in the federation (no LoginCluster).
What each test observes comes from outside the satellites' caches: qr1hi's access log
says when it was asked, the satellites' databases say whom they mirrored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from clusterfed.server.models import User
from clusterfed.server.testing import (
    Cluster,
    ClusterProcess,
    cluster_config,
    free_port,
    remote_entry,
    running_together,
)
from clusterfed.tokens import parse_token, salted_secret
from sqlalchemy import select

from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import MANAGEMENT, cached_digest, metric, run_cli
from tests.test_malformed_credentials import MALFORMED_HEADERS, near_misses

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

USERS_CURRENT = "/arvados/v1/users/current"
TOKENS = "/arvados/v1/api_client_authorizations"
ROOT_TOKEN = "rootsecretforthelogintests0123456789abcdef"


@dataclass
class Federation:
    qr1hi: Cluster
    c97qk: Cluster
    z1234: Cluster
    x9999: Cluster
    login_process: ClusterProcess
    satellite_process: ClusterProcess
    outsider_process: ClusterProcess
    alice: str
    alice_token: str

    def login_calls(self, path: str) -> int:
        """How often the login cluster's access log shows a request line for ``path``."""
        return self.login_process.log().count(f" {path} HTTP/1.1")

    def wait_login_calls(self, path: str, expected: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while (calls := self.login_calls(path)) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls


def validation_path(remote: str) -> str:
    return f"/arvados/v1/api_client_authorizations/current?remote={remote}"


def call(
    cluster: Cluster, token: str, path: str = USERS_CURRENT, *, scheme: str = "Bearer"
) -> httpx.Response:
    return httpx.get(f"{cluster.base_url}{path}", headers={"Authorization": f"{scheme} {token}"})


@pytest.fixture(scope="module")
def federation(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    workdir: Path = tmp_path_factory.mktemp("login-cluster")
    ports = {cluster_id: free_port() for cluster_id in ("qr1hi", "c97qk", "z1234", "x9999")}
    login = {"LoginCluster": "qr1hi", "RemoteTokenRefresh": "1h"}

    def remotes(*ids: str) -> dict[str, dict[str, object]]:
        return {cluster_id: remote_entry(ports[cluster_id]) for cluster_id in ids}

    configs = {
        "qr1hi": cluster_config(
            "qr1hi",
            session_databases.new_url("qr1hi"),
            remotes=remotes("c97qk", "z1234"),
            login=login,
            system_root_token=ROOT_TOKEN + "q",
        ),
        "c97qk": cluster_config(
            "c97qk",
            session_databases.new_url("c97qk"),
            remotes=remotes("qr1hi", "z1234"),
            login=login,
            system_root_token=ROOT_TOKEN + "c",
        ),
        "z1234": cluster_config(
            "z1234",
            session_databases.new_url("z1234"),
            remotes=remotes("qr1hi", "c97qk", "x9999"),
            login=login,
            system_root_token=ROOT_TOKEN + "z",
        ),
        # A peer of z1234 outside the federation: it names no login cluster.
        "x9999": cluster_config(
            "x9999",
            session_databases.new_url("x9999"),
            remotes=remotes("z1234"),
            system_root_token=ROOT_TOKEN + "x",
        ),
    }
    processes = {
        cluster_id: ClusterProcess(config, workdir, port=ports[cluster_id])
        for cluster_id, config in configs.items()
    }
    # All four start at once: none needs the others up to start.
    with running_together(*processes.values()) as started:
        clusters = dict(zip(processes, started, strict=True))
        alice, alice_token = asyncio.run(clusters["qr1hi"].new_user())
        yield Federation(
            qr1hi=clusters["qr1hi"],
            c97qk=clusters["c97qk"],
            z1234=clusters["z1234"],
            x9999=clusters["x9999"],
            login_process=processes["qr1hi"],
            satellite_process=processes["c97qk"],
            outsider_process=processes["x9999"],
            alice=alice,
            alice_token=alice_token,
        )


async def mirrored(cluster: Cluster, uuid: str) -> User | None:
    async with cluster.session() as session:
        return await session.scalar(select(User).where(User.uuid == uuid))


# -- credentials that are not v2 tokens --------------------------------------------------


def test_v1_secret_of_a_login_cluster_token_works_on_a_satellite(federation: Federation) -> None:
    fed = federation
    user, token = asyncio.run(fed.qr1hi.new_user())
    secret = parse_token(token).secret
    path = validation_path("c97qk")
    before = fed.login_calls(path)

    for scheme in ("Bearer", "OAuth2", "Bearer"):
        response = call(fed.c97qk, secret, scheme=scheme)
        assert response.status_code == 200, response.text
        assert response.json()["uuid"] == user
    current = call(fed.c97qk, secret, "/arvados/v1/api_client_authorizations/current").json()
    assert current["uuid"] == parse_token(token).uuid
    assert secret not in str(current)
    # One validation per credential, counted at the login cluster.
    assert fed.wait_login_calls(path, before + 1) == before + 1
    time.sleep(0.3)
    assert fed.login_calls(path) == before + 1

    # Cached in L2 under an HMAC-SHA256 keyed by the SystemRootToken of the secret salted
    # for c97qk: exactly what qr1hi's revocation notice proves (SPEC 3.7), never the secret.
    l2_key = hashlib.sha256(f"clusterfed-l2\0c97qk\0{ROOT_TOKEN}c".encode()).digest()
    proof = salted_secret(secret, "c97qk")
    expected = hmac.new(l2_key, proof.encode(), hashlib.sha256).hexdigest()
    assert asyncio.run(cached_digest(fed.c97qk, parse_token(token).uuid or "")) == expected
    cached = httpx.get(
        f"{fed.c97qk.base_url}/federation/v1/token_cache/{parse_token(token).uuid}",
        headers=MANAGEMENT,
    )
    assert cached.status_code == 200 and cached.json()["user_uuid"] == user
    assert secret not in cached.text

    # A purge reaches it like any cached token: the next request validates again.
    purged = httpx.post(
        f"{fed.c97qk.base_url}/federation/v1/token_cache/purge",
        headers=MANAGEMENT,
        json={"user_uuid": user},
    )
    assert purged.json()["purged"] >= 1
    time.sleep(1.2)  # purges reach every worker within PurgePollInterval
    assert call(fed.c97qk, secret).status_code == 200
    assert fed.wait_login_calls(path, before + 2) == before + 2

    # Neither the credential nor its digest is in any log line.
    digest = asyncio.run(cached_digest(fed.c97qk, parse_token(token).uuid or ""))
    assert digest is not None
    for process in (fed.satellite_process, fed.login_process):
        text = process.log()
        assert secret not in text and digest[:12] not in text


def test_concurrent_requests_with_one_new_credential_make_one_validation(
    federation: Federation,
) -> None:
    fed = federation
    _, token = asyncio.run(fed.qr1hi.new_user())
    secret = parse_token(token).secret
    path = validation_path("z1234")
    before = fed.login_calls(path)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=fed.z1234.base_url) as client:
            headers = {"Authorization": f"Bearer {secret}"}
            answers = await asyncio.gather(
                *(client.get(USERS_CURRENT, headers=headers) for _ in range(12))
            )
            return [answer.status_code for answer in answers]

    assert asyncio.run(burst()) == [200] * 12
    assert fed.wait_login_calls(path, before + 1) == before + 1
    time.sleep(0.3)
    assert fed.login_calls(path) == before + 1


def test_unknown_credential_is_rejected_once_then_from_the_negative_cache(
    federation: Federation,
) -> None:
    fed = federation
    path = validation_path("c97qk")
    before = fed.login_calls(path)
    unknown = secrets.token_hex(25)
    for _ in range(3):
        assert call(fed.c97qk, unknown).status_code == 401
    assert fed.wait_login_calls(path, before + 1) == before + 1
    time.sleep(0.3)
    assert fed.login_calls(path) == before + 1


def test_malformed_credentials_are_refused_and_never_sent_to_the_login_cluster(
    federation: Federation,
) -> None:
    fed = federation
    path = validation_path("c97qk")
    before = fed.login_calls(path)
    for name, authorization in MALFORMED_HEADERS.items():
        try:
            response = httpx.get(
                f"{fed.c97qk.base_url}{USERS_CURRENT}", headers={"Authorization": authorization}
            )
        except httpx.LocalProtocolError:
            continue  # no HTTP client can send it (a NUL byte): the in-process suite does
        assert response.status_code == 401, (name, response.text)
        assert set(response.json()) == {"errors", "error_token"}
    variants = near_misses(fed.alice_token)
    for name in ("uuid as v1", "secret with quote", "secret with sql", "v3 prefix"):
        assert call(fed.c97qk, variants[name]).status_code == 401, name
    # A fence: one credential that may be one goes to qr1hi. When its validation shows in
    # the log, everything sent before it would have shown too.
    assert call(fed.c97qk, secrets.token_hex(25)).status_code == 401
    assert fed.wait_login_calls(path, before + 1) == before + 1
    # The near misses of a real v2 token that could be tokens are asked of qr1hi and fail.
    for name in ("wrong secret", "truncated secret"):
        assert call(fed.c97qk, variants[name]).status_code == 401, name


def test_the_satellites_own_secrets_never_go_to_the_login_cluster(federation: Federation) -> None:
    fed = federation
    path = validation_path("c97qk")
    before = fed.login_calls(path)
    _, local_token = asyncio.run(fed.c97qk.new_user())
    local_secret = parse_token(local_token).secret
    # A v1 secret this satellite issued is its own: accepted here, not sent to qr1hi.
    assert call(fed.c97qk, local_secret).status_code == 200
    # Nor are its ManagementToken and SystemRootToken.
    assert call(fed.c97qk, ROOT_TOKEN + "c").status_code == 200
    health = httpx.get(f"{fed.c97qk.base_url}/_health/ping", headers=MANAGEMENT)
    assert health.status_code == 200
    assert call(fed.c97qk, secrets.token_hex(25)).status_code == 401  # the fence
    assert fed.wait_login_calls(path, before + 1) == before + 1


# -- what a satellite forwards to the login cluster --------------------------------------


def test_token_created_through_a_satellite_is_issued_by_the_login_cluster(
    federation: Federation,
) -> None:
    fed = federation
    created = httpx.post(
        f"{fed.c97qk.base_url}{TOKENS}",
        headers={"Authorization": f"Bearer {fed.alice_token}"},
        json={"api_client_authorization": {"scopes": ["all"]}},
    )
    assert created.status_code == 200, created.text
    record = created.json()
    assert record["uuid"].startswith("qr1hi-gj3su-")
    assert record["owner_uuid"] == fed.alice
    new_token = f"v2/{record['uuid']}/{record['api_token']}"
    assert fed.login_calls(TOKENS) >= 1  # the create reached qr1hi

    # It works on the other satellite, and on the login cluster itself.
    on_z1234 = call(fed.z1234, new_token)
    assert on_z1234.status_code == 200 and on_z1234.json()["uuid"] == fed.alice
    assert call(fed.qr1hi, new_token).status_code == 200

    # Listed through a satellite, from qr1hi, without secrets.
    listing = call(fed.z1234, new_token, TOKENS)
    assert listing.status_code == 200, listing.text
    uuids = [item["uuid"] for item in listing.json()["items"]]
    assert record["uuid"] in uuids
    assert record["api_token"] not in listing.text


def test_token_create_with_a_v1_secret_through_a_satellite(federation: Federation) -> None:
    fed = federation
    secret = parse_token(fed.alice_token).secret
    created = httpx.post(
        f"{fed.z1234.base_url}{TOKENS}",
        headers={"Authorization": f"OAuth2 {secret}"},
        json={"api_client_authorization": {}},
    )
    assert created.status_code == 200, created.text
    assert created.json()["uuid"].startswith("qr1hi-gj3su-")


def test_users_list_on_a_satellite_holds_a_user_that_never_visited_it(
    federation: Federation,
) -> None:
    fed = federation
    carol, _ = asyncio.run(fed.qr1hi.new_user(email="carol@qr1hi.example", username="carol"))
    assert asyncio.run(mirrored(fed.c97qk, carol)) is None

    listing = call(fed.c97qk, fed.alice_token, "/arvados/v1/users?limit=1000")
    assert listing.status_code == 200, listing.text
    assert carol in [item["uuid"] for item in listing.json()["items"]]

    mirror = asyncio.run(mirrored(fed.c97qk, carol))
    assert mirror is not None
    assert (mirror.email, mirror.username, mirror.is_active) == (
        "carol@qr1hi.example",
        "carol",
        True,
    )
    # And now the satellite's own users get serves the mirror.
    one = call(fed.c97qk, fed.alice_token, f"/arvados/v1/users/{carol}")
    assert one.status_code == 200 and one.json()["username"] == "carol"


def test_admin_actions_through_a_satellite_reach_the_login_cluster(federation: Federation) -> None:
    fed = federation
    _, admin_token = asyncio.run(fed.qr1hi.new_user(is_admin=True))
    dave, _ = asyncio.run(fed.qr1hi.new_user(is_active=False))

    set_up = httpx.post(
        f"{fed.c97qk.base_url}/arvados/v1/users/setup",
        headers={"Authorization": f"Bearer {admin_token}"},
        params={"uuid": dave},
    )
    assert set_up.status_code == 200, set_up.text
    assert set_up.json()["items"][0]["is_invited"] is True
    activated = httpx.post(
        f"{fed.c97qk.base_url}/arvados/v1/users/{dave}/activate",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert activated.status_code == 200 and activated.json()["is_active"] is True
    mirror = asyncio.run(mirrored(fed.c97qk, dave))
    assert mirror is not None and mirror.is_active

    undone = httpx.post(
        f"{fed.c97qk.base_url}/arvados/v1/users/{dave}/unsetup",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert undone.status_code == 200 and undone.json()["is_active"] is False
    at_login = asyncio.run(mirrored(fed.qr1hi, dave))
    assert at_login is not None and not at_login.is_active
    mirror = asyncio.run(mirrored(fed.c97qk, dave))
    assert mirror is not None and not mirror.is_active

    # A non-admin is refused by qr1hi, in qr1hi's words.
    refused = httpx.post(
        f"{fed.c97qk.base_url}/arvados/v1/users/{dave}/unsetup",
        headers={"Authorization": f"Bearer {fed.alice_token}"},
    )
    assert refused.status_code == 403


def test_login_and_logout_redirect_to_the_login_cluster(federation: Federation) -> None:
    fed = federation
    back = "https://workbench.c97qk.example/token?x=1"
    response = httpx.get(f"{fed.c97qk.base_url}/login", params={"return_to": back})
    assert response.status_code == 302
    target = httpx.URL(response.headers["location"])
    assert f"{target.scheme}://{target.host}:{target.port}" == fed.qr1hi.base_url
    assert target.path == "/login"
    assert dict(target.params) == {"return_to": back}

    response = httpx.get(
        f"{fed.c97qk.base_url}/login", params={"return_to": back, "remote": "c97qk"}
    )
    assert dict(httpx.URL(response.headers["location"]).params) == {
        "return_to": back,
        "remote": "c97qk",
    }
    response = httpx.get(f"{fed.z1234.base_url}/logout", params={"return_to": back})
    assert response.status_code == 302
    target = httpx.URL(response.headers["location"])
    assert (target.path, dict(target.params)) == ("/logout", {"return_to": back})


def test_a_token_issued_by_the_satellite_is_never_forwarded(federation: Federation) -> None:
    fed = federation
    before = fed.login_calls(TOKENS)
    _, local_token = asyncio.run(fed.c97qk.new_user())
    for credential in (local_token, parse_token(local_token).secret):
        refused = httpx.post(
            f"{fed.c97qk.base_url}{TOKENS}",
            headers={"Authorization": f"Bearer {credential}"},
            json={},
        )
        assert refused.status_code == 401, refused.text
        assert "qr1hi" in refused.json()["errors"][0]
        listing = call(fed.c97qk, credential, "/arvados/v1/users")
        assert listing.status_code == 401
    time.sleep(0.3)
    assert fed.login_calls(TOKENS) == before


# -- runtime tokens ---------------------------------------------------------------------


def test_a_satellite_issued_token_for_a_login_user_works_on_the_other_satellite(
    federation: Federation,
) -> None:
    fed = federation
    # Alice has used both satellites, so both mirror her.
    for satellite in (fed.c97qk, fed.z1234):
        assert call(satellite, fed.alice_token).status_code == 200
    runtime = asyncio.run(fed.c97qk.new_token(fed.alice))
    assert runtime.startswith("v2/c97qk-gj3su-")

    answer = call(fed.z1234, runtime)
    assert answer.status_code == 200, answer.text
    assert answer.json()["uuid"] == fed.alice
    current = call(fed.z1234, runtime, "/arvados/v1/api_client_authorizations/current").json()
    assert current["uuid"] == parse_token(runtime).uuid
    # The login cluster accepts it too: its own user, vouched for by a federation member.
    assert call(fed.qr1hi, runtime).json()["uuid"] == fed.alice


def test_a_runtime_token_for_a_user_unknown_here_is_refused(federation: Federation) -> None:
    fed = federation
    erin, erin_token = asyncio.run(fed.qr1hi.new_user())
    assert call(fed.c97qk, erin_token).status_code == 200  # mirrored on c97qk only
    runtime = asyncio.run(fed.c97qk.new_token(erin))
    refused = call(fed.z1234, runtime)
    assert refused.status_code == 401
    assert "unknown here" in refused.json()["errors"][0]


def test_the_same_token_forged_outside_the_federation_is_refused(federation: Federation) -> None:
    fed = federation
    assert call(fed.z1234, fed.alice_token).status_code == 200  # z1234 mirrors alice
    # x9999 makes itself a user with alice's UUID and a token for it.
    made = run_cli(fed.x9999, "users", "create", "--email", "a@x9999.example", "--uuid", fed.alice)
    assert made.returncode == 0, made.stderr
    forged = run_cli(fed.x9999, "tokens", "create", "--user", fed.alice)
    assert forged.returncode == 0, forged.stderr
    token = forged.stdout.strip()

    refused = call(fed.z1234, token)
    assert refused.status_code == 401, refused.text
    assert "does not defer to qr1hi" in refused.json()["errors"][0]
    assert " /arvados/v1/config HTTP/1.1" in fed.outsider_process.log()
    # Refused again, and x9999's config was read once (cached).
    assert call(fed.z1234, token).status_code == 401
    assert fed.outsider_process.log().count(" /arvados/v1/config HTTP/1.1") == 1


def test_exported_config_names_the_login_cluster_and_no_secret(federation: Federation) -> None:
    fed = federation
    exported = httpx.get(f"{fed.c97qk.base_url}/arvados/v1/config")
    assert exported.status_code == 200
    body = exported.json()
    assert body["ClusterID"] == "c97qk"
    assert body["Login"] == {"LoginCluster": "qr1hi"}
    assert set(body["RemoteClusters"]["qr1hi"]) == {
        "Host",
        "Proxy",
        "Scheme",
        "Insecure",
        "ActivateUsers",
    }
    assert ROOT_TOKEN not in exported.text
    assert MANAGEMENT["Authorization"].split()[1] not in exported.text
    assert "Database" not in body


def test_validation_counts_show_in_metrics(federation: Federation) -> None:
    fed = federation
    text = httpx.get(f"{fed.c97qk.base_url}/metrics", headers=MANAGEMENT).text
    assert metric(text, "clusterfed_validations_total", issuer="qr1hi", outcome="accepted") >= 1


def test_a_third_clusters_token_reaches_the_login_cluster(federation: Federation) -> None:
    """z1234's runtime token for alice, presented on c97qk for a token create: c97qk
    sends it on to qr1hi (salted for qr1hi), and qr1hi validates it at z1234."""
    fed = federation
    for satellite in (fed.c97qk, fed.z1234):
        assert call(satellite, fed.alice_token).status_code == 200
    runtime = asyncio.run(fed.z1234.new_token(fed.alice))
    before = fed.login_calls(TOKENS)
    created = httpx.post(
        f"{fed.c97qk.base_url}{TOKENS}",
        headers={"Authorization": f"Bearer {runtime}"},
        json={"api_client_authorization": {}},
    )
    assert created.status_code == 200, created.text
    assert created.json()["uuid"].startswith("qr1hi-gj3su-")
    assert created.json()["owner_uuid"] == fed.alice
    assert fed.wait_login_calls(TOKENS, before + 1) == before + 1
    # qr1hi validated the token at z1234 (its log line names the token, never a secret).
    runtime_uuid = parse_token(runtime).uuid
    assert f"token={runtime_uuid} issuer=z1234 outcome=accepted" in fed.login_process.log()
