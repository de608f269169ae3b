"""The trust rules that are written once, as pure functions: who is admin, which salted
copies count, what leaves in a URL, what a log handler lets through. The scenarios that
exercise them on real processes are in test_runtime_tokens_admin.py, test_debug_logs.py,
test_home_validation.py and test_revoke_at_issuer.py."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest
from clusterfed.config import ClusterConfig, RemoteCluster
from clusterfed.credentials import is_url_credential, without_url_credentials
from clusterfed.identity import UserRecord, admin_here
from clusterfed.server.serving import ScrubCredentials, scrub_credentials

from tests.support import REPO_ROOT

SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
TOKEN = f"v2/qr1hi-gj3su-077z32aux8dg2s1/{SECRET}"


def user(uuid: str, *, admin: bool = True, active: bool = True) -> UserRecord:
    return UserRecord(uuid, None, None, None, None, admin, active, active)


@pytest.mark.parametrize(
    ("owner", "issuer", "expected"),
    [
        ("c97qk-tpzed-000000000000000", "c97qk", True),  # a local admin, a local token
        ("qr1hi-tpzed-aaaaaaaaaaaaaaa", "qr1hi", True),  # the login cluster's, its token
        ("qr1hi-tpzed-aaaaaaaaaaaaaaa", "z1234", False),  # a runtime token from a satellite
        ("qr1hi-tpzed-aaaaaaaaaaaaaaa", "c97qk", False),  # our own token for a mirrored user
        ("z1234-tpzed-aaaaaaaaaaaaaaa", "z1234", False),  # a peer's user, a peer's token
        ("c97qk-tpzed-aaaaaaaaaaaaaaa", "qr1hi", False),  # ours, vouched for elsewhere
    ],
)
def test_admin_comes_only_through_a_token_of_the_users_own_cluster(
    owner: str, issuer: str, expected: bool
) -> None:
    assert admin_here(user(owner), issuer, cluster_id="c97qk", login_cluster="qr1hi") is expected
    # Never without the flag, never while inactive.
    for record in (user(owner, admin=False), user(owner, active=False)):
        assert not admin_here(record, issuer, cluster_id="c97qk", login_cluster="qr1hi")


def test_without_a_login_cluster_only_local_admins_count() -> None:
    assert admin_here(
        user("c97qk-tpzed-aaaaaaaaaaaaaaa"), "c97qk", cluster_id="c97qk", login_cluster=""
    )
    assert not admin_here(
        user("qr1hi-tpzed-aaaaaaaaaaaaaaa"), "qr1hi", cluster_id="c97qk", login_cluster=""
    )


def test_salted_copies_count_only_for_remote_clusters() -> None:
    config = ClusterConfig(
        cluster_id="qr1hi",
        database_url="sqlite+aiosqlite:///:memory:",
        remote_clusters={"c97qk": RemoteCluster(host="c97qk.example")},
    )
    assert config.accepts_salted_for("c97qk")
    for outside in ("zbbbb", "qr1hi", "", "*"):
        assert not config.accepts_salted_for(outside)


def test_url_credentials_are_removed_in_every_spelling() -> None:
    assert without_url_credentials("/a") == "/a"
    assert without_url_credentials("/a?api_token=s") == "/a"
    assert (
        without_url_credentials("/a?limit=1&API_TOKEN=s&reader_tokens%5B%5D=t&x&reader_tokens=u")
        == "/a?limit=1&x"
    )
    assert without_url_credentials("/a?api%5Ftoken=s&b=2") == "/a?b=2"
    assert is_url_credential("Reader_Tokens[]") and not is_url_credential("api_tokens")


def test_scrubbing_covers_queries_headers_and_v2_secrets() -> None:
    text = (
        f"GET http://x/a?api_token={SECRET}&limit=1 Authorization: Bearer {TOKEN} "
        f'reader_tokens=["{TOKEN}"] OAuth2 {SECRET} token {TOKEN}'
    )
    scrubbed = scrub_credentials(text)
    assert SECRET not in scrubbed
    assert "limit=1" in scrubbed and "v2/qr1hi-gj3su-077z32aux8dg2s1/[REDACTED]" in scrubbed


def test_the_handler_filter_scrubs_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubCredentials())
    logger = logging.getLogger("clusterfed.test-scrub")
    logger.addHandler(handler)
    logger.propagate = False
    try:

        class Url:  # an argument that is not a string (httpx logs its URL objects)
            def __str__(self) -> str:
                return f"http://x/?api_token={SECRET}"

        logger.warning("HTTP Request: %s %s %d", "GET", Url(), 200)
        logger.warning("token %s", TOKEN)
        try:
            raise ValueError(f"bad Bearer {TOKEN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert SECRET not in written
    assert "HTTP Request: GET http://x/?api_token=[REDACTED] 200" in written


def test_every_admin_decision_reads_the_one_rule() -> None:
    """No endpoint decides admin from the user record alone: ``user.is_admin`` says what a
    user is at home, not what this caller's token may do here."""
    package = Path(REPO_ROOT) / "app" / "clusterfed"
    allowed = {
        "identity.py",  # the rule itself
        "trust/mirroring.py",  # what a remote says, applied to the mirror row
        "server/users/service.py",  # the record's JSON
        "storage/store.py",
        "storage/users.py",
        "cli/users.py",
    }
    readers = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if relative in allowed or "migrations" in relative:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "# at home" in line:
                continue  # reads what the user is at home on purpose, said so in the code
            code = re.sub(r"``[^`]*``", "", line)  # names quoted in prose are not reads
            if re.search(r"\b(user|record)\.is_admin\b", code):
                readers.append(f"{relative}:{number}: {line.strip()}")
    assert not readers, "\n".join(readers)


def test_engines_never_log_bound_parameters() -> None:
    from clusterfed.storage.db import create_engine

    engine = create_engine("sqlite+aiosqlite:///:memory:", hide_parameters=False)
    assert engine.sync_engine.hide_parameters is True
