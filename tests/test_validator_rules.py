"""SPEC 3.2 steps 3-4 and section 4, where mutation testing found validator.py untested:
the judging of the issuer's two answers field by field, what the validator sends, the
user call failing in every way, and a stale identity served from L2 with every field.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clusterfed.errors import FederationError, Unauthorized
from clusterfed.identity import RemoteUser
from clusterfed.outbound.remote import RemoteResponse
from clusterfed.server.testing import ServerThread, local_config, remote_entry
from clusterfed.server.users.service import users_table
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid, parse_token, salt
from clusterfed.trust.validator import (
    TOUCH_BATCH_SECONDS,
    _parse_remote_user,
    _parse_time,
    judge_token_answer,
)
from fastapi import FastAPI

from tests.support.acceptor import c97qk, users_current
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, USER_PATH, Answer, StubIssuer

TOKEN = parse_token(f"v2/{new_uuid('qr1hi', TOKEN_TYPE)}/{new_secret()}")
OWNER = new_uuid("qr1hi", USER_TYPE)


def answer(body: Any, status: int = 200) -> RemoteResponse:
    return RemoteResponse(status, json.dumps(body).encode(), False, {})


def record(**fields: Any) -> dict[str, Any]:
    return {"uuid": TOKEN.uuid, "owner_uuid": OWNER, **fields}


# -- the token call, field by field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        ({}, ("all",)),  # missing: Arvados's default
        ({"scopes": None}, ("all",)),
        ({"scopes": []}, ()),
        ({"scopes": ["GET /arvados/v1/users/"]}, ("GET /arvados/v1/users/",)),
    ],
)
def test_scopes_default_to_all(scopes: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert judge_token_answer(answer(record(**scopes)), TOKEN)["scopes"] == expected


@pytest.mark.parametrize("scopes", ["all", [1], ["all", None], {"all": True}])
def test_malformed_scopes_are_refused(scopes: Any) -> None:
    with pytest.raises(Unauthorized) as refused:
        judge_token_answer(answer(record(scopes=scopes)), TOKEN)
    assert refused.value.message == "issuer qr1hi answered with malformed scopes"


def test_an_answer_about_another_token_of_the_same_issuer_is_refused() -> None:
    other = new_uuid("qr1hi", TOKEN_TYPE)
    with pytest.raises(Unauthorized) as refused:
        judge_token_answer(answer(record(uuid=other)), TOKEN)
    assert refused.value.message == (
        "issuer qr1hi answered for a different or malformed token UUID"
    )


def test_only_a_200_is_read_as_an_answer() -> None:
    with pytest.raises(Unauthorized) as refused:
        judge_token_answer(answer(record(), status=201), TOKEN)
    assert refused.value.message == "issuer qr1hi did not answer with a token record"


def test_refusals_of_the_token_call_name_the_issuer() -> None:
    cases = [
        (answer({}, 429), "issuer qr1hi is rate-limiting validations"),
        (answer({}, 502), "issuer qr1hi failed (502)"),
        (answer(["not", "an", "object"]), "issuer qr1hi did not answer with a token record"),
        (answer(record(expires_at=5)), "issuer qr1hi answered with a malformed expires_at"),
        (
            answer(record(expires_at="soon")),
            "issuer qr1hi answered with a malformed or out-of-range expires_at",
        ),
    ]
    for given, message in cases:
        with pytest.raises(FederationError) as refused:
            judge_token_answer(given, TOKEN)
        assert refused.value.message == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T01:00:00+01:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00", datetime(2030, 1, 1, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_expiry_times_are_aware_instants(value: str | None, expected: datetime | None) -> None:
    parsed = _parse_time(value, "qr1hi")
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


# -- the user call --------------------------------------------------------------------------


def test_the_users_fields_are_taken_only_when_they_have_the_right_type() -> None:
    full = {
        "uuid": OWNER,
        "email": "a@qr1hi.example",
        "username": "a",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "is_admin": False,
        "is_active": True,
        "is_invited": True,
    }
    assert _parse_remote_user(answer(full), "qr1hi", OWNER) == RemoteUser(**full)
    garbled = {"uuid": OWNER, "email": 1, "first_name": ["x"], "is_active": "yes", "is_admin": 1}
    assert _parse_remote_user(answer(garbled), "qr1hi", OWNER) == RemoteUser(uuid=OWNER)


def test_refusals_of_the_user_call_name_the_issuer() -> None:
    for given, message in [
        (answer(["x"]), "issuer qr1hi did not answer with a user record"),
        (
            answer({"uuid": new_uuid("qr1hi", USER_TYPE)}),
            "issuer qr1hi answered with a user that does not own the token",
        ),
    ]:
        with pytest.raises(Unauthorized) as refused:
            _parse_remote_user(given, "qr1hi", OWNER)
        assert refused.value.message == message


# -- against a scripted issuer --------------------------------------------------------------


@pytest.fixture
def issuer() -> Iterator[tuple[StubIssuer, ServerThread]]:
    stub = StubIssuer("qr1hi")
    with ServerThread(stub.app) as server:
        yield stub, server


@pytest.mark.parametrize("salted", [False, True])
async def test_both_calls_carry_remote_and_the_token_as_presented(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread], salted: bool
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    presented = salt(parse_token(token), "c97qk").encode() if salted else token
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        assert (await users_current(client, presented)).status_code == 200
    assert [(path, query) for path, query, _ in stub.seen] == [
        (TOKEN_PATH, {"remote": "c97qk"}),
        (USER_PATH, {"remote": "c97qk"}),
    ]
    # SPEC 3.2 step 3: as presented, salted for us or not; its issuer knows both.
    assert {authorization for _, _, authorization in stub.seen} == {f"Bearer {presented}"}


@pytest.mark.parametrize(
    ("user_answer", "status"),
    [(Answer(status=400), 400), (Answer(status=401), 401), (Answer(hang=5), 504)],
    ids=["400", "401", "timeout"],
)
async def test_a_failed_user_call_without_a_mirror_keeps_its_status(
    databases: DatabaseFactory,
    issuer: tuple[StubIssuer, ServerThread],
    user_answer: Answer,
    status: int,
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    stub.overrides[USER_PATH] = user_answer
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        response = await users_current(client, token)
    assert response.status_code == status, response.text
    if status < 500:
        assert response.json()["errors"] == [f"issuer qr1hi answered {status} for the token's user"]


async def test_a_user_call_that_times_out_falls_back_on_the_mirror(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    first, user = stub.issue(is_active=True)
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        assert (await users_current(client, first)).status_code == 200  # mirrors the user
        stub.overrides[USER_PATH] = Answer(hang=5)
        response = await users_current(client, stub.issue_for(user))
    assert response.status_code == 200, response.text
    assert response.json()["uuid"] == user.uuid


async def test_a_stale_identity_from_l2_is_served_whole(databases: DatabaseFactory) -> None:
    stub = StubIssuer("qr1hi")
    server = ServerThread(stub.app).start()
    token, user = stub.issue(is_active=True)
    expires_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    scopes = ["GET /arvados/v1/users/current"]
    stub.overrides[TOKEN_PATH] = Answer(
        json={
            "uuid": parse_token(token).uuid,
            "owner_uuid": user.uuid,
            "scopes": scopes,
            "expires_at": expires_at.isoformat(),
        }
    )
    try:
        async with c97qk(
            databases, server.port, RemoteTimeout="1s", refresh="1s", StaleIfError="1h"
        ) as (_, app):
            federation = app.state.federation
            fresh = await federation.identify(parse_token(token))
            federation.invalidate("all")  # only L2 remembers it now
            server.stop()
            await asyncio.sleep(1.1)  # past refreshes_at, and the issuer is gone
            stale = await federation.identify(parse_token(token))
    finally:
        server.stop()
    assert stale == fresh
    assert (stale.user.uuid, stale.token_uuid, stale.scopes, stale.issuer, stale.expires_at) == (
        user.uuid,
        parse_token(token).uuid,
        tuple(scopes),
        "qr1hi",
        expires_at,
    )


# -- bookkeeping: metrics, log lines, L2 rows, last_used_at, L1 bounds ----------------------


def sample(app: FastAPI, name: str, **labels: str) -> float:
    value = app.state.federation.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def outcomes(app: FastAPI) -> dict[str, float]:
    names = ("accepted", "rejected", "invalid", "unreachable", "stale")
    found = {
        outcome: sample(app, "clusterfed_validations_total", issuer="qr1hi", outcome=outcome)
        for outcome in names
    }
    return {outcome: count for outcome, count in found.items() if count}


def lookups(app: FastAPI) -> dict[str, float]:
    return {
        f"{level}-{result}": sample(
            app, "clusterfed_token_cache_lookups_total", level=level, result=result
        )
        for level in ("l1", "l2")
        for result in ("hit", "miss")
    }


async def test_every_outcome_is_counted_timed_and_logged(
    databases: DatabaseFactory,
    issuer: tuple[StubIssuer, ServerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub, server = issuer
    accepted, _ = stub.issue(is_active=True)
    rejected, invalid = stub.issue()[0], stub.issue()[0]
    caplog.set_level("INFO", logger="clusterfed.validation")
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, app):
        assert (await users_current(client, accepted)).status_code == 200
        assert (await users_current(client, accepted)).status_code == 200  # an L1 hit
        stub.overrides[TOKEN_PATH] = Answer(status=403)
        assert (await users_current(client, rejected)).status_code == 401
        stub.overrides[TOKEN_PATH] = Answer(html="<html>login</html>")
        assert (await users_current(client, invalid)).status_code == 401
        server.stop()
        unreachable = stub.issue()[0]
        assert (await users_current(client, unreachable)).status_code == 502
        counted, looked_up = outcomes(app), lookups(app)
        timed = sample(app, "clusterfed_validation_seconds_count", issuer="qr1hi")
        seconds = sample(app, "clusterfed_validation_seconds_sum", issuer="qr1hi")
    assert counted == {"accepted": 1, "rejected": 1, "invalid": 1, "unreachable": 1}
    assert looked_up == {"l1-hit": 1, "l1-miss": 4, "l2-hit": 0, "l2-miss": 4}
    assert timed == 4 and 0 < seconds < 4
    lines = [r.getMessage() for r in caplog.records if r.name == "clusterfed.validation"]
    for token, outcome in (
        (accepted, "accepted"),
        (rejected, "rejected"),
        (invalid, "invalid"),
        (unreachable, "unreachable"),
    ):
        prefix = f"validation token={parse_token(token).uuid} issuer=qr1hi outcome={outcome} "
        (line,) = [line for line in lines if line.startswith(prefix)]
        assert 0 < float(line.removeprefix(prefix).removeprefix("duration_ms=")) < 3000


async def test_stale_is_served_on_a_5xx_but_never_on_an_invalid_answer(
    databases: DatabaseFactory,
    issuer: tuple[StubIssuer, ServerThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub, server = issuer
    token, user = stub.issue(is_active=True)
    caplog.set_level("INFO", logger="clusterfed.validation")
    async with c97qk(
        databases, server.port, RemoteTimeout="1s", refresh="1s", StaleIfError="1h"
    ) as (client, app):
        assert (await users_current(client, token)).status_code == 200
        await asyncio.sleep(1.1)  # a refresh is due
        stub.overrides[TOKEN_PATH] = Answer(status=500)
        served = await users_current(client, token)
        stub.overrides[TOKEN_PATH] = Answer(html="<html>login</html>")
        refused = await users_current(client, token)
        counted = outcomes(app)
    assert served.status_code == 200 and served.json()["uuid"] == user.uuid
    assert refused.status_code == 401
    assert counted == {"accepted": 1, "stale": 1, "invalid": 1}
    warning = f"validation token={parse_token(token).uuid} issuer=qr1hi outcome=stale reason="
    assert any(
        r.levelname == "WARNING" and r.getMessage() == warning + "'issuer qr1hi failed (500)'"
        for r in caplog.records
    )


async def test_the_l2_row_holds_what_the_issuer_said_and_l2_gives_it_back(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, user = stub.issue(is_active=True)
    expires_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    parsed = parse_token(token)
    stub.overrides[TOKEN_PATH] = Answer(
        json={
            "uuid": parsed.uuid,
            "owner_uuid": user.uuid,
            "scopes": ["GET /arvados/v1/users/"],
            "expires_at": expires_at.isoformat(),
        }
    )
    async with c97qk(databases, server.port, RemoteTimeout="1s", refresh="1h") as (_, app):
        federation = app.state.federation
        before = datetime.now(UTC)
        validated = await federation.identify(parsed)
        row = await federation.store.load_token(parsed.uuid)
        federation.invalidate("all")
        from_l2 = await federation.identify(parsed)
        from_l1 = await federation.identify(parsed)  # L2's answer went into L1
        looked_up = lookups(app)
    assert from_l2 == validated == from_l1 and stub.calls == {TOKEN_PATH: 1, USER_PATH: 1}
    assert (looked_up["l2-hit"], looked_up["l1-hit"]) == (1, 1)
    assert row is not None
    assert (row.token_uuid, row.user_uuid, row.cluster_id, row.scopes, row.expires_at) == (
        parsed.uuid,
        user.uuid,
        "qr1hi",
        ("GET /arvados/v1/users/",),
        expires_at,
    )
    assert before <= row.validated_at <= datetime.now(UTC)
    assert row.last_used_at == row.validated_at
    assert row.refreshes_at - row.validated_at == timedelta(hours=1)
    assert len(row.secret_digest) == 64 and parsed.secret not in row.secret_digest


async def test_last_used_at_is_written_at_most_once_a_minute(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    parsed = parse_token(token)
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, app):
        federation = app.state.federation
        assert (await users_current(client, token)).status_code == 200
        first = (await federation.store.load_token(parsed.uuid)).last_used_at
        entry = federation.validator.cache.get(federation.validator.cache.key("qr1hi", token))
        # Touches are written in batches, a second's worth at a time: wait past one.
        settle = TOUCH_BATCH_SECONDS + 0.3
        entry.touched_at -= 50  # used 50 s ago: not yet
        assert (await users_current(client, token)).status_code == 200
        await asyncio.sleep(settle)
        unchanged = (await federation.store.load_token(parsed.uuid)).last_used_at
        entry.touched_at -= 11  # 61 s ago: write it
        assert (await users_current(client, token)).status_code == 200
        # Waited for, not slept on: the batch's write may land late on a busy machine.
        deadline = time.monotonic() + 10
        touched = first
        while touched == first and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            touched = (await federation.store.load_token(parsed.uuid)).last_used_at
    assert unchanged == first
    assert touched > first and datetime.now(UTC) - touched < timedelta(seconds=5)
    assert abs(entry.touched_at - touched.timestamp()) < 0.01


async def test_l1_holds_at_most_token_cache_size_entries(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    async with c97qk(databases, server.port, RemoteTimeout="1s", TokenCacheSize=2) as (client, app):
        for _ in range(3):
            assert (await users_current(client, stub.issue(is_active=True)[0])).status_code == 200
        assert len(app.state.federation.validator.cache) == 2


async def test_expired_at_the_issuer_says_so(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, user = stub.issue()
    stub.overrides[TOKEN_PATH] = Answer(
        json={"uuid": parse_token(token).uuid, "owner_uuid": user.uuid, "expires_at": "2020-01-01"}
    )
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        response = await users_current(client, token)
    assert response.status_code == 401
    assert response.json()["errors"] == ["token has expired at its issuer"]


def federation_for(**config: Any) -> Any:
    from clusterfed.service import Federation
    from clusterfed.storage.database import Database
    from clusterfed.storage.store import SqlFederationStore

    settings = local_config("c97qk", "sqlite+aiosqlite:///unused.db", **config)
    return Federation(settings, SqlFederationStore(Database(settings.database_url), users_table))


async def test_unaccepted_issuers_are_refused_with_the_reason() -> None:
    # Never started: these are refused before the store or the network is used.
    federation = federation_for(remotes={"qr1hi": remote_entry(1)}, login={"LoginCluster": "zlogn"})
    for issuer, message in [
        ("zlogn", "login cluster zlogn has no RemoteClusters entry"),
        ("zzzzz", "tokens issued by cluster zzzzz are not accepted here"),
    ]:
        token = parse_token(f"v2/{new_uuid(issuer, TOKEN_TYPE)}/{new_secret()}")
        with pytest.raises(Unauthorized) as refused:
            await federation.identify(token)
        assert refused.value.message == message


def test_a_missing_system_root_token_is_warned_about_only_when_it_matters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="clusterfed.validation")
    federation_for(remotes={"qr1hi": remote_entry(1)})
    assert [r.getMessage() for r in caplog.records] == [
        "SystemRootToken is not set: the token-cache digests are keyed by the cluster ID "
        "alone; set it so they are keyed by a secret"
    ]
    caplog.clear()
    federation_for(remotes={"qr1hi": remote_entry(1)}, system_root_token="s3cret")
    federation_for()
    assert caplog.records == []


def test_l2_digests_are_keyed_by_the_system_root_token() -> None:
    secret = new_secret()
    one = federation_for(system_root_token="one").validator.secret_digest(secret)
    again = federation_for(system_root_token="one").validator.secret_digest(secret)
    other = federation_for(system_root_token="two").validator.secret_digest(secret)
    assert one == again != other  # every worker agrees; another key, another digest
    assert one != federation_for(system_root_token="one").validator.secret_digest(secret + "x")


async def test_a_user_call_answering_no_record_says_so(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    stub.overrides[USER_PATH] = Answer(status=204, raw=b"")
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        response = await users_current(client, token)
    assert response.status_code == 401
    assert response.json()["errors"] == ["issuer qr1hi did not answer with a user record"]


async def test_the_remote_anonymous_user_needs_a_local_one(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    from clusterfed.server.models import User
    from sqlalchemy import delete

    from tests.support.stub_issuer import StubUser

    stub, server = issuer
    token = stub.issue_for(StubUser("qr1hi-tpzed-anonymouspublic", {}))
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, app):
        async with app.state.database.sessionmaker() as session:
            await session.execute(delete(User).where(User.uuid == "c97qk-tpzed-anonymouspublic"))
            await session.commit()
        response = await users_current(client, token)
    assert response.status_code == 401
    assert response.json()["errors"] == [
        "this cluster has no anonymous user to map the remote one to"
    ]


async def test_a_remembered_rejection_answers_with_the_same_reason(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue()
    stub.overrides[TOKEN_PATH] = Answer(status=403)
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (client, _):
        first = await users_current(client, token)
        again = await users_current(client, token)
    assert stub.calls[TOKEN_PATH] == 1
    assert (
        first.json()["errors"]
        == again.json()["errors"]
        == ["issuer qr1hi rejected the token (403)"]
    )


async def test_l1_keeps_entries_when_stale_if_error_outlasts_the_refresh(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    async with c97qk(
        databases, server.port, RemoteTimeout="1s", refresh="5m", StaleIfError="1h"
    ) as (client, app):
        for _ in range(2):
            assert (await users_current(client, token)).status_code == 200
        assert lookups(app)["l1-hit"] == 1


async def test_an_unexpected_failure_is_counted_as_an_error(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    async with c97qk(databases, server.port, RemoteTimeout="1s") as (_, app):
        federation = app.state.federation

        async def broken(*_: Any, **__: Any) -> None:
            raise RuntimeError("the database went away")

        # The mirror and the L2 row are written together (mirror_user with the token).
        federation.store.save_token = broken
        federation.store.mirror_user = broken
        with pytest.raises(RuntimeError):
            await federation.identify(parse_token(token))
        errors = sample(app, "clusterfed_validations_total", issuer="qr1hi", outcome="error")
    assert errors == 1
