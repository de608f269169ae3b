"""The revocation outbox and receiver, in process: a fake outbox store and an
``httpx.MockTransport`` remote, so every rule can be checked without a server.

What is sent and to whom, what is recorded when a notice fails or is given up (and that
the token's secret never reaches a log line), what the metrics count, when the outbox
prunes and wakes, which notices a receiver applies, and where a DELETE of another
cluster's token goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clusterfed.errors import FederationError
from clusterfed.metrics import FederationMetrics
from clusterfed.outbound.remote import RemoteClient
from clusterfed.server.testing import local_config, remote_entry
from clusterfed.tokens import TOKEN_TYPE, Token, new_secret, new_uuid, salted_secret
from clusterfed.trust import revocation
from clusterfed.trust.revocation import (
    NOTICE_PATH,
    RECEIVED,
    Notice,
    RevocationOutbox,
    parse_notice,
    receive_notice,
    retry_delay,
    revocation_target,
    route_revocation,
)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeOutboxStore:
    """The outbox rows of one issuer (qr1hi) in memory; records what the outbox says."""

    def __init__(self, notices: list[Notice] = (), secrets: dict[str, str] | None = None):
        self.due = list(notices)
        self.secrets = secrets or {}
        self.claims = 0
        self.leases: list[tuple[datetime, datetime]] = []
        self.claim_error: Exception | None = None
        self.delivered: list[tuple[int, datetime | None]] = []
        self.failed: list[dict[str, Any]] = []
        self.abandoned: list[tuple[int, str, str]] = []
        self.prunes: list[datetime] = []

    async def claim_notices(self, *, now: datetime, lease_until: datetime) -> list[Notice]:
        self.claims += 1
        self.leases.append((now, lease_until))
        if self.claim_error is not None:
            error, self.claim_error = self.claim_error, None
            raise error
        claimed, self.due = self.due, []
        return claimed

    async def token_secret(self, token_uuid: str) -> str | None:
        return self.secrets.get(token_uuid)

    async def notice_delivered(self, notice_id: int, *, again_at: datetime | None) -> None:
        self.delivered.append((notice_id, again_at))

    async def notice_failed(
        self, notice_id: int, *, attempts: int, retry_at: datetime, error: str
    ) -> None:
        self.failed.append(
            {"id": notice_id, "attempts": attempts, "retry_at": retry_at, "error": error}
        )

    async def notice_abandoned(self, notice_id: int, *, outcome: str, reason: str) -> None:
        self.abandoned.append((notice_id, outcome, reason))

    async def prune(self, *, before: datetime) -> int:
        self.prunes.append(before)
        return 0


class Remote:
    """c97qk behind a MockTransport: answers ``status`` and records every request."""

    def __init__(self, status: int = 202, *, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, json={"kind": "whatever"})

    def client(self, remotes: tuple[str, ...] = ("c97qk",)) -> RemoteClient:
        config = local_config(
            "qr1hi",
            "sqlite+aiosqlite:///unused.db",
            remotes={cluster: remote_entry(9) for cluster in remotes},
        )
        return RemoteClient(config, transport=httpx.MockTransport(self))


def _count(metrics: FederationMetrics, remote: str, event: str) -> float:
    value = metrics.registry.get_sample_value(
        "clusterfed_revocation_notices_total", {"remote": remote, "event": event}
    )
    return value or 0.0


def _token() -> tuple[str, str]:
    return new_uuid("qr1hi", TOKEN_TYPE), new_secret()


async def _send_one(
    notice: Notice,
    remote: Remote,
    *,
    secret: str | None,
    remotes: tuple[str, ...] = ("c97qk",),
) -> tuple[FakeOutboxStore, FederationMetrics]:
    store = FakeOutboxStore([notice], {notice.token_uuid: secret} if secret else {})
    metrics = FederationMetrics()
    client = remote.client(remotes)
    outbox = RevocationOutbox(store, client, metrics, lease_seconds=15)
    try:
        assert await outbox.send_due() == 1
    finally:
        await client.aclose()
    return store, metrics


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "clusterfed.revocation"]


def test_retry_delay_doubles_from_a_quarter_second_up_to_30s() -> None:
    ranges = {1: (0.25, 0.5), 2: (0.5, 1), 3: (1, 2), 4: (2, 4), 7: (15, 30), 20: (15, 30)}
    for attempts, (low, high) in ranges.items():
        delays = [retry_delay(attempts) for _ in range(100)]
        assert all(low <= delay <= high for delay in delays), (attempts, min(delays), max(delays))


async def test_a_delivered_notice_carries_the_proof_salted_for_that_remote_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "clusterfed.revocation")
    uuid, secret = _token()
    remote = Remote(200)
    store, metrics = await _send_one(Notice(7, uuid, "c97qk", 0, None), remote, secret=secret)
    [request] = remote.requests
    assert request.method == "POST" and request.url.path == NOTICE_PATH
    assert request.url.host == "127.0.0.1"
    assert "authorization" not in request.headers  # a notice needs no credential
    assert json.loads(request.content) == {
        "token_uuid": uuid,
        "proof": salted_secret(secret, "c97qk"),
    }
    assert store.delivered == [(7, None)] and not store.failed and not store.abandoned
    # Claimed for the lease (15 s here), so that no other worker sends it meanwhile.
    [(claimed_at, lease_until)] = store.leases
    assert abs(claimed_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert lease_until - claimed_at == timedelta(seconds=15)
    assert _count(metrics, "c97qk", "delivered") == 1
    assert _messages(caplog) == [f"revocation notice token={uuid} remote=c97qk delivered"]
    assert secret not in caplog.text and salted_secret(secret, "c97qk") not in caplog.text


async def test_an_echo_notice_is_due_again_a_second_after_delivery() -> None:
    uuid, secret = _token()
    before = datetime.now(UTC)
    store, _ = await _send_one(
        Notice(7, uuid, "c97qk", 0, None, echo=True), Remote(299), secret=secret
    )
    [(notice_id, again_at)] = store.delivered
    assert notice_id == 7 and again_at is not None
    assert before + timedelta(seconds=1) <= again_at <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize("status", [300, 400, 403, 409, 500])
async def test_any_other_answer_is_a_failed_attempt_retried_with_backoff(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "clusterfed.revocation")
    uuid, secret = _token()
    before = datetime.now(UTC)
    store, metrics = await _send_one(
        Notice(3, uuid, "c97qk", 2, None), Remote(status), secret=secret
    )
    [failed] = store.failed
    assert failed["id"] == 3 and failed["attempts"] == 3
    assert failed["error"] == f"remote answered {status}"
    # The third attempt failed: the fourth is 1-2 s later (retry_delay(3)).
    assert before + timedelta(seconds=1) <= failed["retry_at"]
    assert failed["retry_at"] <= datetime.now(UTC) + timedelta(seconds=2)
    assert not store.delivered and not store.abandoned
    assert _count(metrics, "c97qk", "failed") == 1 and _count(metrics, "c97qk", "delivered") == 0
    [line] = _messages(caplog)
    assert re.fullmatch(
        rf"revocation notice token={uuid} remote=c97qk attempt=3 failed: "
        rf"remote answered {status}; retry in [12]\.\ds",
        line,
    ), line


async def test_an_unreachable_remote_is_a_failed_attempt_that_names_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "clusterfed.revocation")
    uuid, secret = _token()
    remote = Remote(error=httpx.ConnectError("connection refused"))
    store, metrics = await _send_one(Notice(4, uuid, "c97qk", 0, None), remote, secret=secret)
    [failed] = store.failed
    assert failed["attempts"] == 1 and failed["error"] == "remote cluster c97qk: connection failed"
    assert failed["retry_at"] <= datetime.now(UTC) + timedelta(seconds=0.5)
    assert _count(metrics, "c97qk", "failed") == 1
    assert "failed: remote cluster c97qk: connection failed; retry in" in _messages(caplog)[0]
    assert secret not in caplog.text and salted_secret(secret, "c97qk") not in caplog.text


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_a_remote_that_does_not_take_notices_is_given_up_at_once(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "clusterfed.revocation")
    uuid, secret = _token()
    store, metrics = await _send_one(
        Notice(5, uuid, "c97qk", 0, None), Remote(status), secret=secret
    )
    reason = f"remote answered {status}: no notices"
    assert store.abandoned == [(5, "abandoned", reason)] and not store.failed
    assert _count(metrics, "c97qk", "abandoned") == 1
    assert _messages(caplog) == [f"revocation notice token={uuid} remote=c97qk given up: {reason}"]


async def test_a_notice_for_a_remote_no_longer_configured_is_given_up_unsent() -> None:
    uuid, secret = _token()
    remote = Remote()
    store, metrics = await _send_one(
        Notice(6, uuid, "zbbbb", 0, None), remote, secret=secret, remotes=("c97qk",)
    )
    assert remote.requests == []
    assert store.abandoned == [(6, "abandoned", "no longer in RemoteClusters")]
    assert _count(metrics, "zbbbb", "abandoned") == 1


async def test_a_notice_for_a_token_that_is_gone_is_given_up_unsent() -> None:
    uuid, _ = _token()
    remote = Remote()
    store, metrics = await _send_one(Notice(8, uuid, "c97qk", 0, None), remote, secret=None)
    assert remote.requests == []
    assert store.abandoned == [(8, "abandoned", "the token no longer exists")]
    assert _count(metrics, "c97qk", "abandoned") == 1


async def test_a_notice_is_given_up_from_the_moment_the_token_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:  # type: ignore[override]
            return now  # type: ignore[return-value]

    monkeypatch.setattr(revocation, "datetime", Frozen)
    uuid, secret = _token()
    remote = Remote()
    store, metrics = await _send_one(Notice(9, uuid, "c97qk", 4, now), remote, secret=secret)
    assert remote.requests == []
    assert store.abandoned == [(9, "expired", "the token would have expired by now")]
    assert _count(metrics, "c97qk", "expired") == 1
    # A second earlier it was still worth sending.
    store, _ = await _send_one(
        Notice(9, uuid, "c97qk", 4, now + timedelta(seconds=1)), remote, secret=secret
    )
    assert len(remote.requests) == 1 and store.delivered == [(9, None)]


def test_queued_counts_one_notice_per_remote() -> None:
    metrics = FederationMetrics()
    outbox = RevocationOutbox(FakeOutboxStore(), Remote().client(), metrics, lease_seconds=15)
    outbox.queued(["c97qk", "zbbbb"])
    outbox.queued(["c97qk"])
    assert _count(metrics, "c97qk", "queued") == 2 and _count(metrics, "zbbbb", "queued") == 1


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def _tasks() -> list[str]:
    return [task.get_name() for task in asyncio.all_tasks()]


async def test_the_outbox_task_prunes_at_start_then_every_ten_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeTime()  # a process started right after boot: monotonic() near 0
    monkeypatch.setattr(revocation, "time", clock)
    monkeypatch.setattr(revocation, "POLL_SECONDS", 0.01)
    store = FakeOutboxStore()
    outbox = RevocationOutbox(store, Remote().client(), FederationMetrics(), lease_seconds=15)
    await outbox.aclose()  # closing an outbox that never started is harmless
    outbox.start()
    assert "clusterfed-revocation-outbox" in _tasks()
    try:
        await _until(lambda: len(store.prunes) == 1)
        week_ago = datetime.now(UTC) - timedelta(days=7)
        assert abs(store.prunes[0] - week_ago) < timedelta(seconds=5)
        clock.now = 599.9
        claims = store.claims
        await _until(lambda: store.claims > claims + 3)
        assert len(store.prunes) == 1
        clock.now = 600.0
        await _until(lambda: len(store.prunes) == 2)
        claims = store.claims
        await _until(lambda: store.claims > claims + 3)
        assert len(store.prunes) == 2
    finally:
        await outbox.aclose()
        await outbox.remote.aclose()
    assert "clusterfed-revocation-outbox" not in _tasks()
    await outbox.aclose()  # and so is closing it twice


async def test_the_outbox_outlives_a_failing_store_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(revocation, "POLL_SECONDS", 0.01)
    uuid, secret = _token()
    store = FakeOutboxStore([Notice(1, uuid, "c97qk", 0, None)], {uuid: secret})
    store.claim_error = ConnectionError("database went away")
    remote = Remote()
    outbox = RevocationOutbox(store, remote.client(), FederationMetrics(), lease_seconds=15)
    outbox.start()
    try:
        await _until(lambda: store.delivered != [])
    finally:
        await outbox.aclose()
        await outbox.remote.aclose()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "could not read the revocation outbox; will retry"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)


async def test_a_revocation_made_here_wakes_the_outbox_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(revocation, "POLL_SECONDS", 60.0)
    store = FakeOutboxStore()
    outbox = RevocationOutbox(store, Remote().client(), FederationMetrics(), lease_seconds=15)
    outbox.start()
    try:
        await _until(lambda: store.claims == 1)
        await asyncio.sleep(0.05)
        assert store.claims == 1  # asleep until the poll interval or a wake-up
        outbox.queued(["c97qk"])
        await _until(lambda: store.claims == 2, seconds=1.0)
        outbox.wake()
        await _until(lambda: store.claims == 3, seconds=1.0)
    finally:
        await outbox.aclose()
        await outbox.remote.aclose()


# The receiver.


class FakeCacheStore:
    """The one FederationStore call a receiver makes; ``cached`` maps UUID -> digest."""

    def __init__(self, cached: dict[str, str]) -> None:
        self.cached = cached
        self.calls: list[tuple[str, str | None]] = []

    async def forget_token(self, token_uuid: str, *, digest: str | None) -> bool:
        self.calls.append((token_uuid, digest))
        if self.cached.get(token_uuid) == digest:
            del self.cached[token_uuid]
            return True
        return False


def _digest(proof: str) -> str:
    return f"digest-of-{proof}"


async def _receive(
    body: bytes, store: FakeCacheStore
) -> tuple[dict[str, str], list, FederationMetrics]:
    invalidated: list[tuple[str, str]] = []
    metrics = FederationMetrics()
    answer = await receive_notice(
        body,
        local_id="c97qk",
        digest=_digest,
        store=store,  # type: ignore[arg-type]
        invalidate=lambda kind, value: invalidated.append((kind, value)),
        metrics=metrics,
    )
    return answer, invalidated, metrics


def _received(metrics: FederationMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "clusterfed_revocation_notices_received_total", {"result": result}
    )
    return value or 0.0


async def test_a_notice_with_the_right_proof_purges_the_cached_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "clusterfed.revocation")
    uuid, secret = _token()
    proof = salted_secret(secret, "c97qk")
    store = FakeCacheStore({uuid: _digest(proof)})
    body = json.dumps({"token_uuid": uuid, "proof": proof}).encode()
    answer, invalidated, metrics = await _receive(body, store)
    assert answer == RECEIVED == {"kind": "clusterfed#revocationNotice", "status": "received"}
    assert store.calls == [(uuid, _digest(proof))] and store.cached == {}
    assert invalidated == [("token", uuid)]
    assert _received(metrics, "applied") == 1 and _received(metrics, "ignored") == 0
    assert _messages(caplog) == [f"revocation notice token={uuid} applied: purged from the cache"]
    assert proof not in caplog.text


async def test_a_notice_with_a_wrong_proof_changes_nothing_and_gets_the_same_answer() -> None:
    uuid, secret = _token()
    right = salted_secret(secret, "c97qk")
    store = FakeCacheStore({uuid: _digest(right)})
    wrong = salted_secret(new_secret(), "c97qk")
    body = json.dumps({"token_uuid": uuid, "proof": wrong}).encode()
    answer, invalidated, metrics = await _receive(body, store)
    assert answer == RECEIVED and store.cached == {uuid: _digest(right)}
    assert invalidated == []
    assert _received(metrics, "ignored") == 1 and _received(metrics, "applied") == 0


async def test_a_notice_about_a_token_issued_here_is_ignored() -> None:
    # Our own tokens are revoked in our database, not by a peer's say-so.
    uuid = new_uuid("c97qk", TOKEN_TYPE)
    proof = salted_secret(new_secret(), "c97qk")
    store = FakeCacheStore({uuid: _digest(proof)})
    body = json.dumps({"token_uuid": uuid, "proof": proof}).encode()
    answer, invalidated, metrics = await _receive(body, store)
    assert answer == RECEIVED and store.calls == [] and invalidated == []
    assert _received(metrics, "ignored") == 1


async def test_a_malformed_notice_is_ignored_with_the_same_answer() -> None:
    store = FakeCacheStore({})
    answer, invalidated, metrics = await _receive(b"{not json", store)
    assert answer == RECEIVED and store.calls == [] and invalidated == []
    assert _received(metrics, "ignored") == 1


PROOF = "0123456789abcdef" * 2 + "01234567"
UUID = "qr1hi-gj3su-000000000000001"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,  # too deep for the parser
        b"[]",
        b'"qr1hi-gj3su-000000000000001"',
        json.dumps({"proof": PROOF}).encode(),
        json.dumps({"token_uuid": UUID}).encode(),
        json.dumps({"token_uuid": UUID, "proof": None}).encode(),
        json.dumps({"token_uuid": UUID, "proof": 12}).encode(),
        json.dumps({"token_uuid": UUID, "proof": PROOF[:-1]}).encode(),
        json.dumps({"token_uuid": UUID, "proof": PROOF + "0"}).encode(),
        json.dumps({"token_uuid": UUID, "proof": PROOF.upper()}).encode(),
        json.dumps({"token_uuid": UUID, "proof": PROOF[:-1] + "g"}).encode(),
        json.dumps({"token_uuid": "qr1hi-tpzed-000000000000001", "proof": PROOF}).encode(),
        json.dumps({"token_uuid": "qr1hi", "proof": PROOF}).encode(),
        json.dumps({"token_uuid": 1, "proof": PROOF}).encode(),
    ],
)
def test_parse_notice_refuses_anything_malformed(body: bytes) -> None:
    assert parse_notice(body) is None


def test_parse_notice_reads_a_well_formed_notice() -> None:
    body = json.dumps({"token_uuid": UUID, "proof": PROOF, "extra": 1}).encode()
    assert parse_notice(body) == (UUID, PROOF)


@pytest.mark.parametrize(
    ("method", "path", "target"),
    [
        ("DELETE", f"/arvados/v1/api_client_authorizations/{UUID}", UUID),
        ("GET", f"/arvados/v1/api_client_authorizations/{UUID}", None),
        ("PATCH", f"/arvados/v1/api_client_authorizations/{UUID}", None),
        ("DELETE", f"/arvados/v1/users/{UUID}", None),
        ("DELETE", f"/arvados/v1/api_client_authorizations/{UUID}/x", None),
        ("DELETE", "/arvados/v1/api_client_authorizations/qr1hi-tpzed-000000000000001", None),
        ("DELETE", "/arvados/v1/api_client_authorizations/", None),
        ("DELETE", f"/x/arvados/v1/api_client_authorizations/{UUID}", None),
    ],
)
def test_revocation_target_is_a_delete_of_one_token_record(
    method: str, path: str, target: str | None
) -> None:
    assert revocation_target(method, path) == target


# Routing a DELETE of another cluster's token to its issuer.


class Issuer:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json={"uuid": UUID})


async def _route(
    uuid: str, presented: Token | None, status: int = 200
) -> tuple[Any, Issuer, list[str], list[int]]:
    issuer = Issuer(status)
    config = local_config(
        "c97qk",
        "sqlite+aiosqlite:///unused.db",
        remotes={"qr1hi": remote_entry(9), "zbbbb": remote_entry(10)},
    )
    client = RemoteClient(config, transport=httpx.MockTransport(issuer))
    forgotten: list[str] = []
    salted_calls: list[int] = []
    salted = Token(new_uuid("zbbbb", TOKEN_TYPE), salted_secret(new_secret(), "qr1hi"))

    def salted_for_issuer() -> Token:
        salted_calls.append(1)
        return salted

    async def forget(token_uuid: str) -> None:
        forgotten.append(token_uuid)

    path = f"/arvados/v1/api_client_authorizations/{uuid}"
    try:
        answer = await route_revocation(
            uuid=uuid,
            presented=presented,
            salted_for_issuer=salted_for_issuer,
            remote=client,
            clusters=config.remote_clusters,
            forget=forget,
            path=path,
        )
    finally:
        await client.aclose()
    return answer, issuer, forgotten, salted_calls


async def test_a_token_of_the_issuer_is_revoked_there_as_presented_and_forgotten_here() -> None:
    presented = Token(UUID, new_secret())
    answer, issuer, forgotten, salted_calls = await _route(UUID, presented)
    [request] = issuer.requests
    assert request.method == "DELETE"
    assert request.url.path == f"/arvados/v1/api_client_authorizations/{UUID}"
    assert request.url.port == 9  # qr1hi, the cluster that issued it
    assert request.headers["authorization"] == f"Bearer {presented.encode()}"
    assert answer.status_code == 200 and salted_calls == []
    assert forgotten == [UUID]


async def test_another_clusters_token_goes_salted_for_the_issuer() -> None:
    presented = Token(new_uuid("zbbbb", TOKEN_TYPE), new_secret())
    answer, issuer, forgotten, salted_calls = await _route(UUID, presented, status=204)
    [request] = issuer.requests
    assert request.headers["authorization"].startswith("Bearer v2/zbbbb-gj3su-")
    assert presented.secret not in request.headers["authorization"]
    assert salted_calls == [1] and forgotten == [UUID] and answer.status_code == 204


@pytest.mark.parametrize("status", [300, 403, 404, 422])
async def test_a_refused_revocation_leaves_the_cache_alone_and_relays_the_answer(
    status: int,
) -> None:
    answer, _, forgotten, _ = await _route(UUID, Token(UUID, new_secret()), status=status)
    assert answer.status_code == status and forgotten == []


async def test_a_bare_secret_goes_salted_for_the_issuer() -> None:
    _, issuer, forgotten, salted_calls = await _route(UUID, Token(None, new_secret()), 200)
    assert salted_calls == [1] and forgotten == [UUID] and len(issuer.requests) == 1


async def test_no_credential_goes_salted_for_the_issuer() -> None:
    _, issuer, _, salted_calls = await _route(UUID, None, 200)
    assert salted_calls == [1] and len(issuer.requests) == 1


async def test_a_token_of_a_cluster_that_is_not_a_remote_is_404_and_sent_nowhere() -> None:
    uuid = new_uuid("zzzzz", TOKEN_TYPE)
    with pytest.raises(FederationError) as refused:
        await _route(uuid, Token(uuid, new_secret()))
    assert refused.value.status_code == 404
    assert refused.value.message == (
        f"{uuid} was issued by cluster zzzzz, which is not a remote of this one"
    )
