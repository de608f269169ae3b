"""Revocation notices need no credential, so a stranger could send them by the thousand,
each costing a database read: they are throttled per client address like cold
validations (``ColdValidationRate``, burst twice that), before the body is read."""

from __future__ import annotations

import httpx
from clusterfed.server.app import create_app
from clusterfed.server.testing import local_config
from clusterfed.tokens import TOKEN_TYPE, new_uuid

from tests.conftest import asgi_client
from tests.support.clock import stop_rate_limit_clock
from tests.support.databases import DatabaseFactory

NOTICES = "/federation/v1/revocations"
RATE = 2  # a second; burst 4


def notice() -> dict[str, str]:
    return {"token_uuid": new_uuid("qr1hi", TOKEN_TYPE), "proof": "0" * 40}


async def send(client: httpx.AsyncClient, address: str, body: object) -> httpx.Response:
    return await client.post(NOTICES, json=body, headers={"X-Forwarded-For": address})


async def test_a_flood_of_notices_from_one_client_is_429_and_others_pass(
    databases: DatabaseFactory,
) -> None:
    config = local_config(
        "c97qk",
        databases.new_url("c97qk"),
        # The test client's own address is a trusted proxy: X-Forwarded-For names the
        # client, so two clients can be told apart.
        federation={"ColdValidationRate": RATE, "TrustedProxies": ["127.0.0.1/32"]},
    )
    app = create_app(config)
    # Stopped: the burst is exactly 2 x RATE, however long the machine takes over the flood
    # (a real second let one more notice through on a slow run).
    clock = stop_rate_limit_clock(app)
    async with asgi_client(app) as client:
        flood = [await send(client, "198.51.100.7", notice()) for _ in range(3 * RATE + 4)]
        statuses = [answer.status_code for answer in flood]
        assert statuses == [202] * (2 * RATE) + [429] * (RATE + 4), statuses
        refused = flood[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert set(refused.json()) == {"errors", "error_token"}
        # Over the limit, even garbage is refused the same way (the body is never read).
        assert (await send(client, "198.51.100.7", "not json")).status_code == 429
        # A second on, RATE more get through, and no more.
        clock.advance(1.0)
        later = [(await send(client, "198.51.100.7", notice())).status_code for _ in range(4)]
        assert later == [202] * RATE + [429] * (4 - RATE), later
        # Another client still gets through, garbage and all, with the usual answer.
        for body in (notice(), "not json"):
            assert (await send(client, "198.51.100.8", body)).status_code == 202
        metrics = await client.get(
            "/metrics", headers={"Authorization": "Bearer test-management-token"}
        )
        assert 'clusterfed_validations_throttled_total{reason="notice"}' in metrics.text
