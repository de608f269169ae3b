"""A token bucket per client address for the admin page's login form.

A burst of ``burst`` attempts, then ``rate`` per second: a guesser gets ten tries and then
one a second, while the right credential waits at most a second or so behind them. Over
the limit the caller answers 429 with ``Retry-After``. Buckets live in the worker process
(with ``--workers N`` the rate is N times this); a full bucket is the same as none, so
entries expire once they would have refilled, and at most ``max_clients`` are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cachetools import TTLCache

BURST = 10
RATE_PER_SECOND = 1.0
MAX_CLIENTS = 10_000


class LoginThrottle:
    def __init__(
        self,
        *,
        burst: int = BURST,
        rate: float = RATE_PER_SECOND,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        refill_seconds = burst / rate
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(
            maxsize=max_clients, ttl=refill_seconds, timer=clock
        )

    def take(self, client: str) -> int:
        """0 when ``client`` may try now (one attempt is spent), else seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[client] = (tokens - 1.0, now)
        return 0
