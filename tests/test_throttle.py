"""Cold-validation rate limits (SPEC 4): the buckets, the client address, and the 429."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from clusterfed.config import ConfigError, parse_config
from clusterfed.server.app import create_app
from clusterfed.server.testing import cluster_config, local_config, remote_entry
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid
from clusterfed.trust.throttle import (
    TokenBucket,
    TooManyRequests,
    ValidationThrottle,
    client_address,
    parse_networks,
)

from tests.conftest import asgi_client
from tests.support.clock import Clock, stop_rate_limit_clock
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, StubIssuer


def test_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(5, 10, 0.0)
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(0.0) == pytest.approx(0.2)
    assert bucket.take(0.2) == 0.0  # one token refilled in 1/rate seconds
    assert bucket.take(0.2) > 0


def test_client_limit_burst_is_twice_the_rate_and_other_clients_are_unaffected() -> None:
    clock = Clock()
    throttle = ValidationThrottle(client_rate=5, issuer_rate=1000, clock=clock)
    for _ in range(10):
        throttle.admit("10.0.0.1", "qr1hi")
    with pytest.raises(TooManyRequests) as refused:
        throttle.admit("10.0.0.1", "qr1hi")
    assert refused.value.reason == "client" and refused.value.retry_after == 1
    assert refused.value.status_code == 429
    throttle.admit("10.0.0.2", "qr1hi")
    clock.now += 1.0
    for _ in range(5):
        throttle.admit("10.0.0.1", "qr1hi")
    with pytest.raises(TooManyRequests):
        throttle.admit("10.0.0.1", "qr1hi")


def test_issuer_limit_counts_all_clients_and_a_refused_client_does_not_drain_it() -> None:
    clock = Clock()
    throttle = ValidationThrottle(client_rate=1, issuer_rate=2, clock=clock)
    throttle.admit("a", "qr1hi")
    throttle.admit("a", "qr1hi")
    for _ in range(5):
        with pytest.raises(TooManyRequests) as refused:
            throttle.admit("a", "qr1hi")
        assert refused.value.reason == "client"
    throttle.admit("b", "qr1hi")
    throttle.admit("b", "qr1hi")
    with pytest.raises(TooManyRequests) as refused:
        throttle.admit("c", "qr1hi")
    assert refused.value.reason == "issuer"
    throttle.admit("c", "zbbbb")  # another issuer has its own bucket


def test_zero_turns_a_limit_off() -> None:
    throttle = ValidationThrottle(client_rate=0, issuer_rate=0, clock=Clock())
    for _ in range(1000):
        throttle.admit("a", "qr1hi")


def _scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "::1"])
    assert client_address(_scope("192.0.2.7", "1.2.3.4"), trusted) == "192.0.2.7"
    assert client_address(_scope("10.1.1.1", "1.2.3.4"), trusted) == "1.2.3.4"
    # The rightmost address that is not a trusted proxy: a client cannot pick its own.
    assert client_address(_scope("10.1.1.1", "6.6.6.6, 1.2.3.4, 10.2.2.2"), trusted) == "1.2.3.4"
    assert client_address(_scope("10.1.1.1"), trusted) == "10.1.1.1"
    assert client_address(_scope("10.1.1.1", "garbage"), trusted) == "10.1.1.1"
    assert client_address(_scope("::1", "[2001:db8::1]:443"), trusted) == "2001:db8::1"
    assert client_address(_scope("10.1.1.1", "1.2.3.4"), ()) == "10.1.1.1"
    assert client_address({"type": "http", "headers": []}, trusted) is None


def test_config_keys_and_defaults() -> None:
    default = parse_config(cluster_config("c97qk", "sqlite+aiosqlite:///x.db"))
    assert default.federation.cold_validation_rate == 20
    assert default.federation.issuer_validation_rate == 200
    assert default.federation.trusted_proxies == ()
    config = parse_config(
        cluster_config(
            "c97qk",
            "sqlite+aiosqlite:///x.db",
            federation={
                "ColdValidationRate": 5,
                "IssuerValidationRate": 0.5,
                "TrustedProxies": ["10.0.0.0/8", "192.0.2.1"],
            },
        )
    )
    assert config.federation.cold_validation_rate == 5.0
    assert config.federation.issuer_validation_rate == 0.5
    assert config.federation.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    for key, value in (
        ("ColdValidationRate", -1),
        ("ColdValidationRate", "fast"),
        ("IssuerValidationRate", True),
        ("TrustedProxies", ["10.0.0.0/33"]),
        ("TrustedProxies", "10.0.0.0/8"),
    ):
        with pytest.raises(ConfigError, match=f"Federation.{key}"):
            parse_config(
                cluster_config("c97qk", "sqlite+aiosqlite:///x.db", federation={key: value}),
                source="t.yml",
            )


@pytest.fixture
def issuer() -> Iterator[StubIssuer]:
    stub = StubIssuer("qr1hi")
    with stub.serving():
        yield stub


@pytest.fixture
async def c97qk(issuer: StubIssuer, databases: DatabaseFactory) -> AsyncIterator[httpx.AsyncClient]:
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        remotes={"qr1hi": remote_entry(issuer.port)},
        federation={"ColdValidationRate": 1, "TrustedProxies": ["127.0.0.0/8"]},
    )
    app = create_app(config)
    # Stopped: a burst is exactly two, however long the machine takes over the requests.
    stop_rate_limit_clock(app)
    async with asgi_client(app) as client:
        yield client


def random_token() -> str:
    return f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}"


async def test_over_the_limit_is_429_with_retry_after_and_no_issuer_call(
    c97qk: httpx.AsyncClient, issuer: StubIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clusterfed.validation")
    token, _ = issuer.issue(email="a@qr1hi.example", is_active=True)
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.9"}
    assert (await c97qk.get("/arvados/v1/users/current", headers=headers)).status_code == 200
    statuses = []
    for _ in range(6):
        forged = {"Authorization": f"Bearer {random_token()}", "X-Forwarded-For": "198.51.100.1"}
        statuses.append(await c97qk.get("/arvados/v1/users/current", headers=forged))
    assert [r.status_code for r in statuses] == [401, 401, 429, 429, 429, 429]
    refused = statuses[-1]
    assert refused.headers["retry-after"] == "1"
    assert set(refused.json()) == {"errors", "error_token"}
    assert issuer.calls[TOKEN_PATH] == 3  # one good token, two forged: none for the 429s
    # Answers from cache are never limited; another client has its own bucket.
    for _ in range(20):
        assert (await c97qk.get("/arvados/v1/users/current", headers=headers)).status_code == 200
    other = {"Authorization": f"Bearer {random_token()}", "X-Forwarded-For": "198.51.100.2"}
    assert (await c97qk.get("/arvados/v1/users/current", headers=other)).status_code == 401
    metrics = await c97qk.get("/metrics", headers={"Authorization": "Bearer test-management-token"})
    assert 'clusterfed_validations_throttled_total{reason="client"} 4.0' in metrics.text
    # Every refusal counted, but only the first of the flood logged (RefusalLog).
    throttled = [r.getMessage() for r in caplog.records if "outcome=throttled" in r.getMessage()]
    assert len(throttled) == 1 and "client=198.51.100.1" in throttled[0]


async def test_a_refusal_is_freed_without_the_cyclic_collector(
    c97qk: httpx.AsyncClient, collector_off: None
) -> None:
    # Each 429 used to leave its exception, traceback and frames in a reference cycle
    # (the validation's task held the refusal, whose traceback held the frame holding the
    # task): a fishing flood made the collector run 13 times as often as tokenless
    # requests did, and its pauses landed on everyone's latency.
    forged = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [
        (
            await c97qk.get(
                "/arvados/v1/users/current",
                headers={**forged, "Authorization": f"Bearer {random_token()}"},
            )
        ).status_code
        for _ in range(8)
    ]
    assert statuses.count(429) == 6
    # One turn of the loop: the callback that resumed this task last still holds the
    # last refusal's future until it returns.
    await asyncio.sleep(0)
    assert [o for o in gc.get_objects() if isinstance(o, TooManyRequests)] == []
