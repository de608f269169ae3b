"""Ordering and the k-way merge of per-cluster list pages.

Every cluster is asked for the same ``order`` (with ``uuid asc`` appended as the unique
tie-breaker), so each answers a sorted stream; the merge takes the smallest head among the
streams, one item at a time. Each cluster's offset then advances by exactly the items it
contributed, which is what makes the next page continue every stream where it stopped:
no item is skipped or repeated, whatever the comparison says.

A stream that may hold more than it sent (a server that capped our ``limit``) stops the
merge when its buffer runs dry: its next item could sort before any other head.

Values compare by kind first (numbers, timestamps, strings, then anything else as JSON);
null sorts after every value in ascending order, as PostgreSQL does. Strings compare by
code point, which matches a cluster whose database collates by code point (``C``); under
a locale collation the pages are still complete and duplicate-free, only the interleaving
of clusters can differ from the database's own order.
"""

from __future__ import annotations

import functools
import heapq
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clusterfed.errors import Unprocessable
from clusterfed.jsonbody import loads_client_json

DEFAULT_ORDER = ("modified_at desc",)
TIEBREAK = "uuid"
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@dataclass(frozen=True, slots=True)
class OrderTerm:
    attribute: str
    descending: bool

    def render(self) -> str:
        return f"{self.attribute} {'desc' if self.descending else 'asc'}"


@dataclass(slots=True)
class Page:
    """What one cluster answered: its items from ``offset`` on, and whether it has more."""

    cluster_id: str
    offset: int
    items: list[dict[str, Any]]
    items_available: int
    exhausted: bool
    kind: str | None = None
    consumed: int = field(default=0)

    @property
    def done(self) -> bool:
        return self.exhausted and self.consumed == len(self.items)


def parse_order(order: str | None) -> list[OrderTerm]:
    """Arvados ``order``: comma-separated or a JSON list of ``"attr [asc|desc]"``.

    A ``table.`` prefix is dropped; ``uuid asc`` is appended unless uuid is already there.
    """
    if not order:
        texts: list[Any] = list(DEFAULT_ORDER)
    elif order.lstrip().startswith("["):
        try:
            texts = loads_client_json(order)
        except ValueError as exc:
            raise Unprocessable(f"order: {exc}") from None
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise Unprocessable("order must be a list of strings")
    else:
        texts = [text for text in order.split(",") if text.strip()]
    terms = []
    for text in texts:
        parts = text.split()
        direction = parts[1].lower() if len(parts) == 2 else "asc"
        if not 1 <= len(parts) <= 2 or direction not in ("asc", "desc"):
            raise Unprocessable(f"cannot order by {text!r}")
        terms.append(OrderTerm(parts[0].split(".")[-1], direction == "desc"))
    if not any(term.attribute == TIEBREAK for term in terms):
        terms.append(OrderTerm(TIEBREAK, False))
    return terms


def _rank(value: Any) -> tuple[int, Any]:
    if value is None:
        return (9, None)
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        if TIMESTAMP_RE.match(value):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return (2, moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))


def _compare_values(a: Any, b: Any) -> int:
    ra, rb = _rank(a), _rank(b)
    if ra[0] != rb[0]:
        return -1 if ra[0] < rb[0] else 1
    if ra[1] == rb[1]:
        return 0
    return -1 if ra[1] < rb[1] else 1


def item_comparator(terms: Sequence[OrderTerm]) -> Any:
    """A ``functools.cmp_to_key`` key for items under ``terms``."""

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for term in terms:
            result = _compare_values(a.get(term.attribute), b.get(term.attribute))
            if result:
                return -result if term.descending else result
        return 0

    return functools.cmp_to_key(compare)


def merge_pages(
    pages: Sequence[Page], terms: Sequence[OrderTerm], *, skip: int, limit: int
) -> list[tuple[Page, dict[str, Any]]]:
    """The next ``limit`` items of the merged streams after dropping ``skip``.

    Sets each page's ``consumed`` to how many of its items the merge used (skipped ones
    included): the amount its cluster's offset advances by.
    """
    key = item_comparator(terms)
    heap: list[tuple[Any, int, int]] = []
    for index, page in enumerate(pages):
        page.consumed = 0
        if page.items:
            heap.append((key(page.items[0]), index, 0))
    heapq.heapify(heap)
    merged: list[tuple[Page, dict[str, Any]]] = []
    while heap and len(merged) < limit:
        _, index, position = heapq.heappop(heap)
        page = pages[index]
        page.consumed += 1
        if skip:
            skip -= 1
        else:
            merged.append((page, page.items[position]))
        if position + 1 < len(page.items):
            heapq.heappush(heap, (key(page.items[position + 1]), index, position + 1))
        elif not page.exhausted:
            break  # this stream's next item is unknown and could sort before every head
    return merged
