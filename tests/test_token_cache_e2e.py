"""The token cache operated as a new user would: real qr1hi and c97qk processes, the
``clusterfed cache`` command against c97qk's database, the admin API, /metrics and
the validation log line. "The issuer was asked again" is read from qr1hi's own access
log, and cross-checked with c97qk's validation counter."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterfed.tokens import parse_token

from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import (
    MANAGEMENT,
    Pair,
    cached_digest,
    call,
    federation_pair,
    get,
    metric,
    post,
    wait_for_log,
)

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

API = "/federation/v1/token_cache"


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir: Path = tmp_path_factory.mktemp("cache-e2e")
    with federation_pair(session_databases, workdir) as pair:
        yield pair


async def cached_token(pair: Pair) -> tuple[str, str, str]:
    """A qr1hi user's token that c97qk has validated once: (user UUID, token, token UUID)."""
    user_uuid, token = await pair.qr1hi.new_user()
    calls = pair.issuer_token_calls()
    assert call(pair.c97qk, token).status_code == 200
    assert pair.wait_issuer_token_calls(calls + 1) == calls + 1
    token_uuid = parse_token(token).uuid
    assert token_uuid is not None
    return user_uuid, token, token_uuid


def assert_issuer_asked_again(pair: Pair, token: str, calls: int, *, within: float) -> float:
    """Call c97qk until it asks the issuer again; returns how long that took."""
    started = time.monotonic()
    while True:
        assert call(pair.c97qk, token).status_code == 200
        if pair.issuer_token_calls() > calls:
            break
        assert time.monotonic() - started < within, "c97qk kept answering from its cache"
        time.sleep(0.05)
    assert pair.wait_issuer_token_calls(calls + 1) == calls + 1, "exactly one re-validation"
    return time.monotonic() - started


async def test_cli_lists_shows_and_purges_and_the_issuer_is_asked_again(pair: Pair) -> None:
    user_uuid, token, token_uuid = await cached_token(pair)
    calls, validations = pair.issuer_token_calls(), pair.validations()
    assert call(pair.c97qk, token).status_code == 200
    assert pair.wait_issuer_token_calls(calls, timeout=0.3) == calls, "second call is cached"
    digest = await cached_digest(pair.c97qk, token_uuid)
    assert digest

    table = pair.cli("cache", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == [
        "token_uuid",
        "user_uuid",
        "cluster_id",
        "state",
    ]
    (line,) = [row for row in table.stdout.splitlines() if token_uuid in row]
    assert line.split()[:4] == [token_uuid, user_uuid, "qr1hi", "fresh"]

    listed = pair.cli("cache", "list", "--cluster", "qr1hi", "--user", user_uuid, "--json")
    body = json.loads(listed.stdout)
    assert body["items_available"] == 1
    assert body["items"][0]["token_uuid"] == token_uuid
    assert body["items"][0]["state"] == "fresh"
    assert json.loads(pair.cli("cache", "list", "--cluster", "zzzzz", "--json").stdout) == {
        "items": [],
        "items_available": 0,
    }
    shown = pair.cli("cache", "show", token_uuid)
    assert shown.returncode == 0 and user_uuid in shown.stdout
    assert json.loads(pair.cli("cache", "show", token_uuid, "--json").stdout)["state"] == "fresh"
    outputs = [table, listed, shown]

    purged = pair.cli("cache", "purge", token_uuid)
    assert (purged.returncode, purged.stdout.strip()) == (0, "purged 1 cached token")
    outputs.append(purged)
    delay = assert_issuer_asked_again(pair, token, calls, within=2.0)
    print(f"CLI purge reached the serving worker in {delay:.2f}s")
    assert pair.validations() == validations + 1
    assert token_uuid in pair.cli("cache", "list").stdout, "the next request cached it again"

    for done in outputs:
        secret = parse_token(token).secret
        assert secret not in done.stdout + done.stderr
        assert digest not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["cache", "purge"],
        ["cache", "purge", "--all", "--cluster", "qr1hi"],
        ["cache", "purge", "qr1hi-gj3su-000000000000000", "--all"],
        ["cache", "purge", "not-a-uuid"],
        ["cache", "purge", "--user", "qr1hi-gj3su-000000000000000"],
        ["cache", "purge", "--cluster", "QR1HI"],
        ["cache", "purge", "qr1hi-gj3su-000000000000000"],
        ["cache", "show", "qr1hi-gj3su-000000000000000"],
        ["cache", "show", "qr1hi-tpzed-000000000000000"],
        ["cache", "list", "--user", "bogus"],
    ],
)
def test_cli_refuses_bad_targets_with_a_message(pair: Pair, args: list[str]) -> None:
    before = pair.cli("cache", "list", "--json").stdout
    done = pair.cli(*args)
    assert done.returncode == 1, done
    assert done.stderr.startswith("clusterfed: error: ") and "Traceback" not in done.stderr
    assert pair.cli("cache", "list", "--json").stdout == before, "nothing was purged"


