"""Purges announced to every worker on PostgreSQL (``LISTEN``/``NOTIFY``).

A trigger on ``federation_purges`` (migration cf0004) notifies the channel
``clusterfed_purges`` with each purge's id when its transaction commits, whoever wrote it.
Each worker listens on a connection of its own and wakes its purge reader at once, so a
purge reaches every worker of every host in milliseconds instead of a poll interval. The
poll stays, slower, as the safety net: a worker whose listening connection is lost reads
the log when it reconnects, and polls at ``PurgePollInterval`` meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pg_points import PgPoints

log = logging.getLogger("clusterfed.federation")

CHANNEL = "clusterfed_purges"
# How often the listening connection is checked (a dropped server connection is seen at
# once; a silent network is seen by this ping), and how long a ping may take.
PING_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 2.0
RECONNECT_MAX_SECONDS = 10.0


class PurgeListener:
    """``run()`` listens until cancelled, calling ``wake()`` on every announced purge and
    after each (re)connection (a purge may have been announced while it was away)."""

    def __init__(self, pg: PgPoints, wake: Callable[[], None]) -> None:
        self._pg = pg
        self._wake = wake
        self.listening = False

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen_once()
                delay = 0.2
            except Exception as exc:  # whatever ended the connection: poll, then try again
                log.warning("purge announcements not received (%s); polling", type(exc).__name__)
            finally:
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_once(self) -> None:
        connection = await self._pg.connect()
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())

        def announced(*_args: Any) -> None:
            self._wake()

        try:
            await connection.add_listener(CHANNEL, announced)
            self.listening = True
            self._wake()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_SECONDS):
                        await lost.wait()
                if not lost.is_set():
                    async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                        await connection.fetchval("SELECT 1")
        finally:
            connection.terminate()
