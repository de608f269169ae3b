"""A clock that moves only when a test moves it.

Rate limits refill with time; a test that counts refusals in real time counts how fast the
machine was. With this clock (passed to a limit, or put in an app's shared budget by
``stop_rate_limit_clock``) a burst is exactly its size, and a refill happens exactly when
the test says a second went by.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stop_rate_limit_clock(app: Starlette) -> Clock:
    """Stop the clock of every rate limit ``app``'s federation spends from (its shared
    budget): nothing refills until the test advances the clock it returns."""
    clock = Clock(time.time())  # the budget's rows are in seconds since the epoch
    app.state.federation.shared_budget.clock = clock
    return clock
