"""Block locators: ``<md5>+<size>[+<hint>...]``, a hint being an uppercase letter then
``[A-Za-z0-9@_-]*``.

Hints this project reads:
- ``+A<40 hex>@<8 hex>``: a permission signature of this cluster (expiry in unix seconds);
- ``+R<cluster>-<40 hex>@<8 hex>``: the same signature made by cluster ``<cluster>``,
  which holds the block;
- ``+K@<cluster>``: the cluster that holds the block, with no signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MD5_RE = re.compile(r"[0-9a-f]{32}")
SIZE_RE = re.compile(r"[0-9]{1,20}")
HINT_RE = re.compile(r"[A-Z][A-Za-z0-9@_-]*")
SIGNATURE_RE = re.compile(r"A([0-9a-f]{40})@([0-9a-f]{8})")
REMOTE_RE = re.compile(r"R([a-z0-9]{5})-([0-9a-f]{40})@([0-9a-f]{8})")
CLUSTER_HINT_RE = re.compile(r"K@([a-z0-9]{5})")
EMPTY_BLOCK_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


class MalformedLocator(ValueError):
    """Not a block locator; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Signature:
    """A block's permission signature: the HMAC in hex and the expiry as the 8 hex digits
    it was signed with. ``cluster_id`` is None for this cluster's own (a ``+A`` hint), else
    the cluster that made it and holds the block (a ``+R<cluster>-`` hint)."""

    signature: str
    expiry_hex: str
    cluster_id: str | None = None

    @property
    def expiry(self) -> int:
        return int(self.expiry_hex, 16)

    @property
    def hint(self) -> str:
        signed = f"{self.signature}@{self.expiry_hex}"
        return f"A{signed}" if self.cluster_id is None else f"R{self.cluster_id}-{signed}"

    def as_local(self) -> Signature:
        """The ``+A`` form the cluster that made it checks."""
        return Signature(self.signature, self.expiry_hex)


@dataclass(frozen=True, slots=True)
class Locator:
    """A parsed locator. ``hints`` are without their leading ``+``, in order."""

    md5: str
    size: int | None
    hints: tuple[str, ...] = ()

    def __str__(self) -> str:
        return format_locator(self.md5, self.size, self.hints)

    @property
    def base(self) -> str:
        """``<md5>+<size>`` (just ``<md5>`` when the size is unknown)."""
        return self.md5 if self.size is None else f"{self.md5}+{self.size}"

    @property
    def signature_hints(self) -> tuple[str, ...]:
        """Every hint starting with ``A``, well formed or not."""
        return tuple(hint for hint in self.hints if hint.startswith("A"))

    @property
    def signature(self) -> Signature | None:
        """The ``+A`` signature, when there is exactly one and it is well formed."""
        found = self.signature_hints
        if len(found) != 1:
            return None
        match = SIGNATURE_RE.fullmatch(found[0])
        return Signature(match.group(1), match.group(2)) if match else None

    @property
    def remote_signature(self) -> Signature | None:
        """The first well-formed ``+R<cluster>-`` hint."""
        for hint in self.hints:
            match = REMOTE_RE.fullmatch(hint)
            if match:
                return Signature(match.group(2), match.group(3), cluster_id=match.group(1))
        return None

    @property
    def cluster_hint(self) -> str | None:
        """The cluster named by the first ``+K@<cluster>`` hint."""
        for hint in self.hints:
            match = CLUSTER_HINT_RE.fullmatch(hint)
            if match:
                return match.group(1)
        return None

    def without(self, *letters: str) -> Locator:
        """This locator without the hints that start with any of ``letters``."""
        kept = tuple(hint for hint in self.hints if not hint.startswith(letters))
        return Locator(self.md5, self.size, kept)

    def with_hint(self, hint: str) -> Locator:
        if HINT_RE.fullmatch(hint) is None:
            raise MalformedLocator("a hint is an uppercase letter then [A-Za-z0-9@_-]")
        return Locator(self.md5, self.size, (*self.hints, hint))


def parse_locator(text: str, *, require_size: bool = True) -> Locator:
    """Parses ``<md5>+<size>[+<hint>...]``; raises MalformedLocator saying what is wrong.

    With ``require_size=False`` a bare ``<md5>`` (or ``<md5>`` followed by hints, as
    keepstore accepts) is a locator too.
    """
    parts = text.split("+")
    if MD5_RE.fullmatch(parts[0]) is None:
        raise MalformedLocator("a locator starts with 32 lowercase hex digits (the block's md5)")
    size: int | None = None
    rest = parts[1:]
    if rest and SIZE_RE.fullmatch(rest[0]):
        size = int(rest[0])
        rest = rest[1:]
    elif require_size:
        raise MalformedLocator("a locator's md5 is followed by +<size> in bytes")
    for hint in rest:
        if HINT_RE.fullmatch(hint) is None:
            raise MalformedLocator("a locator hint is an uppercase letter then [A-Za-z0-9@_-]")
    return Locator(parts[0], size, tuple(rest))


def is_locator(text: str) -> bool:
    try:
        parse_locator(text)
    except MalformedLocator:
        return False
    return True


def format_locator(md5: str, size: int | None, hints: tuple[str, ...] | list[str] = ()) -> str:
    head = md5 if size is None else f"{md5}+{size}"
    return "+".join((head, *hints))


def strip_hints(locator: str) -> str:
    """``<md5>+<size>`` of a locator (raises MalformedLocator when it is not one)."""
    return parse_locator(locator).base
