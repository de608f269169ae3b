"""Rate limits on cold validations (RFC 7662 section 4 on token fishing).

A cold validation (no usable cache entry) costs calls to the token's issuer, so a client
that sends random foreign tokens makes this cluster hammer its peers. Two token buckets
stand in front of every call to an issuer:

- one per client address: ``ColdValidationRate`` per second, burst twice that;
- one per issuer, all clients together: ``IssuerValidationRate`` per second, burst
  twice that.

Over either limit the request is refused with 429, a ``Retry-After`` header and the
usual error body, and the issuer is not called. Answers from cache never reach here.

Where the buckets live is a :class:`Budget`: :class:`LocalBudget` keeps them in the
process; a Federation with clusterfed's database gives every throttle its shared budget
(``storage.rate_buckets``: one row per bucket, updated in one statement), so every worker
of every host sharing the database spends from the same buckets. Any throttle built on
:class:`RateLimit` (the admin-login throttle, the cold-validation limits) is shared that way
through ``acquire`` (``FanoutRate``'s budget for requests that reach several clusters
is one more); ``take`` and ``admit`` decide in the process alone.

The client address is the peer of the connection, unless that peer is one of
``TrustedProxies``: then the rightmost address of ``X-Forwarded-For`` that is not itself
a trusted proxy names the client.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from cachetools import TTLCache
from starlette.responses import JSONResponse
from starlette.types import Scope

from clusterfed.errors import FederationError, error_response

# Buckets of clients that went quiet are forgotten; a full bucket is the same as none.
MAX_TRACKED_CLIENTS = 100_000
FORWARDED_FOR = b"x-forwarded-for"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Spend = tuple[str, float, float]  # a bucket's key, its rate a second, its burst


class TooManyRequests(FederationError):
    """429: a rate limit said no; ``retry_after`` seconds until it would say yes."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))
        self.reason = reason

    def response(self) -> JSONResponse:
        return error_response(
            self.status_code, self.message, headers={"Retry-After": str(self.retry_after)}
        )


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take()`` spends one if there is one."""

    __slots__ = ("burst", "level", "rate", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.updated = now

    def take(self, now: float) -> float:
        """0 when a token was spent, else the seconds until one will be there."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


def burst_for(rate: float) -> float:
    """A limit's burst: twice its rate, and never under one (else nothing ever passes)."""
    return max(1.0, 2 * rate)


class Budget(Protocol):
    """Where token buckets live. ``take`` spends one token of bucket ``key`` (refilled at
    ``rate`` a second up to ``burst``) and answers 0, or, when it is empty, the seconds
    until one will be there. Keys of different limits must not meet: :class:`RateLimit`
    prefixes its name."""

    async def take(self, key: str, rate: float, burst: float) -> float: ...

    async def take_many(self, spends: Sequence[Spend]) -> tuple[int, float] | None:
        """One token of each ``(key, rate, burst)`` in turn, stopping at the first bucket
        that is empty (the ones before it stay spent): None, or its index and the wait."""
        ...


