"""A token bucket per client address for the admin page's login form.

A burst of ``burst`` attempts, then ``rate`` per second: a guesser gets ten tries and then
one a second, while the right credential waits at most a second or so behind them. Over
the limit the caller answers 429 with ``Retry-After``. The buckets are the federation's
shared budget (every worker of every host sharing the database spends from the same
bucket for one client: ``acquire``); a full bucket is the same as none, so they are
forgotten once they would have refilled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from clusterfed.trust.throttle import Budget, RateLimit

BURST = 10
RATE_PER_SECOND = 1.0
LIMIT_NAME = "admin-login"


class LoginThrottle:
    def __init__(
        self,
        *,
        burst: int = BURST,
        rate: float = RATE_PER_SECOND,
        budget: Budget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.limit = RateLimit(LIMIT_NAME, rate, burst=float(burst), budget=budget, clock=clock)

    def take(self, client: str) -> int:
        """0 when ``client`` may try now (one attempt is spent), else seconds to wait;
        decided in this process alone."""
        return _seconds(self.limit.take(client))

    async def acquire(self, client: str) -> int:
        """``take``, on the shared budget when there is one."""
        return _seconds(await self.limit.acquire(client))


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait)) if wait else 0