async def test_api_purge_makes_the_next_request_ask_the_issuer(pair: Pair) -> None:
    user_uuid, token, token_uuid = await cached_token(pair)
    calls = pair.issuer_token_calls()
    shown = get(pair.c97qk, f"{API}/{token_uuid}", headers=MANAGEMENT)
    assert shown.json()["user_uuid"] == user_uuid
    response = post(pair.c97qk, f"{API}/purge", json={"user_uuid": user_uuid}, headers=MANAGEMENT)
    assert response.json() == {"purged": 1}
    # One worker: the one that purged cleared its L1 before answering, so no waiting.
    assert call(pair.c97qk, token).status_code == 200
    assert pair.wait_issuer_token_calls(calls + 1) == calls + 1


async def test_metrics_show_validations_and_cache_levels(pair: Pair) -> None:
    before = get(pair.c97qk, "/metrics", headers=MANAGEMENT).text
    _, token, _ = await cached_token(pair)
    assert call(pair.c97qk, token).status_code == 200  # an L1 hit
    response = get(pair.c97qk, "/metrics", headers=MANAGEMENT)
    assert response.status_code == 200
    text = response.text

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return metric(text, name, **labels) >= metric(before, name, **labels) + by

    assert grew("clusterfed_validations_total", issuer="qr1hi", outcome="accepted")
    assert grew("clusterfed_validation_seconds_count", issuer="qr1hi")
    assert grew("clusterfed_token_cache_lookups_total", level="l1", result="hit")
    assert grew("clusterfed_token_cache_lookups_total", level="l2", result="miss")
    assert metric(text, "clusterfed_token_cache_entries") >= 1
    assert metric(text, "clusterfed_remote_circuit_state", remote="qr1hi") == 0
    l2 = get(pair.c97qk, API, params={"limit": 1}, headers=MANAGEMENT)
    assert (
        metric(text, "clusterfed_token_cache_l2_entries", issuer="qr1hi")
        == (l2.json()["items_available"])
    )
    assert get(pair.c97qk, "/metrics").status_code == 401


async def test_one_log_line_per_validation_and_no_secret_or_digest(pair: Pair) -> None:
    _, token, token_uuid = await cached_token(pair)
    for _ in range(3):
        assert call(pair.c97qk, token).status_code == 200  # cached: no further line
    secret = parse_token(token).secret
    digest = await cached_digest(pair.c97qk, token_uuid)
    assert digest
    log = wait_for_log(pair.process, f"token={token_uuid}")
    lines = [line for line in log.splitlines() if f"token={token_uuid}" in line]
    assert len(lines) == 1, lines
    assert re.search(
        rf"validation token={token_uuid} issuer=qr1hi outcome=accepted duration_ms=\d+\.\d$",
        lines[0],
    ), lines[0]
    for text in (log, pair.issuer_process.log()):
        assert secret not in text and digest not in text
