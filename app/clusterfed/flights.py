"""One flight per key: concurrent callers that want the same answer share one task.

A validation, a remote permission check and a peer's login-cluster lookup each cost a
call to another cluster, so callers that arrive while one is under way wait for it
instead of making their own. The call runs as a task of its own and every caller, its
starter included, awaits it shielded: one caller going away (a client that hung up) must
not cancel the answer the others are waiting for. The key is forgotten once the task
ends, so the next caller after that starts a new flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flights(Generic[K, V]):
    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """Flights under way."""
        return len(self._tasks)

    async def join(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The answer of the flight for ``key``, started with ``start()`` if none is under
        way; its exception, if it fails."""
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = asyncio.create_task(start())
            task.add_done_callback(lambda _: self._tasks.pop(key, None))
        try:
            return await asyncio.shield(task)
        finally:
            # A failure's traceback holds this frame, and the task held here holds the
            # failure: a reference cycle per failed call, left to the cyclic collector.
            # A fishing flood's 429s made it run 13 times as often as the same number
            # of tokenless requests did.
            del task

    async def aclose(self) -> None:
        """Cancel every flight under way and wait until each has stopped (on shutdown):
        one still unwinding could otherwise hand a database connection back to a pool
        disposed in the meantime, where nothing would ever close it."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
