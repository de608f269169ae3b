"""LocalTokenCache: the host's own tokens in process, emptied by the purge log."""

from __future__ import annotations

import pytest
from clusterfed.config import ClusterConfig
from clusterfed.service import Federation
from clusterfed.trust import local_tokens
from clusterfed.trust.local_tokens import LocalTokenCache
from clusterfed.trust.store import PurgeEvent

from tests.support.clock import Clock

SECRET = "3kg6k6lzmp9kj5cpkcoxie963cmvjahbt2fod9zru30k1jqdmi"
TOKEN = f"v2/zzzzz-gj3su-000000000000001/{SECRET}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(1_000_000.0)
    monkeypatch.setattr(local_tokens.time, "time", clock)
    return clock


def put(cache: LocalTokenCache[str], key: bytes, value: str, **kwargs: object) -> bool:
    args: dict[str, object] = {
        "token_uuid": "zzzzz-gj3su-000000000000001",
        "user_uuid": "zzzzz-tpzed-000000000000001",
        "expires_at": None,
        "generation": cache.generation,
    }
    args.update(kwargs)
    return cache.put(key, value, **args)  # type: ignore[arg-type]


def test_keys_are_hmacs_never_the_secret() -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=60)
    key = cache.key(TOKEN)
    assert len(key) == 32 and SECRET.encode() not in key and TOKEN.encode() not in key
    assert key == cache.key(TOKEN)
    # remote= decides whether a salted secret is valid: it is part of the key.
    assert cache.key(TOKEN, "c97qk") != key
    # A per-process key: another cache (another worker) derives other keys.
    assert LocalTokenCache(maxsize=10, ttl=60).key(TOKEN) != key


def test_served_for_ttl_then_gone(clock: Clock) -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=60)
    key = cache.key(TOKEN)
    assert cache.get(key) is None
    assert put(cache, key, "caller")
    clock.now += 59.9
    assert cache.get(key) == "caller"
    clock.now += 0.2
    assert cache.get(key) is None


def test_never_served_past_the_token_expiry(clock: Clock) -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=60)
    key = cache.key(TOKEN)
    assert put(cache, key, "caller", expires_at=clock.now + 5)
    clock.now += 4.9
    assert cache.get(key) == "caller"
    clock.now += 0.2
    assert cache.get(key) is None


def test_bounded() -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=3, ttl=60)
    for n in range(10):
        put(cache, cache.key(f"{TOKEN}{n}"), str(n))
    assert len(cache) == 3


@pytest.mark.parametrize(
    ("kind", "value", "left"),
    [
        ("token", "zzzzz-gj3su-000000000000001", {"b", "c"}),
        ("user", "zzzzz-tpzed-000000000000001", {"c"}),
        ("all", None, set()),
        # Every entry is this cluster's own; a cluster purge is about foreign tokens.
        ("cluster", "qr1hi", {"a", "b", "c"}),
    ],
)
def test_purges(kind: str, value: str | None, left: set[str]) -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=60)
    put(cache, cache.key("a"), "a")
    put(cache, cache.key("b"), "b", token_uuid="zzzzz-gj3su-000000000000002")
    put(
        cache,
        cache.key("c"),
        "c",
        token_uuid="zzzzz-gj3su-000000000000003",
        user_uuid="zzzzz-tpzed-000000000000002",
    )
    cache.invalidate(kind, value)
    assert {name for name in "abc" if cache.get(cache.key(name)) is not None} == left


def test_a_lookup_that_raced_a_purge_is_not_kept() -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=60)
    key = cache.key(TOKEN)
    generation = cache.generation  # the request starts reading the database...
    cache.invalidate("token", "zzzzz-gj3su-000000000000001")  # ...a revocation lands
    assert not put(cache, key, "caller", generation=generation)
    assert cache.get(key) is None
    assert put(cache, key, "caller")  # a lookup after the purge is kept


def test_ttl_zero_turns_it_off() -> None:
    cache: LocalTokenCache[str] = LocalTokenCache(maxsize=10, ttl=0)
    assert not cache.enabled
    assert not put(cache, cache.key(TOKEN), "caller")
    assert cache.get(cache.key(TOKEN)) is None


class PurgeLog:
    """The purge log part of a FederationStore."""

    def __init__(self) -> None:
        self.events: list[PurgeEvent] = []

    async def latest_purge_id(self) -> int:
        return max((event.id for event in self.events), default=0)

    async def purges_after(self, purge_id: int) -> list[PurgeEvent]:
        return [event for event in self.events if event.id > purge_id]


async def test_the_purge_log_reaches_the_local_cache() -> None:
    """What a revocation in another worker (or the CLI) logs empties this worker's entry."""
    log = PurgeLog()
    federation = Federation(ClusterConfig(cluster_id="zzzzz", database_url="unused"), log)  # type: ignore[arg-type]
    cache = federation.local_tokens
    key = cache.key(TOKEN)
    cache.put(
        key,
        "caller",
        token_uuid="zzzzz-gj3su-000000000000001",
        user_uuid="zzzzz-tpzed-000000000000001",
        expires_at=None,
        generation=cache.generation,
    )
    log.events.append(PurgeEvent(1, "token", "zzzzz-gj3su-000000000000001"))
    assert await federation.apply_pending_purges() == 1
    assert cache.get(key) is None
    await federation.aclose()
