"""Merged lists: ``federated=true``, or ``filters`` naming UUIDs of several clusters.

``plan_list`` decides from the query alone whether a list is merged and how: which
clusters are asked, each cluster's filters (a ``["uuid", "in", [...]]`` operand cut down
to that cluster's UUIDs), the order, and where each cluster's stream resumes (from the
``next_page`` cursor). ``run_list`` asks every cluster in parallel, merges (``merge``),
and answers with ``items_available`` summed and a cursor for the next page.

Failure policy: fail closed. If any cluster's part fails, the whole list fails (502/504
for a cluster that cannot be reached, the cluster's own status for a refusal). A partial
answer would page on with a cursor that silently skips a cluster's items; an error tells
the caller the truth and can be retried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from clusterfed.errors import Unprocessable
from clusterfed.jsonbody import loads_client_json
from clusterfed.list_params import DEFAULT_LIMIT, MAX_LIMIT, MERGED, ROUTING_NAMES
from clusterfed.tokens import is_uuid, uuid_cluster

from .cursor import decode_cursor, encode_cursor, query_digest
from .manifests import hint_collection
from .merge import OrderTerm, Page, merge_pages, parse_order

# MAX_LIMIT: what each cluster is asked for at most, offset + limit of a first page.
ROUTING_PARAMS = ROUTING_NAMES
LIST_PARAMS = MERGED
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no", ""})

QueryItems = Sequence[tuple[str, str]]
# (cluster, query parameters, offset, limit asked) -> that cluster's page
PageFetcher = Callable[[str, list[tuple[str, str]], int, int], Awaitable[Page]]


@dataclass(frozen=True, slots=True)
class MergedList:
    path: str
    resource: str
    clusters: tuple[str, ...]  # the local cluster first, when it takes part
    filters: dict[str, list[Any]]  # per cluster
    terms: list[OrderTerm]
    limit: int
    skip: int
    offsets: dict[str, int]
    extra: list[tuple[str, str]]
    digest: str

    def params_for(self, cluster_id: str) -> list[tuple[str, str]]:
        return [
            ("filters", json.dumps(self.filters[cluster_id])),
            ("order", json.dumps([term.render() for term in self.terms])),
            ("limit", str(self.skip + self.limit)),
            ("offset", str(self.offsets[cluster_id])),
            *self.extra,
        ]


def flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None or value.lower() in FALSE_WORDS:
        return False
    if value.lower() in TRUE_WORDS:
        return True
    raise Unprocessable(f"{name} must be true or false")


def _int(params: dict[str, str], name: str, default: int, high: int | None) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Unprocessable(f"{name} must be an integer") from None
    if value < 0 or (high is not None and value > high):
        bound = f"between 0 and {high}" if high is not None else "at least 0"
        raise Unprocessable(f"{name} must be {bound}")
    return value


def _is_uuid_filter(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 3
        and isinstance(item[0], str)
        and item[0].split(".")[-1] == "uuid"
        and isinstance(item[1], str)
        and item[1].lower() in ("=", "in")
    )


def _operand_uuids(item: list[Any]) -> list[str]:
    operand = item[2] if isinstance(item[2], list) else [item[2]]
    return [value for value in operand if is_uuid(value)]


def named_clusters(filters: list[Any]) -> set[str] | None:
    """The clusters that ``uuid =``/``uuid in`` filters allow; None when there are none."""
    allowed: set[str] | None = None
    for item in filters:
        if _is_uuid_filter(item):
            clusters = {uuid_cluster(uuid) for uuid in _operand_uuids(item)}
            allowed = clusters if allowed is None else allowed & clusters
    return allowed


def pinned_uuids(filters: list[Any]) -> set[str] | None:
    """The only UUIDs ``uuid =``/``uuid in`` filters let through; None when there are none."""
    allowed: set[str] | None = None
    for item in filters:
        if _is_uuid_filter(item):
            uuids = set(_operand_uuids(item))
            allowed = uuids if allowed is None else allowed & uuids
    return allowed


def split_filters(filters: list[Any], cluster_id: str) -> list[Any]:
    """``filters`` with each ``uuid in`` operand cut down to ``cluster_id``'s UUIDs."""
    result = []
    for item in filters:
        if _is_uuid_filter(item) and isinstance(item[2], list):
            mine = [uuid for uuid in _operand_uuids(item) if uuid_cluster(uuid) == cluster_id]
            item = [item[0], item[1], mine]
        result.append(item)
    return result


