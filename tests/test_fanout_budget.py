"""The fan-out budget's arithmetic (``FanoutRate``): a burst of twice the rate, then the
rate; each client its own; 0 turns it off. The served behaviour is test_amplification's."""

from __future__ import annotations

import pytest
from clusterfed.config import parse_config
from clusterfed.server.testing import cluster_config
from clusterfed.trust.throttle import RateLimit

from tests.support.clock import Clock


def test_a_burst_of_twice_the_rate_then_the_rate() -> None:
    clock = Clock(100.0)
    limit = RateLimit("fanout", 10, clock=clock)
    assert [limit.take("10.0.0.1") for _ in range(20)] == [0.0] * 20
    assert limit.take("10.0.0.1") == pytest.approx(0.1)
    assert limit.take("10.0.0.2") == 0.0  # another client's bucket is its own
    clock.now += 1.0
    assert sum(limit.take("10.0.0.1") == 0.0 for _ in range(15)) == 10


async def test_acquire_spends_the_same_buckets() -> None:
    limit = RateLimit("fanout", 1, clock=Clock(100.0))
    assert [await limit.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert await limit.acquire("a") > 0


def test_a_rate_of_zero_is_no_limit() -> None:
    limit = RateLimit("fanout", 0, clock=Clock(100.0))
    assert all(limit.take("a") == 0.0 for _ in range(1000))


def test_fanout_rate_is_configured() -> None:
    def rate(federation: dict | None) -> float:
        config = parse_config(
            cluster_config("qr1hi", "sqlite+aiosqlite:///x.db", federation=federation)
        )
        return config.federation.fanout_rate

    assert rate(None) == 10.0
    assert rate({"FanoutRate": 2.5}) == 2.5
    assert rate({"FanoutRate": 0}) == 0.0