class LocalBudget:
    """Buckets in this process; one is forgotten once it would be full again (a full
    bucket is the same as none), and at most ``max_keys`` per refill time are kept."""

    def __init__(
        self, *, max_keys: int = MAX_TRACKED_CLIENTS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self._clock = clock
        # One cache per refill time (burst / rate), so each key can expire on time.
        self._buckets: dict[float, TTLCache[str, TokenBucket]] = {}

    def take_now(self, key: str, rate: float, burst: float) -> float:
        now = self._clock()
        refill = burst / rate
        buckets = self._buckets.get(refill)
        if buckets is None:
            buckets = self._buckets[refill] = TTLCache(
                maxsize=self.max_keys, ttl=refill + 1.0, timer=self._clock
            )
        bucket = buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = TokenBucket(rate, burst, now)
        wait = bucket.take(now)
        buckets[key] = bucket  # re-insert: refreshes its time to live
        return wait

    async def take(self, key: str, rate: float, burst: float) -> float:
        return self.take_now(key, rate, burst)

    async def take_many(self, spends: Sequence[Spend]) -> tuple[int, float] | None:
        for index, (key, rate, burst) in enumerate(spends):
            wait = self.take_now(key, rate, burst)
            if wait:
                return index, wait
        return None


class RateLimit:
    """One limit: ``rate`` a second for each key (a client address, an issuer), burst
    ``burst`` (default twice the rate, at least one); a rate of 0 turns it off.

    ``await acquire(key)`` spends from ``budget`` (the cluster's shared budget, when the
    federation has one; else this process's buckets), ``take(key)`` from this process's
    buckets alone. Both answer 0 or the seconds to wait. ``name`` keeps this limit's keys
    apart from every other limit's in a shared budget.
    """

    def __init__(
        self,
        name: str,
        rate: float,
        *,
        burst: float | None = None,
        budget: Budget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.rate = rate
        self.burst = burst if burst is not None else burst_for(rate)
        self.budget = budget
        self.local = LocalBudget(clock=clock)

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        return self.local.take_now(key, self.rate, self.burst)

    async def acquire(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        if self.budget is None:
            return self.local.take_now(key, self.rate, self.burst)
        return await self.budget.take(f"{self.name}:{key}", self.rate, self.burst)


class ValidationThrottle:
    def __init__(
        self,
        *,
        client_rate: float,
        issuer_rate: float,
        clock: Callable[[], float] = time.monotonic,
        budget: Budget | None = None,
    ) -> None:
        self.client_rate = client_rate
        self.issuer_rate = issuer_rate
        self._clock = clock
        # The shared budget ``acquire`` spends from (None: this process's buckets).
        self.budget = budget
        # A client's bucket refills completely in burst/rate = 2 s; after that it can go.
        self._clients: TTLCache[str, TokenBucket] = TTLCache(
            maxsize=MAX_TRACKED_CLIENTS, ttl=2.0 + 1.0, timer=clock
        )
        self._issuers: dict[str, TokenBucket] = {}

    def admit(self, client: str | None, issuer: str) -> None:
        """Spend one cold validation for ``client`` at ``issuer``, or raise 429, deciding
        in this process alone.

        The client's bucket is checked first, so a flooding client does not drain the
        issuer's bucket that every other client shares.
        """
        now = self._clock()
        if client is not None and self.client_rate > 0:
            bucket = self._clients.get(client)
            if bucket is None:
                bucket = TokenBucket(self.client_rate, burst_for(self.client_rate), now)
            wait = bucket.take(now)
            self._clients[client] = bucket  # re-insert: refreshes its time to live
            if wait:
                raise self._refusal("client", issuer, wait)
        if self.issuer_rate > 0:
            bucket = self._issuers.get(issuer)
            if bucket is None:
                bucket = self._issuers[issuer] = TokenBucket(
                    self.issuer_rate, burst_for(self.issuer_rate), now
                )
            wait = bucket.take(now)
            if wait:
                raise self._refusal("issuer", issuer, wait)

    async def acquire(self, client: str | None, issuer: str) -> None:
        """``admit``, spending from the shared budget when there is one: every worker of
        every host sharing it draws on the same two buckets (in one statement)."""
        budget = self.budget
        if budget is None:
            self.admit(client, issuer)
            return
        spends: list[Spend] = []
        reasons: list[str] = []
        if client is not None and self.client_rate > 0:
            spends.append((f"cold:{client}", self.client_rate, burst_for(self.client_rate)))
            reasons.append("client")
        if self.issuer_rate > 0:
            spends.append((f"issuer:{issuer}", self.issuer_rate, burst_for(self.issuer_rate)))
            reasons.append("issuer")
        if not spends:
            return
        refused = await budget.take_many(spends)
        if refused is not None:
            index, wait = refused
            raise self._refusal(reasons[index], issuer, wait)

    @staticmethod
    def _refusal(reason: str, issuer: str, wait: float) -> TooManyRequests:
        if reason == "client":
            message = "too many validations of uncached tokens from this client"
        else:
            message = f"too many validations of uncached tokens issued by {issuer}"
        return TooManyRequests(
            f"{message}; retry in {math.ceil(wait)}s", retry_after=wait, reason=reason
        )


class RefusalLog:
    """Which refusals get a log line: the first of each client and reason, then one line
    per ``interval`` seconds carrying the count of those left out. A client fishing
    with random tokens is refused hundreds of times a second; a log line for each would
    turn its flood into one on the operator's disk (and cost the worker a tenth of its
    time). The metric still counts every refusal."""

    def __init__(
        self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        # (reason, client) -> [when its last line was written, refusals since then];
        # kept until a whole interval passes without a refusal.
        self._seen: TTLCache[tuple[str, str | None], list[float]] = TTLCache(
            maxsize=MAX_TRACKED_CLIENTS, ttl=interval, timer=clock
        )

    def should_log(self, reason: str, client: str | None) -> int | None:
        """None: leave this refusal out; else log it, with this many left out before it."""
        now = self._clock()
        key = (reason, client)
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            self._seen[key] = seen  # re-set: its time to live starts again
            return None
        left_out = 0 if seen is None else int(seen[1])
        self._seen[key] = [now, 0]
        return left_out


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses); raises ValueError naming the bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """Who is asking: the connection's peer, or what a trusted proxy says it forwarded."""
    peer = scope.get("client")
    host = peer[0] if peer else None
    if not trusted or host is None:
        return host
    address = _address(host)
    if address is None or not any(address in net for net in trusted):
        return host
    hops: list[str] = []
    for name, value in scope["headers"]:
        if name == FORWARDED_FOR:
            hops.extend(value.decode("latin-1").split(","))
    # Rightmost first: each trusted proxy appended the address it saw.
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None:
            return host  # a garbled header from a trusted proxy: count it against the proxy
        if not any(hop_address in net for net in trusted):
            return str(hop_address)
    return host