def plan_list(
    path: str,
    resource: str,
    query: QueryItems,
    *,
    local_id: str,
    known: Collection[str],
    proxies: Sequence[str],
) -> MergedList | None:
    """How to serve this list merged, or None when it is the local cluster's alone."""
    params = dict(query)
    federated = flag(params, "federated")
    cursor = params.get("next_page")
    try:
        filters = loads_client_json(params["filters"]) if params.get("filters") else []
    except ValueError:
        filters = None
    if not isinstance(filters, list):
        if federated or cursor is not None:
            raise Unprocessable("filters must be a JSON array")
        return None  # the host answers for its own malformed input
    named = named_clusters(filters)
    if named is None:
        clusters = [local_id, *proxies] if federated else []
    else:
        # A UUID of a cluster we do not know cannot name anything anyone here can reach.
        reachable = named & ({local_id} | set(known))
        if federated:
            reachable &= {local_id, *proxies}
        elif reachable <= {local_id}:
            reachable = set()
        clusters = sorted(reachable, key=lambda cluster: (cluster != local_id, cluster))
    if not clusters and not federated:
        if cursor is not None:
            raise Unprocessable("next_page belongs to a merged list: repeat federated=true")
        return None
    terms = parse_order(params.get("order"))
    limit = _int(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    skip = _int(params, "offset", 0, None)
    if skip + limit > MAX_LIMIT:
        raise Unprocessable(
            f"offset + limit must be at most {MAX_LIMIT} in a merged list; page on with next_page"
        )
    digest = query_digest(path, filters, [term.render() for term in terms], clusters)
    if cursor is not None:
        if skip:
            raise Unprocessable("offset cannot be combined with next_page")
        offsets = decode_cursor(cursor, digest, clusters)
    else:
        offsets = dict.fromkeys(clusters, 0)
    return MergedList(
        path=path,
        resource=resource,
        clusters=tuple(clusters),
        filters={cluster: split_filters(filters, cluster) for cluster in clusters},
        terms=terms,
        limit=limit,
        skip=skip,
        offsets=offsets,
        extra=[(k, v) for k, v in query if k not in ROUTING_PARAMS | LIST_PARAMS],
        digest=digest,
    )


def page_from_answer(cluster_id: str, body: Any, *, offset: int, requested: int) -> Page | None:
    """One cluster's list answer as a Page; None when it is not a list answer at all."""
    if not isinstance(body, dict):
        return None
    items, available = body.get("items"), body.get("items_available")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    items = items[:requested]
    if isinstance(available, int) and not isinstance(available, bool):
        exhausted = offset + len(items) >= available
    else:
        available, exhausted = offset + len(items), len(items) < requested
    if requested and not items:
        exhausted = True  # it has nothing for us: waiting on it would never progress
    kind = body.get("kind") if isinstance(body.get("kind"), str) else None
    return Page(cluster_id, offset, items, available, exhausted, kind)


async def run_list(plan: MergedList, fetch: PageFetcher, *, local_id: str) -> dict[str, Any]:
    requested = plan.skip + plan.limit
    results = await asyncio.gather(
        *(
            fetch(cluster, plan.params_for(cluster), plan.offsets[cluster], requested)
            for cluster in plan.clusters
        ),
        return_exceptions=True,
    )
    pages: list[Page] = []
    for result in results:  # the local cluster's failure first, then in cluster order
        if isinstance(result, BaseException):
            raise result
        pages.append(result)
    merged = merge_pages(pages, plan.terms, skip=plan.skip, limit=plan.limit)
    items = []
    for page, item in merged:
        if page.cluster_id != local_id and plan.resource == "collections":
            hint_collection(item, page.cluster_id)
        items.append(item)
    next_page = None
    if not all(page.done for page in pages):
        offsets = {page.cluster_id: page.offset + page.consumed for page in pages}
        next_page = encode_cursor(offsets, plan.digest)
    kind = next((page.kind for page in pages if page.kind), None)
    return {
        "kind": kind or f"arvados#{plan.resource.removesuffix('s')}List",
        "etag": "",
        "self_link": "",
        "items": items,
        "items_available": sum(page.items_available for page in pages),
        "offset": plan.skip,
        "limit": plan.limit,
        "next_page": next_page,
        "clusters": list(plan.clusters),
    }
