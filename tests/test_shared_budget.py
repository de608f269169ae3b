"""The cluster's shared token buckets (storage.rate_buckets), on each database: two
budgets on one database stand for two worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from clusterfed.admin.login_throttle import LoginThrottle
from clusterfed.storage.database import Database
from clusterfed.storage.models import FederationRateBucket
from clusterfed.storage.rate_buckets import SharedBudget, bucket_key
from clusterfed.trust.throttle import TooManyRequests, ValidationThrottle
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.support.clock import Clock
from tests.support.databases import DatabaseFactory


@pytest.fixture
async def database(databases: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(databases.new_url("budget"))
    await database.start()
    try:
        yield database
    finally:
        await database.dispose()


async def buckets(database: Database) -> int:
    """Rows of buckets (not of workers)."""
    table = FederationRateBucket.__table__
    async with database.sessionmaker() as session:
        count = select(func.count()).where(~table.c.key.startswith("worker:"))
        return (await session.scalar(count)) or 0


async def test_two_workers_spend_one_bucket(database: Database) -> None:
    clock = Clock(1_800_000_000.0)
    one, two = SharedBudget(database, clock=clock), SharedBudget(database, clock=clock)
    spent = [await budget.take("cold:a", 5, 10) for budget in (one, two) * 6]
    assert spent == [0.0] * 10 + [0.2, 0.2]  # burst 10 between them, not 10 each
    assert await one.take("cold:b", 5, 10) == 0.0  # another key, another bucket
    clock.now += 0.2  # one token refilled
    assert await two.take("cold:a", 5, 10) == 0.0
    assert await one.take("cold:a", 5, 10) > 0
    clock.now += 10  # full again: as many as the burst, no more
    assert [await one.take("cold:a", 5, 10) for _ in range(11)].count(0.0) == 10


async def test_a_host_whose_clock_is_behind_mints_no_tokens(database: Database) -> None:
    ahead, behind = Clock(1_800_000_000.0), Clock(1_800_000_000.0)
    behind.now -= 0.5
    a, b = SharedBudget(database, clock=ahead), SharedBudget(database, clock=behind)
    for _ in range(10):
        assert await a.take("k", 1, 10) == 0.0
    # Taking turns, the host behind never refills the time the host ahead already counted.
    refused = 0
    for _ in range(20):
        refused += (await b.take("k", 1, 10)) > 0
        refused += (await a.take("k", 1, 10)) > 0
    assert refused == 40


async def test_full_buckets_and_gone_workers_are_pruned(database: Database) -> None:
    clock = Clock(1_800_000_000.0)
    budget = SharedBudget(database, clock=clock)
    for client in range(50):  # a stranger sending from many addresses
        await budget.take(f"cold:198.51.100.{client}", 5, 10)
    await budget.take("admin-login:x", 1, 10)
    assert await buckets(database) == 51
    await budget.maintain()
    assert await buckets(database) == 51  # not full yet: still limits
    clock.now += 0.5  # the 5/s buckets are full again; the login bucket refills in 1 s
    await budget.maintain()
    assert await buckets(database) == 1
    other, gone = SharedBudget(database, clock=clock), SharedBudget(database, clock=clock)
    await gone.maintain()
    await other.maintain()
    assert (budget.workers, other.workers) == (1, 3)
    await other.leave()
    await budget.maintain()
    assert budget.workers == 2  # itself and ``gone``, until ``gone`` has been quiet too long
    clock.now += 15.1
    await budget.maintain()
    assert budget.workers == 1


async def test_an_unreachable_budget_falls_back_to_this_workers_share(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1_800_000_000.0)
    budget = SharedBudget(database, clock=clock)
    budget.workers = 4

    async def unreachable(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("statement", None, ConnectionRefusedError())

    monkeypatch.setattr(database.writes, "first", unreachable)
    monkeypatch.setattr(database.writes, "first_each", unreachable)
    monkeypatch.setattr(database.writes, "call_in_writer", unreachable)
    # Burst 20 and rate 10 shared by 4 workers: this one alone gets a quarter, not none
    # and not all.
    assert [await budget.take("cold:a", 10, 20) for _ in range(6)].count(0.0) == 5


async def test_a_slow_budget_falls_back_too(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = SharedBudget(database)
    budget.workers = 2
    monkeypatch.setattr("clusterfed.storage.rate_buckets.TIMEOUT_SECONDS", 0.05)

    async def stuck(*_args: object, **_kwargs: object) -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr(database.writes, "first", stuck)
    monkeypatch.setattr(database.writes, "first_each", stuck)
    monkeypatch.setattr(database.writes, "call_in_writer", stuck)
    # Half of rate 1 and burst 2: one now, then one each 2 s; the first call waited
    # TIMEOUT_SECONDS, the next ones do not ask the budget again.
    waits = [await budget.take("cold:a", 1, 2) for _ in range(3)]
    assert waits[0] == 0.0 and all(1.9 < wait <= 2.0 for wait in waits[1:]), waits


async def test_throttles_built_on_the_interface_share_the_budget(database: Database) -> None:
    clock = Clock(1_800_000_000.0)  # nothing refills while the test runs, however slowly
    one, two = SharedBudget(database, clock=clock), SharedBudget(database, clock=clock)
    first = ValidationThrottle(client_rate=1, issuer_rate=1000, budget=one)
    second = ValidationThrottle(client_rate=1, issuer_rate=1000, budget=two)
    await first.acquire("10.0.0.1", "qr1hi")
    await second.acquire("10.0.0.1", "qr1hi")
    with pytest.raises(TooManyRequests) as refused:
        await first.acquire("10.0.0.1", "qr1hi")
    assert refused.value.reason == "client" and refused.value.retry_after == 1
    logins = [LoginThrottle(budget=budget) for budget in (one, two)]
    waits = [await logins[i % 2].acquire("10.0.0.1") for i in range(12)]
    assert waits.count(0) == 10 and waits[-1] == 1


def test_long_keys_are_hashed_to_fit() -> None:
    assert bucket_key("cold:10.0.0.1") == "cold:10.0.0.1"
    long = bucket_key("x" * 500)
    assert len(long) <= 160 and long == bucket_key("x" * 500) != bucket_key("y" * 500)


async def test_a_worker_refuses_an_empty_bucket_without_asking_again(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1_800_000_000.0)
    budget = SharedBudget(database, clock=clock)
    for _ in range(2):
        await budget.take("cold:a", 1, 2)
    assert await budget.take("cold:a", 1, 2) == 1.0  # empty: asked, and remembered
    asked = []
    for name in ("first", "first_each", "call_in_writer"):
        write = getattr(database.writes, name)

        async def counting(*args: object, write: Any = write, **kwargs: object) -> object:
            asked.append(args)
            return await write(*args, **kwargs)

        monkeypatch.setattr(database.writes, name, counting)
    clock.now += 0.5
    assert await budget.take("cold:a", 1, 2) == 0.5 and asked == []  # a flood costs nothing
    clock.now += 0.5  # a token may be there now: asked again, and it was
    assert await budget.take("cold:a", 1, 2) == 0.0 and asked


async def test_a_cold_validations_two_buckets_stop_at_the_first_empty_one(
    database: Database,
) -> None:
    clock = Clock(1_800_000_000.0)
    one, two = SharedBudget(database, clock=clock), SharedBudget(database, clock=clock)
    spends = [("cold:a", 1.0, 2.0), ("issuer:qr1hi", 2.0, 3.0)]
    assert await one.take_many(spends) is None
    assert await two.take_many(spends) is None
    # The client's bucket is empty: the issuer's is not spent for it.
    assert await one.take_many(spends) == (0, 1.0)
    assert await two.take_many([("cold:b", 1.0, 2.0), spends[1]]) is None
    # Now the issuer's is: the other client's token is spent, the issuer refuses.
    assert await two.take_many([("cold:c", 1.0, 2.0), spends[1]]) == (1, 0.5)
    assert await one.take_many([("cold:c", 1.0, 2.0)]) is None  # one of two left
    assert await one.take_many([("cold:c", 1.0, 2.0)]) == (0, 1.0)
