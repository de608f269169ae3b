"""``Flights``: one task per key for concurrent callers, shielded, forgotten when it ends."""

from __future__ import annotations

import asyncio
import weakref

import pytest
from clusterfed.flights import Flights


class Call:
    """A call to another cluster that answers when told to, counting how often it ran."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, answer: str) -> str:
        self.started += 1
        await self.release.wait()
        return answer


class Refused(Exception):
    """A failure (user-defined: a built-in exception cannot be weakly referenced)."""


async def turns(n: int = 3) -> None:
    """Let the loop run the tasks just created (the callers, then the flight)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_flight_and_the_key_is_then_forgotten() -> None:
    flights: Flights[str, str] = Flights()
    call = Call()
    waiting = [asyncio.create_task(flights.join("k", lambda: call("one"))) for _ in range(5)]
    await turns()
    assert call.started == 1 and len(flights) == 1
    call.release.set()
    assert await asyncio.gather(*waiting) == ["one"] * 5
    assert len(flights) == 0
    assert await flights.join("k", lambda: call("two")) == "two"  # a new flight
    assert call.started == 2


async def test_other_keys_fly_on_their_own() -> None:
    flights: Flights[str, str] = Flights()
    call = Call()
    call.release.set()
    assert await asyncio.gather(
        flights.join("a", lambda: call("a")), flights.join("b", lambda: call("b"))
    ) == ["a", "b"]
    assert call.started == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others_answer() -> None:
    flights: Flights[str, str] = Flights()
    call = Call()
    starter = asyncio.create_task(flights.join("k", lambda: call("answer")))
    other = asyncio.create_task(flights.join("k", lambda: call("unused")))
    await turns()
    starter.cancel()
    await turns()
    call.release.set()
    assert await other == "answer"
    assert starter.cancelled() and call.started == 1


async def test_a_failure_reaches_every_caller() -> None:
    flights: Flights[str, str] = Flights()

    async def refuse() -> str:
        await asyncio.sleep(0)
        raise Refused("no such token")

    results = await asyncio.gather(
        *(flights.join("k", refuse) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [Refused] * 3
    assert len({id(r) for r in results}) == 1  # one flight, one failure
    assert len(flights) == 0


async def test_a_failed_flight_is_freed_without_the_cyclic_collector(collector_off: None) -> None:
    # The failure's traceback holds join's frame; had that frame kept the task, which
    # holds the failure, every refused validation would be a cycle (a 429 flood's worth).
    flights: Flights[str, str] = Flights()

    async def refuse() -> str:
        raise Refused("no such token")

    try:
        await flights.join("k", refuse)
    except Refused as exc:
        failure = weakref.ref(exc)
    await turns()
    assert failure() is None


async def test_aclose_cancels_the_flights_under_way_and_waits_for_them() -> None:
    flights: Flights[str, str] = Flights()
    unwound: list[str] = []

    async def slow_to_unwind() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            # Like a session handing its connection back: takes turns of the loop.
            await asyncio.sleep(0.01)
            unwound.append("k")
        return "never"

    waiting = asyncio.create_task(flights.join("k", slow_to_unwind))
    await turns()
    await flights.aclose()
    assert unwound == ["k"]
    assert len(flights) == 0
    with pytest.raises(asyncio.CancelledError):
        await waiting
