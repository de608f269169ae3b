"""The ``next_page`` cursor of a merged (federated or split) list.

A cursor is base64url JSON ``{"v": 1, "o": {cluster: offset}, "d": digest}``: where each
cluster's stream stopped, and a digest of what the list was (path, filters, order and the
clusters asked). Offsets alone would let a client resume a *different* query at the wrong
places and get silent gaps; with the digest such a reuse is refused (422). The cursor is
not signed: a forged offset only changes what its own holder sees, never what they may see.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from clusterfed.errors import Unprocessable
from clusterfed.jsonbody import loads_client_json

VERSION = 1
MAX_CURSOR_LENGTH = 4096


def query_digest(path: str, filters: Any, order: Sequence[str], clusters: Sequence[str]) -> str:
    canonical = json.dumps(
        {"path": path, "filters": filters, "order": list(order), "clusters": sorted(clusters)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def encode_cursor(offsets: Mapping[str, int], digest: str) -> str:
    document = {"v": VERSION, "o": dict(sorted(offsets.items())), "d": digest}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, digest: str, clusters: Sequence[str]) -> dict[str, int]:
    """The per-cluster offsets of ``cursor``; 422 unless it was made for this very query."""
    invalid = Unprocessable("next_page is not a valid cursor")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = loads_client_json(raw)
    except (ValueError, binascii.Error):
        raise invalid from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise invalid
    offsets = document.get("o")
    if not isinstance(offsets, dict) or not all(
        isinstance(value, int) and not isinstance(value, bool) and value >= 0
        for value in offsets.values()
    ):
        raise invalid
    if document.get("d") != digest or set(offsets) != set(clusters):
        raise Unprocessable(
            "next_page belongs to another query: repeat the filters, order and "
            "federated/cluster parameters it came from"
        )
    return {str(cluster): offset for cluster, offset in offsets.items()}
