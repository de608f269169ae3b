"""``+K@<cluster>`` hints on the manifests of collections fetched from another cluster.

A client that reads a collection through us must fetch its blocks from the cluster that
holds them; Keep clients find that cluster in a ``+K@<id>`` hint on each block locator.
A manifest line is a stream name, then block locators, then ``pos:len:name`` file tokens;
only the locators between the stream name and the first file token are touched, so a
file whose name happens to look like a locator is never rewritten.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

LOCATOR_RE = re.compile(r"[0-9a-f]{32}\+[0-9]+(\+[A-Za-z0-9@_-]+)*")
CLUSTER_HINT = "K@"


def add_cluster_hints(manifest_text: str, cluster_id: str) -> str:
    """``manifest_text`` with ``+K@<cluster_id>`` on every locator that has no ``+K@``."""
    lines = manifest_text.split("\n")
    for number, line in enumerate(lines):
        tokens = line.split(" ")
        for index in range(1, len(tokens)):
            token = tokens[index]
            if LOCATOR_RE.fullmatch(token) is None:
                break  # the file tokens have started
            hints = token.split("+")[2:]
            if not any(hint.startswith(CLUSTER_HINT) for hint in hints):
                tokens[index] = f"{token}+{CLUSTER_HINT}{cluster_id}"
        lines[number] = " ".join(tokens)
    return "\n".join(lines)


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
