"""Block locators of collections fetched from another cluster, made readable through us.

A client that reads a collection through us must be able to fetch its blocks. A block
signed by cluster ``X`` (``+A<sig>@<exp>``, good only at ``X``) becomes
``+R<X>-<sig>@<exp>``, as Arvados's controller rewrites it: a block server of ours given
that locator reads the block from ``X`` for the client. A locator with no signature
(clusters that do not sign) gets ``+K@<X>``, the hint that names the cluster holding it.
A manifest line is a stream name, then block locators, then ``pos:len:name`` file tokens;
only the locators between the stream name and the first file token are touched, so a
file whose name happens to look like a locator is never rewritten.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from clusterfed.keep.locators import Locator, format_locator
from clusterfed.keep.manifests import map_locators

LOCATOR_RE = re.compile(r"[0-9a-f]{32}\+[0-9]+(\+[A-Za-z0-9@_-]+)*")
CLUSTER_HINT = "K@"
SIGNATURE_HINT = "A"  # +A<signature>@<expiry>: good at the cluster that signed it
REMOTE_HINT = "R"  # +R<cluster>-<signature>@<expiry>: that cluster's +A, read through us


def add_cluster_hints(manifest_text: str, cluster_id: str) -> str:
    """``manifest_text`` as a client of ours must see a manifest of ``cluster_id``'s.

    Each ``+A`` signature becomes ``+R<cluster_id>-``; a locator with no signature at all
    (``+A`` or ``+R``) and no ``+K@`` gets ``+K@<cluster_id>``. Applying it twice changes
    nothing more.
    """
    return map_locators(manifest_text, lambda locator: _remote_locator(locator, cluster_id))


def _remote_locator(locator: Locator, cluster_id: str) -> str:
    hints = list(locator.hints)
    signed = False
    for index, hint in enumerate(hints):
        if hint.startswith(SIGNATURE_HINT):
            hints[index] = f"{REMOTE_HINT}{cluster_id}-{hint[1:]}"
            signed = True
        elif hint.startswith(REMOTE_HINT):
            signed = True
    if not signed and not any(hint.startswith(CLUSTER_HINT) for hint in hints):
        hints.append(f"{CLUSTER_HINT}{cluster_id}")
    return format_locator(locator.md5, locator.size, hints)


def hint_collection(collection: Any, cluster_id: str) -> None:
    """Adds the hints to one collection object in place (anything else is left alone)."""
    if isinstance(collection, dict) and isinstance(collection.get("manifest_text"), str):
        collection["manifest_text"] = add_cluster_hints(collection["manifest_text"], cluster_id)


def hint_answer(body: Any, cluster_id: str) -> None:
    """Adds the hints to a collection, or to each item of a collection list, in place."""
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        for item in body["items"]:
            hint_collection(item, cluster_id)
    else:
        hint_collection(body, cluster_id)


def portable_data_hash(manifest_text: str) -> str:
    """Arvados's rule: md5 of the manifest text, ``+``, its length in bytes."""
    data = manifest_text.encode()
    return f"{hashlib.md5(data).hexdigest()}+{len(data)}"


def is_portable_data_hash(text: str) -> bool:
    """A collection's portable data hash, with or without hints (``<md5>+<size>[+...]``)."""
    return LOCATOR_RE.fullmatch(text) is not None


def without_hints(pdh: str) -> str:
    """``<md5>+<size>`` of a portable data hash that may carry hints."""
    return "+".join(pdh.split("+")[:2])
