"""Manifests: signing every locator, dropping signatures, the portable data hash.

A manifest line is a stream name, then block locators, then ``pos:len:name`` file
tokens; only the locators between the stream name and the first file token are touched,
so a file whose name happens to look like a locator is never rewritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from clusterfed.keep.locators import Locator, MalformedLocator, parse_locator
from clusterfed.keep.signing import is_signed_for, sign_locator


def _parse(token: str) -> Locator | None:
    try:
        return parse_locator(token)
    except MalformedLocator:
        return None


def map_locators(manifest_text: str, rewrite: Callable[[Locator], str]) -> str:
    """``manifest_text`` with each block locator replaced by ``rewrite(locator)``."""
    lines = manifest_text.split("\n")
    for number, line in enumerate(lines):
        tokens = line.split(" ")
        changed = False
        for index in range(1, len(tokens)):
            parsed = _parse(tokens[index])
            if parsed is None:
                break  # the file tokens have started
            tokens[index] = rewrite(parsed)
            changed = True
        if changed:
            lines[number] = " ".join(tokens)
    return "\n".join(lines)


def iter_locators(manifest_text: str) -> Iterator[Locator]:
    """Every block locator of the manifest, in order, repeats included."""
    for line in manifest_text.split("\n"):
        tokens = line.split(" ")
        for token in tokens[1:]:
            parsed = _parse(token)
            if parsed is None:
                break
            yield parsed


def sign_manifest(
    manifest_text: str, credential: str, key: bytes, ttl_seconds: int, expiry: int
) -> str:
    """Every locator signed for ``credential`` until ``expiry`` (old ``+A`` hints dropped)."""
    return map_locators(
        manifest_text, lambda loc: sign_locator(loc, credential, key, ttl_seconds, expiry)
    )


def strip_signatures(manifest_text: str) -> str:
    """The manifest without any ``+A`` hint: the form a cluster stores."""
    return map_locators(manifest_text, lambda loc: str(loc.without("A")))


def portable_manifest(manifest_text: str) -> str:
    """The manifest with every locator cut to ``<md5>+<size>``."""
    return map_locators(manifest_text, lambda loc: loc.base)


def portable_data_hash(manifest_text: str) -> str:
    """md5 and length in bytes of the portable manifest: ``<md5>+<size>``."""
    data = portable_manifest(manifest_text).encode()
    return f"{hashlib.md5(data).hexdigest()}+{len(data)}"


def unsigned_locators(
    manifest_text: str, credential: str, key: bytes, ttl_seconds: int, *, now: float | None = None
) -> list[str]:
    """The locators (as written) whose ``+A`` signature is missing, expired or not valid
    for ``credential``, in manifest order."""
    return [
        str(loc)
        for loc in iter_locators(manifest_text)
        if not is_signed_for(loc, credential, key, ttl_seconds, now=now)
    ]
