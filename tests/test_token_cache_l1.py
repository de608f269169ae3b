"""SPEC 4, L1 alone: purges by token, issuer, user and all; rejections and acceptances
replacing each other; short TTLs honoured; StaleIfError's grace measured exactly.

Purges by token and by cluster were reached only by tests that start server processes,
which mutation testing cannot see into; these run in process.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from clusterfed.identity import Identity, UserRecord
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_uuid
from clusterfed.trust.cache import L1Entry, TokenCache


def entry(issuer: str, user_uuid: str | None = None, token_uuid: str | None = None) -> L1Entry:
    user = UserRecord(
        user_uuid or new_uuid(issuer, USER_TYPE), None, None, None, None, False, True, True
    )
    identity = Identity(user, token_uuid or new_uuid(issuer, TOKEN_TYPE), ("all",), issuer, None)
    return L1Entry(identity, datetime.now(UTC) + timedelta(hours=1), 0)


def filled() -> tuple[TokenCache, dict[str, bytes], dict[str, L1Entry]]:
    cache = TokenCache(maxsize=100, ttl=3600, negative_ttl=60)
    alice = new_uuid("qr1hi", USER_TYPE)
    entries = {
        "alice-1": entry("qr1hi", alice),
        "alice-2": entry("qr1hi", alice),
        "bob": entry("qr1hi"),
        "carol": entry("zbbbb"),
    }
    keys = {}
    for name, value in entries.items():
        keys[name] = cache.key(value.identity.issuer, f"token-of-{name}")
        cache.put(keys[name], value)
    return cache, keys, entries


def remaining(cache: TokenCache, keys: dict[str, bytes]) -> set[str]:
    return {name for name, key in keys.items() if cache.get(key) is not None}


def test_purge_by_token_drops_that_token_only() -> None:
    cache, keys, entries = filled()
    assert cache.invalidate("token", entries["alice-1"].identity.token_uuid) == 1
    assert remaining(cache, keys) == {"alice-2", "bob", "carol"}
    assert cache.invalidate("token", new_uuid("qr1hi", TOKEN_TYPE)) == 0


def test_purge_by_cluster_drops_that_issuers_tokens() -> None:
    cache, keys, _ = filled()
    assert cache.invalidate("cluster", "qr1hi") == 3
    assert remaining(cache, keys) == {"carol"}


def test_purge_by_user_drops_every_token_of_the_user() -> None:
    cache, keys, entries = filled()
    assert cache.invalidate("user", entries["alice-1"].identity.user.uuid) == 2
    assert remaining(cache, keys) == {"bob", "carol"}
    # A user UUID is not a token UUID: purging by token with it drops nothing.
    assert cache.invalidate("token", entries["bob"].identity.user.uuid) == 0


def test_purge_all_drops_entries_and_rejections() -> None:
    cache, keys, _ = filled()
    rejected = cache.key("qr1hi", "rejected")
    cache.reject(rejected, "no")
    assert cache.invalidate("all", None) == 4
    assert (remaining(cache, keys), len(cache), cache.rejection(rejected)) == (set(), 0, None)


def test_a_rejection_replaces_an_entry_and_an_acceptance_replaces_a_rejection() -> None:
    cache, keys, entries = filled()
    cache.reject(keys["bob"], "issuer qr1hi rejected the token (401)")
    assert cache.get(keys["bob"]) is None
    assert cache.rejection(keys["bob"]) == "issuer qr1hi rejected the token (401)"
    cache.put(keys["bob"], entries["bob"])
    assert cache.rejection(keys["bob"]) is None
    # ... and stays forgotten once the entry goes (purged by token, say).
    cache.invalidate("token", entries["bob"].identity.token_uuid)
    assert cache.rejection(keys["bob"]) is None


def test_short_ttls_are_honoured() -> None:
    cache = TokenCache(maxsize=10, ttl=0.2, negative_ttl=0.2)
    accepted, rejected = cache.key("qr1hi", "a"), cache.key("qr1hi", "r")
    cache.put(accepted, entry("qr1hi"))
    cache.reject(rejected, "no")
    assert cache.get(accepted) is not None and cache.rejection(rejected) == "no"
    time.sleep(0.3)
    assert cache.get(accepted) is None and cache.rejection(rejected) is None


def test_stale_if_error_of_zero_never_serves_and_a_short_grace_does() -> None:
    now = datetime.now(UTC)
    user = UserRecord(new_uuid("qr1hi", USER_TYPE), None, None, None, None, False, True, True)
    identity = Identity(user, new_uuid("qr1hi", TOKEN_TYPE), ("all",), "qr1hi", None)
    due = L1Entry(identity, now, 0)
    assert not due.usable_stale(now - timedelta(seconds=1), 0)  # off means off
    assert due.usable_stale(now + timedelta(seconds=0.4), 0.5)
    assert not due.usable_stale(now + timedelta(seconds=0.5), 0.5)
