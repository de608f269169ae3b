"""``SharedBudget``: the cluster's token buckets, one row each, shared by every worker.

A rate limit is the cluster's, not a worker's: with the buckets in each process, two hosts
of four workers let one client make eight times its limit. Here every bucket is a row of
``federation_rate_buckets`` and spending one token is one statement, an upsert that
refills the bucket for the time since it was last touched, spends a token when there is
one, and returns the row only then:

    INSERT (key, burst - 1, now) ON CONFLICT (key) DO UPDATE
        SET level = refilled - 1, updated = max(updated, now), full_at = ...
        WHERE refilled >= 1            -- refilled = min(burst, level + elapsed * rate)
    RETURNING level                    -- no row: the bucket is empty, nothing changed

It runs as the hot path's other writes do (``point_writes``: one round trip on
PostgreSQL, one hop to the writer thread on a SQLite file), and only for a request no
cache could answer: a cached request never reaches a bucket. Time only moves forward in a
bucket (``max(updated, now)``), so hosts whose clocks disagree by a little cannot mint
tokens by taking turns.

Measured against leases (a worker taking a few tokens at a time and spending them in
memory): a lease saves a statement per validation but strands tokens in workers that do
not need them, and with a burst of ten split among eight workers no batch is both small
and worth it. One statement costs a cold validation 3 to 5% of its rate (``python -m
bench shared``), so each token is spent where it is needed.

A worker that cannot reach the budget (the statement fails or takes longer than
``TIMEOUT_SECONDS``) falls back for ``RETRY_SECONDS`` to buckets of its own at its share:
the rate divided by the workers it knows of (each worker keeps a row ``worker:<id>`` of
the same table alive in ``maintain``, until its ``full_at``). Never to no limit.
``maintain`` also deletes buckets that are full again (and workers gone): a row per
client address must not outlive the few seconds it matters, however many addresses a
stranger sends from.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import Double

from clusterfed.trust.throttle import MAX_TRACKED_CLIENTS, LocalBudget

from .database import Database
from .models import FederationRateBucket
from .upsert import prebuilt_upsert, upsert_params

log = logging.getLogger("clusterfed.limits")

# Longer than this and a worker stops waiting for the shared budget and spends its share.
TIMEOUT_SECONDS = 1.0
# How long a worker that could not reach the budget spends its share before trying again.
RETRY_SECONDS = 2.0
# How often each worker says it is alive, counts the others and prunes full buckets; a
# worker not seen for ``WORKER_EXPIRY_SECONDS`` is no longer counted.
MAINTAIN_SECONDS = 5.0
WORKER_EXPIRY_SECONDS = 3 * MAINTAIN_SECONDS
# How long a worker remembers that a bucket was empty (each for at most 1/rate seconds).
EMPTY_MEMORY_SECONDS = 10.0
# Longer keys (a limit's name and a client's address are far shorter) are hashed.
MAX_KEY_CHARS = 160

_BUCKETS = FederationRateBucket.__table__
WORKER_PREFIX = "worker:"


def _take_statement(dialect: str) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_BUCKETS)
    if dialect == "postgresql":
        least, greatest = func.least, func.greatest
    else:  # SQLite's two-argument min and max are scalar functions
        least, greatest = func.min, func.max
    now = bindparam("b_now", type_=Double())
    rate = bindparam("b_rate", type_=Double())
    burst = bindparam("b_burst", type_=Double())
    elapsed = greatest(now - _BUCKETS.c.updated, 0.0)
    refilled = least(_BUCKETS.c.level + elapsed * rate, burst)
    later = greatest(_BUCKETS.c.updated, now)
    statement = insert.values(
        key=bindparam("b_key"),
        level=burst - 1.0,
        updated=now,
        full_at=now + 1.0 / rate,
    )
    return statement.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "level": refilled - 1.0,
            "updated": later,
            "full_at": later + (burst - refilled + 1.0) / rate,
        },
        where=refilled >= 1.0,
    ).returning(_BUCKETS.c.level)


_TAKE = {dialect: _take_statement(dialect) for dialect in ("postgresql", "sqlite")}
_PRUNE = delete(_BUCKETS).where(_BUCKETS.c.full_at < bindparam("b_now", type_=Double()))
_COUNT_WORKERS = (
    select(func.count())
    .where(_BUCKETS.c.key.startswith(WORKER_PREFIX, autoescape=True))
    .where(_BUCKETS.c.full_at >= bindparam("b_now", type_=Double()))
)
_LEAVE = delete(_BUCKETS).where(_BUCKETS.c.key == bindparam("b_key"))


def bucket_key(key: str) -> str:
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class SharedBudget:
    """The :class:`~clusterfed.trust.throttle.Budget` every worker sharing ``database``
    spends from."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._clock = clock
        self.worker_key = bucket_key(
            f"{WORKER_PREFIX}{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        # Workers sharing the budget, this one included: the last count ``maintain`` made.
        self.workers = 1
        self._fallback = LocalBudget()
        self._unreachable_until = 0.0
        # Buckets this worker found empty, and until when they are sure to stay empty:
        # a client flooding this worker is refused here, without a statement each time.
        self._empty: TTLCache[str, float] = TTLCache(
            maxsize=MAX_TRACKED_CLIENTS, ttl=EMPTY_MEMORY_SECONDS, timer=clock
        )

    async def take(self, key: str, rate: float, burst: float) -> float:
        now = self._clock()
        if now < self._unreachable_until:
            return self._share(key, rate, burst)
        empty_until = self._empty.get(key)
        if empty_until is not None and now < empty_until:
            return empty_until - now
        params = {"b_key": bucket_key(key), "b_now": now, "b_rate": rate, "b_burst": burst}
        statement = _TAKE[self.database.engine.dialect.name]
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                row = await self.database.writes.first(statement, params, durable=False)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            self._unreachable_until = now + RETRY_SECONDS
            log.warning(
                "the shared rate limits cannot be reached (%s); this worker spends its "
                "share (1/%d of each limit) for %.0fs",
                type(exc).__name__,
                self.workers,
                RETRY_SECONDS,
            )
            return self._share(key, rate, burst)
        if row is not None:
            return 0.0
        # Empty: no token before 1/rate seconds, at the most (its level is not read back);
        # until then this worker refuses the key without asking. The tokens that come
        # meanwhile stay in the bucket for whoever asks next, so nothing is lost.
        wait = 1.0 / rate
        self._empty[key] = now + wait
        return wait

    def _share(self, key: str, rate: float, burst: float) -> float:
        workers = max(1, self.workers)
        return self._fallback.take_now(key, rate / workers, max(1.0, burst / workers))

    async def maintain(self) -> None:
        """Say this worker is alive, count the workers alive, forget the buckets full
        again (and the workers gone). Called every ``MAINTAIN_SECONDS`` by each worker."""
        now = self._clock()
        writes = self.database.writes
        statement = prebuilt_upsert(self.database.engine.dialect.name, _BUCKETS, ("key",))
        alive = {"key": self.worker_key, "level": 0.0, "updated": now}
        alive["full_at"] = now + WORKER_EXPIRY_SECONDS
        await writes.execute(statement, upsert_params(alive), durable=False)
        count = await self.database.reads.first(_COUNT_WORKERS, {"b_now": now})
        self.workers = max(1, int(count[0])) if count is not None else 1
        await writes.execute(_PRUNE, {"b_now": now}, durable=False)

    async def leave(self) -> None:
        """This worker stops: the others no longer count it."""
        await self.database.writes.execute(_LEAVE, {"b_key": self.worker_key}, durable=False)
