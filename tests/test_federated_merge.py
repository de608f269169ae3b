"""The k-way merge and the ``next_page`` cursor of merged lists, without servers.

Clusters are simulated by sorted lists answering ``offset``/``limit`` slices, the way a
cluster answers a list; paging through the merge must give the global order exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from clusterfed.errors import Unprocessable
from clusterfed.routing.cursor import decode_cursor, encode_cursor, query_digest
from clusterfed.routing.lists import named_clusters, page_from_answer, plan_list, split_filters
from clusterfed.routing.merge import Page, item_comparator, merge_pages, parse_order
from hypothesis import given, settings
from hypothesis import strategies as st

CLUSTERS = ("qr1hi", "c97qk", "zbbbb")


def cluster_page(
    cluster: str, items: list[dict[str, Any]], offset: int, limit: int, cap: int
) -> Page:
    """What a cluster holding sorted ``items`` answers, serving at most ``cap`` items."""
    body = {"items": items[offset : offset + min(limit, cap)], "items_available": len(items)}
    page = page_from_answer(cluster, body, offset=offset, requested=limit)
    assert page is not None
    return page


def page_through(
    held: dict[str, list[dict[str, Any]]], order: str, limit: int, cap: int
) -> list[dict[str, Any]]:
    terms = parse_order(order)
    offsets = dict.fromkeys(held, 0)
    seen: list[dict[str, Any]] = []
    for _ in range(1000):
        pages = [cluster_page(c, held[c], offsets[c], limit, cap) for c in held]
        seen += [item for _, item in merge_pages(pages, terms, skip=0, limit=limit)]
        if all(page.done for page in pages):
            return seen
        offsets = {page.cluster_id: page.offset + page.consumed for page in pages}
    raise AssertionError("paging never finished")


item_strategy = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c", None]),
        "modified_at": st.sampled_from(
            ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5Z", "2024-05-02T00:00:00Z"]
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    spread=st.lists(st.tuples(st.sampled_from(CLUSTERS), item_strategy), max_size=40),
    order=st.sampled_from(["modified_at desc", "name asc, modified_at desc", "name desc"]),
    limit=st.integers(1, 7),
    cap=st.integers(1, 9),
)
def test_paging_the_merge_gives_the_global_order(
    spread: list[tuple[str, dict[str, Any]]], order: str, limit: int, cap: int
) -> None:
    held: dict[str, list[dict[str, Any]]] = {cluster: [] for cluster in CLUSTERS}
    for number, (cluster, item) in enumerate(spread):
        held[cluster].append({**item, "uuid": f"{cluster}-4zz18-{number:015d}"})
    for items in held.values():
        items[:] = in_order(items, order)
    expected = in_order([item for items in held.values() for item in items], order)
    assert page_through(held, order, limit, cap) == expected


def in_order(items: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """The order a database gives, written independently of ``merge``: one stable sort per
    term, last term first; timestamps by instant, null after every value ascending (so
    first descending, as PostgreSQL does), and ``uuid asc`` breaking ties."""
    terms = [term.split() for term in order.split(",")] + [["uuid", "asc"]]
    result = list(items)
    for attribute, direction in reversed(terms):

        def key(item: dict[str, Any], attribute: str = attribute) -> tuple[bool, Any]:
            value = item[attribute]
            if attribute == "modified_at":
                value = datetime.fromisoformat(value)
            return (value is None, "" if value is None else value)

        result.sort(key=key, reverse=direction == "desc")
    return result


def test_nulls_sort_last_ascending_and_timestamps_by_instant() -> None:
    key = item_comparator(parse_order("name asc, modified_at desc"))
    items = [
        {"uuid": "x1", "name": None, "modified_at": "2024-01-01T00:00:00Z"},
        {"uuid": "x2", "name": "a", "modified_at": "2024-01-01T00:00:00Z"},
        {"uuid": "x3", "name": "a", "modified_at": "2024-01-01T01:00:00+01:00"},
        {"uuid": "x4", "name": "a", "modified_at": "2024-01-01T00:00:00.000001Z"},
    ]
    # x3 is the same instant as x2: the uuid tie-breaker decides.
    assert [item["uuid"] for item in sorted(items, key=key)] == ["x4", "x2", "x3", "x1"]


def test_order_parsing_adds_the_tiebreak_and_refuses_nonsense() -> None:
    assert [t.render() for t in parse_order(None)] == ["modified_at desc", "uuid asc"]
    assert [t.render() for t in parse_order('["collections.name desc", "uuid desc"]')] == [
        "name desc",
        "uuid desc",
    ]
    for bad in ("name sideways", "[1, 2]", "[not json", "a b c"):
        with pytest.raises(Unprocessable):
            parse_order(bad)


def test_a_cursor_only_continues_the_query_it_came_from() -> None:
    digest = query_digest("/arvados/v1/collections", [], ["name asc"], CLUSTERS)
    cursor = encode_cursor({"qr1hi": 3, "c97qk": 0, "zbbbb": 7}, digest)
    assert decode_cursor(cursor, digest, CLUSTERS) == {"qr1hi": 3, "c97qk": 0, "zbbbb": 7}
    other = query_digest("/arvados/v1/collections", [["name", "=", "x"]], ["name asc"], CLUSTERS)
    for bad, clusters in (
        (cursor, CLUSTERS[:2]),  # the set of clusters changed
        ("not-a-cursor!", CLUSTERS),
        ("", CLUSTERS),
        (encode_cursor({"qr1hi": -1, "c97qk": 0, "zbbbb": 0}, digest), CLUSTERS),
        ("eyJ2IjoxfQ", CLUSTERS),  # {"v":1}
    ):
        with pytest.raises(Unprocessable):
            decode_cursor(bad, digest, clusters)
    with pytest.raises(Unprocessable, match="another query"):
        decode_cursor(cursor, other, CLUSTERS)


def test_uuid_filters_pick_and_split_the_clusters() -> None:
    a, b = "qr1hi-4zz18-aaaaaaaaaaaaaaa", "c97qk-4zz18-bbbbbbbbbbbbbbb"
    filters = [["uuid", "in", [a, b, "junk"]], ["name", "=", "x"]]
    assert named_clusters(filters) == {"qr1hi", "c97qk"}
    assert named_clusters([["collections.uuid", "=", b]]) == {"c97qk"}
    assert named_clusters([["name", "in", [a]]]) is None
    assert split_filters(filters, "c97qk") == [["uuid", "in", [b]], ["name", "=", "x"]]


def test_plan_list_decides_what_is_merged() -> None:
    def plan(*query: tuple[str, str]) -> Any:
        return plan_list(
            "/arvados/v1/collections",
            "collections",
            list(query),
            local_id="qr1hi",
            known={"c97qk", "zbbbb"},
            proxies=("c97qk",),
        )

    assert plan() is None
    assert plan(("filters", '[["uuid", "=", "qr1hi-4zz18-aaaaaaaaaaaaaaa"]]')) is None
    assert plan(("filters", "[not json")) is None  # the host answers that in its own words
    assert plan(("federated", "true")).clusters == ("qr1hi", "c97qk")  # zbbbb is no Proxy
    spanning = '[["uuid", "in", ["zbbbb-4zz18-aaaaaaaaaaaaaaa", "qr1hi-4zz18-aaaaaaaaaaaaaaa"]]]'
    assert plan(("filters", spanning)).clusters == ("qr1hi", "zbbbb")
    for bad in (
        [("federated", "maybe")],
        [("federated", "true"), ("filters", "[not json")],
        [("federated", "true"), ("limit", "1001")],
        [("federated", "true"), ("limit", "-1")],
        [("federated", "true"), ("offset", "990"), ("limit", "20")],
        [("next_page", "x")],  # a cursor for a list that is not merged
    ):
        with pytest.raises(Unprocessable):
            plan(*bad)
