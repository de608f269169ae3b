"""Following the purge log: purges made by other worker processes (an operator's, or a
revocation notice another worker received) applied to this process's caches.

Each process keeps a cursor into the log and looks every ``PurgePollInterval``, and at
once when an ``announcer`` (PostgreSQL's ``LISTEN``: ``storage/purge_notices.py``) calls
``wake``; while one is listening the poll is only the safety net. What it applies is up
to the ``invalidate`` callback it was given (``Federation.invalidate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from .store import FederationStore

log = logging.getLogger("clusterfed.federation")

# How far behind the purge cursor each poll looks again (see PurgeFollower.apply_pending).
PURGE_LOOKBACK_IDS = 100
# While purges are announced, the poll is only the safety net.
ANNOUNCED_POLL_SECONDS = 5.0


class PurgeAnnouncer(Protocol):
    """Tells the follower (through the ``wake`` it was given) that a purge was logged."""

    listening: bool  # hearing announcements now (else the follower polls at its interval)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting as needed."""


class PurgeFollower:
    def __init__(
        self,
        store: FederationStore,
        invalidate: Callable[[str, str | None], object],
        *,
        interval: float,
    ) -> None:
        self.store = store
        self.invalidate = invalidate
        self.interval = interval
        self._cursor = 0
        self._applied: set[int] = set()
        self._poller: asyncio.Task[None] | None = None
        self.announcer: PurgeAnnouncer | None = None
        self._announced: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the log now (a purge was announced)."""
        self._wake.set()

    async def start(self) -> None:
        # Purges logged before this process started concern caches it never had.
        self._cursor = await self.store.latest_purge_id()
        low = max(0, self._cursor - PURGE_LOOKBACK_IDS)
        self._applied = {event.id for event in await self.store.purges_after(low)}
        self._poller = asyncio.create_task(self._poll(), name="clusterfed-purge-poller")
        if self.announcer is not None:
            self._announced = asyncio.create_task(
                self.announcer.run(), name="clusterfed-purge-listener"
            )

    async def aclose(self) -> None:
        for task in (self._announced, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = self._announced = None

    async def apply_pending(self) -> int:
        """Apply purges other workers logged since the last look; returns how many.

        On PostgreSQL a purge's id is drawn at insert but seen at commit, so purge 5 can
        appear after purge 6 has been read. Each look re-reads a window of ids behind
        the cursor and skips the ones already applied, so a late commit is not lost.
        """
        low = max(0, self._cursor - PURGE_LOOKBACK_IDS)
        events = [e for e in await self.store.purges_after(low) if e.id not in self._applied]
        for event in events:
            self.invalidate(event.kind, event.value)
            self._applied.add(event.id)
            self._cursor = max(self._cursor, event.id)
        floor = self._cursor - PURGE_LOOKBACK_IDS
        self._applied = {purge_id for purge_id in self._applied if purge_id > floor}
        return len(events)

    async def _poll(self) -> None:
        while True:
            interval = self.interval
            if self.announcer is not None and self.announcer.listening:
                interval = max(interval, ANNOUNCED_POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.apply_pending()
            except Exception:  # a database blip must not end the poller
                log.exception("could not read the purge log; will retry")
