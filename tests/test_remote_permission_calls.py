"""SPEC 3.3, the calling side in process: whom it asks, what it sends, how it judges and
caches the answer. The home cluster is an ``httpx.MockTransport`` that records requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from clusterfed.errors import BadGateway, Unauthorized, Unprocessable
from clusterfed.outbound.permissions import (
    GROUPS_PATH,
    THIRD_CLUSTER_REASON,
    UNREADABLE,
    RemotePermissions,
    get_remote_permissions,
    request_token,
)
from clusterfed.outbound.remote import RemoteClient
from clusterfed.server.testing import local_config, remote_entry
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, Token, new_secret, new_uuid, salt
from fastapi import FastAPI
from starlette.requests import Request

USER = new_uuid("qr1hi", USER_TYPE)
PROJECT = new_uuid("qr1hi", "j7d0g")
PROJECT2 = new_uuid("qr1hi", "j7d0g")
TOKEN = Token(uuid=new_uuid("qr1hi", TOKEN_TYPE), secret=new_secret())


def granting(best: str = "can_write", **extra: Any) -> Callable[[str], dict[str, Any]]:
    """A home that lists the group asked about with the caller's flags (Arvados's answer
    to ``groups?filters=[["uuid","=",X]]&select=["uuid","can_write","can_manage"]``);
    ``best`` "none" lists nothing (not readable), "can_read" both flags false."""

    def answer(target: str) -> dict[str, Any]:
        if best == "none":
            return {"items": []}
        item = {
            "uuid": target,
            "can_write": best in ("can_write", "can_manage"),
            "can_manage": best == "can_manage",
            **extra,
        }
        return {"items": [item]}

    return answer


class Home:
    def __init__(self, answer: Any = None, status: int = 200, delay: float = 0.0) -> None:
        self.answer = answer or granting()
        self.status = status
        self.delay = delay
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        ((_, _, target),) = json.loads(request.url.params["filters"])
        payload = self.answer(target) if callable(self.answer) else self.answer
        return httpx.Response(self.status, json=payload)


def checker(home: Home, ttl: str = "30s") -> RemotePermissions:
    config = local_config(
        "c97qk",
        "sqlite+aiosqlite:///:memory:",
        remotes={"qr1hi": remote_entry(1), "zbbbb": remote_entry(2)},
        federation={"PermissionCacheTTL": ttl},
    )
    return RemotePermissions(config, RemoteClient(config, transport=httpx.MockTransport(home)))


async def check(
    permissions: RemotePermissions,
    *,
    token: Token = TOKEN,
    user: str = USER,
    target: str = PROJECT,
    permission: str = "can_write",
) -> Any:
    return await permissions.check(
        issuer_token=token, user_uuid=user, target_uuid=target, permission=permission
    )


async def test_asks_the_home_with_the_token_salted_for_us() -> None:
    home = Home()
    answer = await check(checker(home))
    (request,) = home.requests
    # The form every Arvados cluster answers (SPEC 3.3).
    assert (request.method, request.url.path) == ("GET", GROUPS_PATH)
    assert request.url.params["remote"] == "c97qk"
    assert json.loads(request.url.params["filters"]) == [["uuid", "=", PROJECT]]
    assert json.loads(request.url.params["select"]) == ["uuid", "can_write", "can_manage"]
    assert request.headers["authorization"] == f"Bearer {salt(TOKEN, 'c97qk').encode()}"
    assert (answer.allowed, answer.cluster_id, answer.reason, answer.cached) == (
        True,
        "qr1hi",
        "the user has can_write",
        False,
    )
    assert (answer.user_uuid, answer.target_uuid, answer.permission) == (
        USER,
        PROJECT,
        "can_write",
    )


async def test_a_token_salted_for_us_goes_as_presented() -> None:
    home = Home()
    salted = salt(TOKEN, "c97qk")
    await check(checker(home), token=salted)
    assert home.requests[0].headers["authorization"] == f"Bearer {salted.encode()}"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"permission": "can_fly"}, "permission must be one of can_read, can_write, can_manage"),
        ({"target": "not-a-uuid"}, "target is not a well-formed UUID"),
        ({"target": new_uuid("c97qk", "j7d0g")}, "is on this cluster; it is decided here"),
        (
            {"token": Token(uuid=new_uuid("zbbbb", TOKEN_TYPE), secret=new_secret())},
            f"this user's token was issued by zbbbb; {THIRD_CLUSTER_REASON}",
        ),
        ({"user": new_uuid("zbbbb", USER_TYPE)}, "only the user's home cluster is asked"),
        (
            {"token": Token(uuid=None, secret=new_secret())},
            "token was issued by this cluster",
        ),
    ],
)
async def test_refused_before_anything_is_sent(kwargs: dict[str, Any], words: str) -> None:
    home = Home()
    with pytest.raises(Unprocessable) as refused:
        await check(checker(home), **kwargs)
    assert words in refused.value.message
    assert home.requests == []


async def test_a_malformed_target_is_refused_with_exactly_that_reason() -> None:
    with pytest.raises(Unprocessable) as refused:
        await check(checker(Home()), target="not-a-uuid")
    assert refused.value.message == "target is not a well-formed UUID"


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, Unauthorized, "qr1hi did not accept the user's token for a permission check"),
        (403, BadGateway, "qr1hi could not answer a permission check (status 403)"),
        (500, BadGateway, "qr1hi could not answer a permission check (status 500)"),
        (201, BadGateway, "qr1hi could not answer a permission check (status 201)"),
    ],
)
async def test_anything_but_an_answer_fails_closed(
    status: int, error: type[Exception], words: str
) -> None:
    permissions = checker(Home(status=status))
    with pytest.raises(error) as refused:
        await check(permissions)
    assert refused.value.message == words  # type: ignore[attr-defined]
    assert permissions.cache is not None and len(permissions.cache) == 0  # never cached


@pytest.mark.parametrize(
    "answer",
    [
        granting(can_write="yes"),
        lambda target: {"items": [{"uuid": new_uuid("qr1hi", "j7d0g"), "can_write": True}]},
        lambda target: {"items": [{"uuid": target, "can_write": True}]},
        lambda target: {"items": [{"uuid": target}] * 2},
        lambda target: {"items": "all of them"},
        lambda target: ["allowed", True],
    ],
    ids=["flag-not-bool", "other-group", "no-can-manage", "two-items", "items-not-list", "list"],
)
async def test_an_answer_to_another_question_fails_closed(answer: Any) -> None:
    permissions = checker(Home(answer))
    with pytest.raises(BadGateway, match="qr1hi gave an invalid answer to a permission check"):
        await check(permissions)


def _full(uuid: str) -> dict[str, Any]:
    return {"uuid": uuid, "can_write": True, "can_manage": True}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda t: {"items": [_full(t), _full(t)]}, "not a list of at most one group"),
        (lambda t: {"items": [_full(t), _full(PROJECT2)]}, "not a list of at most one group"),
        (lambda t: {"items": {"0": _full(t)}}, "not a list of at most one group"),
        (lambda t: {}, "not a list of at most one group"),
        (lambda t: {"items": [_full(PROJECT2)]}, "the group listed is not the one asked about"),
        (lambda t: {"items": [t]}, "the group listed is not the one asked about"),
        (
            lambda t: {"items": [{**_full(t), "can_manage": None}]},
            "the group carries no boolean can_write and can_manage",
        ),
    ],
    ids=["two-copies", "two-groups", "items-dict", "no-items", "other-group", "bare-uuid", "null"],
)
async def test_a_confused_yes_fails_closed_and_says_what_was_wrong(
    answer: Any, reason: str
) -> None:
    # Each answer would grant can_manage if it were believed.
    permissions = checker(Home(answer))
    with pytest.raises(BadGateway) as refused:
        await check(permissions, permission="can_read")
    assert refused.value.message == (
        f"qr1hi gave an invalid answer to a permission check: {reason}"
    )
    assert permissions.cache is not None and len(permissions.cache) == 0


@pytest.mark.parametrize(
    ("best", "permission", "allowed", "reason"),
    [
        ("none", "can_read", False, UNREADABLE),
        ("can_read", "can_read", True, "the user has can_read"),
        ("can_read", "can_write", False, "the user has only can_read"),
        ("can_write", "can_manage", False, "the user has only can_write"),
        ("can_manage", "can_write", True, "the user has can_manage"),
        ("can_manage", "can_manage", True, "the user has can_manage"),
    ],
)
async def test_the_flags_decide_each_level(
    best: str, permission: str, allowed: bool, reason: str
) -> None:
    answer = await check(checker(Home(granting(best))), permission=permission)
    assert (answer.allowed, answer.reason) == (allowed, reason)


async def test_answers_allowed_and_denied_are_cached_per_question() -> None:
    home = Home(granting("can_read"))
    permissions = checker(home)
    first = await check(permissions)
    again = await check(permissions)
    assert (first.allowed, first.cached, again.allowed, again.cached) == (False, False, False, True)
    assert len(home.requests) == 1
    await check(permissions, permission="can_read")  # another question: asked
    assert len(home.requests) == 2


async def test_a_ttl_under_a_second_still_caches() -> None:
    home = Home()
    permissions = checker(home, ttl="500ms")
    await check(permissions)
    assert (await check(permissions)).cached
    assert len(home.requests) == 1


async def test_a_ttl_of_zero_asks_every_time() -> None:
    home = Home()
    permissions = checker(home, ttl="0s")
    assert permissions.cache is None
    await check(permissions)
    assert not (await check(permissions)).cached
    assert len(home.requests) == 2


async def test_concurrent_identical_checks_make_one_call() -> None:
    home = Home(delay=0.1)
    permissions = checker(home)
    answers = await asyncio.gather(*(check(permissions) for _ in range(10)))
    assert {answer.allowed for answer in answers} == {True}
    assert len(home.requests) == 1
    assert len(permissions._inflight) == 0  # the flight is forgotten once it lands


def request_with(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_the_request_token_is_read_again_from_the_header() -> None:
    header = [(b"authorization", f"Bearer {TOKEN.encode()}".encode())]
    assert request_token(request_with(header)) == TOKEN
    with pytest.raises(Unauthorized) as refused:
        request_token(request_with([]))
    assert refused.value.message == ("this request needs a token (Authorization: Bearer <token>)")
    with pytest.raises(Unauthorized, match="malformed credential"):
        request_token(request_with([(b"authorization", b"Bearer v2/x/y")]))


async def test_the_dependency_insists_on_the_apps_federation() -> None:
    app = FastAPI()
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "app": app}
    with pytest.raises(RuntimeError) as refused:
        await get_remote_permissions(Request(scope))
    assert str(refused.value) == "app.state.federation must be the app's Federation"
    permissions = checker(Home())
    app.state.federation = type("F", (), {"permissions": permissions})()
    assert await get_remote_permissions(Request(scope)) is permissions
