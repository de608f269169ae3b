"""Failure paths of the outbound side: the circuit's half-open trial and the permission
single flight must survive a caller that is cancelled mid-call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from clusterfed.outbound.permissions import RemotePermissions
from clusterfed.outbound.remote import RemoteClient
from clusterfed.server.testing import ServerThread, local_config, remote_entry
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid, parse_token
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CHECK_DELAY = 0.3


# The user the stub answers about: set by the test, so the answer matches the question.


async def slow_permission_check(request: Request) -> JSONResponse:
    # Asked as every Arvados home answers it: the groups list, filtered to the target.
    await asyncio.sleep(CHECK_DELAY)
    [[_, _, target]] = json.loads(request.query_params["filters"])
    item = {"uuid": target, "can_write": True, "can_manage": False}
    return JSONResponse({"kind": "arvados#groupList", "items": [item]})


async def hang(_: Request) -> JSONResponse:
    await asyncio.sleep(30)
    return JSONResponse({})


@pytest.fixture
def qr1hi() -> Iterator[ServerThread]:
    app = Starlette(
        routes=[
            Route("/arvados/v1/groups", slow_permission_check),
            Route("/hang", hang),
        ]
    )
    with ServerThread(app) as server:
        yield server


def config_for(port: int):
    return local_config(
        "c97qk",
        "sqlite+aiosqlite:///:memory:",
        remotes={"qr1hi": remote_entry(port)},
        federation={"RemoteTimeout": "5s"},
    )


async def test_cancelled_half_open_trial_lets_the_next_request_try(qr1hi: ServerThread) -> None:
    client = RemoteClient(config_for(qr1hi.port))
    circuit = client.circuits["qr1hi"]
    circuit.open_seconds = 0.05
    for _ in range(circuit.failure_threshold):
        circuit.record_failure("test")
    await asyncio.sleep(0.06)  # half-open: the next request is the one trial
    trial = asyncio.create_task(client.request("qr1hi", "GET", "/hang", token=None))
    await asyncio.sleep(0.2)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    await client.aclose()
    assert circuit.allow() is True  # a new trial may go out; the circuit is not stuck


async def test_refuses_now_tells_an_open_circuit_without_taking_the_trial() -> None:
    # What the validator asks before spending the cold-validation budget.
    client = RemoteClient(config_for(1))
    circuit = client.circuits["qr1hi"]
    circuit.open_seconds = 0.05
    assert not client.refuses_now("qr1hi")  # closed
    for _ in range(circuit.failure_threshold):
        circuit.record_failure("test")
    assert client.refuses_now("qr1hi")  # open
    await asyncio.sleep(0.06)
    assert not client.refuses_now("qr1hi")  # half-open: the trial may go
    assert circuit.allow() is True  # and asking did not take it
    assert client.refuses_now("qr1hi")  # the trial is out: the others are refused
    assert not client.refuses_now("zzzzz")  # no such remote: request says so itself
    await client.aclose()


async def test_cancelling_the_first_permission_check_does_not_cancel_the_others(
    qr1hi: ServerThread,
) -> None:
    config = config_for(qr1hi.port)
    client = RemoteClient(config)
    permissions = RemotePermissions(config, client)
    user = new_uuid("qr1hi", USER_TYPE)
    token = parse_token(f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}")
    target = new_uuid("qr1hi", "j7d0g")

    async def ask() -> bool:
        answer = await permissions.check(
            issuer_token=token, user_uuid=user, target_uuid=target, permission="can_write"
        )
        return answer.allowed

    leader = asyncio.create_task(ask())
    await asyncio.sleep(0.05)
    follower = asyncio.create_task(ask())
    await asyncio.sleep(0.05)
    leader.cancel()
    assert await follower is True
    await client.aclose()
