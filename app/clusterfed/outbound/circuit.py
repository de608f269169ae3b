"""A per-remote circuit breaker: an unreachable cluster costs a fast 502, not a timeout.

closed -- FAILURE_THRESHOLD consecutive failures to get any answer --> open
open   -- OPEN_SECONDS later, one trial request is let through      --> half-open
half-open -- the trial gets an answer --> closed; it fails --> open again
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

FAILURE_THRESHOLD = 5
OPEN_SECONDS = 5.0

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int = FAILURE_THRESHOLD
    open_seconds: float = OPEN_SECONDS
    consecutive_failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        if self._clock() - self.opened_at >= self.open_seconds:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool | None:
        """May a request go out now? None: no. False: yes. True: yes, as the one trial
        of the half-open state; its caller must end it (``end_trial``) however it ends."""
        state = self.state
        if state == CLOSED:
            return False
        if state == HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return None

    def refuses(self) -> bool:
        """Would ``allow`` say no now? Asks without taking the half-open state's trial."""
        state = self.state
        return state == OPEN or (state == HALF_OPEN and self.trial_in_flight)

    def end_trial(self) -> None:
        """The trial ended without a verdict (cancelled, or an unexpected error): let the
        next request try, instead of refusing every request until a restart."""
        self.trial_in_flight = False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.trial_in_flight = False
        self.last_success = datetime.now(UTC)

    def record_failure(self, reason: str) -> None:
        self.consecutive_failures += 1
        self.last_error = reason
        self.last_error_at = datetime.now(UTC)
        if self.trial_in_flight or self.consecutive_failures >= self.failure_threshold:
            self.opened_at = self._clock()
        self.trial_in_flight = False
