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

A cold validation's two buckets (client, then issuer) are one round trip: one statement
on PostgreSQL (``_TAKE_TWO``), one hop on SQLite. A worker that found a bucket empty
refuses that key for the 1/rate seconds it surely stays empty, without asking again.

Leases (a worker taking a few tokens at a time and spending them in memory) were
considered and not built: a lease saves the statement but strands tokens in workers that
do not need them, and with a burst of ten split among eight workers no batch is both
small enough to stay within 10% and worth it. What the statement costs a cold validation
is measured by ``python -m bench shared_limits``.

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
from collections.abc import Callable, Sequence
from typing import Any

from cachetools import TTLCache
from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import Double

from clusterfed.trust.throttle import MAX_TRACKED_CLIENTS, LocalBudget, Spend

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
# The same statement as sqlite3 runs it: SQLAlchemy's execution around each statement
# cost more than the statement (about 60 of 100 us).
_SQLITE_TAKE = _TAKE["sqlite"].compile(dialect=sqlite.dialect())
_SQLITE_TAKE_PARAMS = tuple(_SQLITE_TAKE.positiontup or ())
# The statement's own constants (1.0, 0.0), bound as parameters too.
_SQLITE_TAKE_CONSTANTS = {
    name: value
    for name, value in _SQLITE_TAKE.construct_params(
        {"b_key": "", "b_now": 0.0, "b_rate": 1.0, "b_burst": 1.0}
    ).items()
    if not name.startswith("b_")
}


def _sqlite_spend(connection: Any, params: Sequence[dict[str, Any]]) -> int | None:
    """In the writer thread: the index of the first bucket found empty, or None."""
    for index, given in enumerate(params):
        values = {**_SQLITE_TAKE_CONSTANTS, **given}
        cursor = connection.execute(
            _SQLITE_TAKE.string, [values[name] for name in _SQLITE_TAKE_PARAMS]
        )
        try:
            if not cursor.fetchall():  # all of it: the statement is done, and committed
                return index
        finally:
            cursor.close()
    return None


def _pg_take(prefix: str, row: str) -> str:
    """PostgreSQL's take of one bucket, its parameters named ``<prefix>key`` ..., its new
    row from ``row`` (a VALUES or a SELECT of the four columns in ``{}``)."""
    now, rate, burst = (f"CAST(:{prefix}{name} AS float8)" for name in ("now", "rate", "burst"))
    refilled = f"least(b.level + greatest({now} - b.updated, 0) * {rate}, {burst})"
    later = f"greatest(b.updated, {now})"
    new_row = f":{prefix}key, {burst} - 1, {now}, {now} + 1 / {rate}"
    return (
        "INSERT INTO federation_rate_buckets AS b (key, level, updated, full_at) "
        f"{row.format(new_row)} "
        f"ON CONFLICT (key) DO UPDATE SET level = {refilled} - 1, updated = {later}, "
        f"full_at = {later} + ({burst} - {refilled} + 1) / {rate} "
        f"WHERE {refilled} >= 1 RETURNING 1"
    )


# A cold validation's two buckets in one round trip: the second is spent only when the
# first was (its INSERT selects a row only if the first returned one).
_TAKE_TWO = text(
    f"WITH first AS ({_pg_take('a_', 'VALUES ({})')}), "
    f"second AS ({_pg_take('b_', 'SELECT {} WHERE EXISTS (SELECT FROM first)')}) "
    "SELECT (SELECT count(*) FROM first) AS first, (SELECT count(*) FROM second) AS second"
)
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
        # Seconds since the epoch, read once per spend. Every time this budget keeps is
        # read from it, so a test can stop it (or move it) to take refills out of a run.
        self.clock = clock
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
            maxsize=MAX_TRACKED_CLIENTS, ttl=EMPTY_MEMORY_SECONDS, timer=lambda: self.clock()
        )

    async def take(self, key: str, rate: float, burst: float) -> float:
        refused = await self.take_many(((key, rate, burst),))
        return 0.0 if refused is None else refused[1]

    async def take_many(self, spends: Sequence[Spend]) -> tuple[int, float] | None:
        """One token of each bucket in turn, stopping at the first that is empty (the
        ones before it stay spent): None, or that bucket's index and the seconds to wait.
        Two buckets (a cold validation's) are one statement on PostgreSQL, one hop to
        the writer thread on SQLite."""
        now = self.clock()
        if now < self._unreachable_until:
            return self._share(spends)
        # A bucket this worker knows to be empty refuses without asking; the ones before
        # it are spent as usual.
        known = len(spends)
        for index, (key, _rate, _burst) in enumerate(spends):
            empty_until = self._empty.get(key)
            if empty_until is not None and now < empty_until:
                known = index
                break
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                refused = await self._spend(spends[:known], now) if known else None
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            self._unreachable_until = now + RETRY_SECONDS
            log.warning(
                "the shared rate limits cannot be reached (%s); this worker spends its "
                "share (1/%d of each limit) for %.0fs",
                type(exc).__name__,
                self.workers,
                RETRY_SECONDS,
            )
            return self._share(spends)
        if refused is not None:
            # Empty: no token before 1/rate seconds, at the most (its level is not read
            # back); until then this worker refuses the key without asking. The tokens
            # that come meanwhile stay in the bucket for whoever asks next.
            key, rate, _burst = spends[refused]
            self._empty[key] = now + 1.0 / rate
            return refused, 1.0 / rate
        if known < len(spends):
            return known, self._empty[spends[known][0]] - now
        return None

    async def _spend(self, spends: Sequence[Spend], now: float) -> int | None:
        """The index of the first bucket found empty, or None."""
        writes = self.database.writes
        dialect = self.database.engine.dialect.name
        params = [
            {"b_key": bucket_key(key), "b_now": now, "b_rate": rate, "b_burst": burst}
            for key, rate, burst in spends
        ]
        if dialect == "postgresql" and len(spends) == 2:
            first, second = params
            row = await writes.first(
                _TAKE_TWO,
                {**{f"a_{k[2:]}": v for k, v in first.items()}, **second},
                durable=False,
            )
            if not row[0]:
                return 0
            return None if row[1] else 1
        if writes.mode == "thread":  # a SQLite file: plain sqlite3 in the writer thread
            return await writes.call_in_writer(
                lambda connection: _sqlite_spend(connection, params), durable=False
            )
        statement = _TAKE[dialect]
        rows = await writes.first_each([(statement, p) for p in params], durable=False)
        return None if rows[-1] is not None else len(rows) - 1

    def _share(self, spends: Sequence[Spend]) -> tuple[int, float] | None:
        """This worker's share of each limit, spent in this process."""
        workers = max(1, self.workers)
        for index, (key, rate, burst) in enumerate(spends):
            wait = self._fallback.take_now(key, rate / workers, max(1.0, burst / workers))
            if wait:
                return index, wait
        return None

    async def maintain(self) -> None:
        """Say this worker is alive, count the workers alive, forget the buckets full
        again (and the workers gone). Called every ``MAINTAIN_SECONDS`` by each worker."""
        now = self.clock()
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
