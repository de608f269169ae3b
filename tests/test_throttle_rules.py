"""The throttle's rules at their edges, in process: what a refused client is told, how
long a quiet client is remembered, which limits a fractional rate still enforces, and how
addresses with ports or in brackets from a trusted proxy are read."""

from __future__ import annotations

import json

import pytest
from clusterfed.trust.throttle import (
    RefusalLog,
    TooManyRequests,
    ValidationThrottle,
    client_address,
    parse_networks,
)

from tests.support.clock import Clock


def _refusal(throttle: ValidationThrottle, client: str, issuer: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as refused:
        throttle.admit(client, issuer)
    return refused.value


def test_a_refused_client_is_told_why_and_when_in_the_body_and_the_header() -> None:
    throttle = ValidationThrottle(client_rate=1, issuer_rate=1000, clock=Clock())
    throttle.admit("10.0.0.1", "qr1hi")
    throttle.admit("10.0.0.1", "qr1hi")
    refused = _refusal(throttle, "10.0.0.1", "qr1hi")
    message = "too many validations of uncached tokens from this client; retry in 1s"
    assert refused.message == message and str(refused) == message
    response = refused.response()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    body = json.loads(response.body)
    assert body["errors"] == [message] and body["error_token"]


def test_a_refusal_by_the_issuer_limit_names_the_issuer() -> None:
    throttle = ValidationThrottle(client_rate=0, issuer_rate=1, clock=Clock())
    throttle.admit("a", "qr1hi")
    throttle.admit("b", "qr1hi")
    refused = _refusal(throttle, "c", "qr1hi")
    assert refused.reason == "issuer" and refused.retry_after == 1
    assert refused.message == (
        "too many validations of uncached tokens issued by qr1hi; retry in 1s"
    )


def test_a_fractional_issuer_rate_is_a_limit_not_off() -> None:
    # IssuerValidationRate: 0.5 is valid configuration: one call now, then one per 2 s.
    clock = Clock()
    throttle = ValidationThrottle(client_rate=0, issuer_rate=0.5, clock=clock)
    throttle.admit("a", "qr1hi")
    refused = _refusal(throttle, "b", "qr1hi")
    assert refused.reason == "issuer" and refused.retry_after == 2
    clock.now += 2.0
    throttle.admit("b", "qr1hi")


def test_a_quiet_client_is_forgotten_once_its_bucket_would_be_full_again() -> None:
    # Memory stays bounded by the clients active in the last few seconds (a full bucket
    # is the same as none), measured on the throttle's clock.
    clock = Clock()
    throttle = ValidationThrottle(client_rate=5, issuer_rate=0, clock=clock)
    for _ in range(10):
        throttle.admit("10.0.0.1", "qr1hi")
    clock.now += 1.9  # not yet full: its bucket is still remembered and still limits
    assert "10.0.0.1" in throttle._clients
    clock.now += 1.5
    assert "10.0.0.1" not in throttle._clients
    for _ in range(10):  # a fresh, full bucket
        throttle.admit("10.0.0.1", "qr1hi")
    assert _refusal(throttle, "10.0.0.1", "qr1hi").reason == "client"


def test_trusted_proxies_may_be_written_with_host_bits_set() -> None:
    assert parse_networks([" 10.1.2.3/8 ", "192.0.2.1", "2001:db8::1/32"]) == parse_networks(
        ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]
    )
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        parse_networks(["10.0.0.0/33"])


def _scope(peer: str, forwarded: str) -> dict[str, object]:
    return {
        "type": "http",
        "client": (peer, 1234),
        "headers": [(b"x-forwarded-for", forwarded.encode())],
    }


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("198.51.100.7:5678", "198.51.100.7"),  # some proxies append the client's port
        ("198.51.100.7", "198.51.100.7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("10.9.9.9:80, 198.51.100.7:5678", "198.51.100.7"),
        ("198.51.100.7:5678, 10.9.9.9:80", "198.51.100.7"),  # a trusted hop with a port
        # Garbled hops count against the proxy that sent them, and never raise.
        ("[2001:db8::7", "10.1.1.1"),
        ("[198.51.100.7", "10.1.1.1"),
        ("198.51.100.7:80:90", "10.1.1.1"),
        (":5678", "10.1.1.1"),
        ("", "10.1.1.1"),
    ],
)
def test_forwarded_hops_with_ports_and_brackets(forwarded: str, client: str) -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    assert client_address(_scope("10.1.1.1", forwarded), trusted) == client


def test_a_flood_of_refusals_writes_one_line_per_interval_with_the_count_left_out() -> None:
    clock = Clock()
    refusals = RefusalLog(interval=10, clock=clock)
    assert refusals.should_log("client", "10.0.0.1") == 0
    for _ in range(250):
        clock.now += 0.02
        assert refusals.should_log("client", "10.0.0.1") is None
    # Another client, or the same one refused for the issuer's limit, is its own line.
    assert refusals.should_log("client", "10.0.0.2") == 0
    assert refusals.should_log("issuer", "10.0.0.1") == 0
    clock.now += 5.01  # 10 s after the first line
    assert refusals.should_log("client", "10.0.0.1") == 250
    assert refusals.should_log("client", "10.0.0.1") is None
    clock.now += 10.01  # a whole interval without a refusal: forgotten, nothing pending
    assert refusals.should_log("client", "10.0.0.1") == 0
